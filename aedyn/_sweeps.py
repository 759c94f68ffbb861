"""Sweeps: ``vmap`` of :func:`aedyn.theory.solve` and :func:`aedyn.simulate` over a grid or a list of
configurations, plus what a sweep adds: named axes, sharding, resumable chunks, flags, a table.

Parameters (axis names): ``lr`` or ``lr_W``, ``lr_V``, ``lr_b``, ``lr_c`` (output bias); ``seed``; ``init_scale``;
``weight_decay``; ``rho`` (the explicit eigenvalues, a vector of length N per value; eigenvectors
and bulk stay those of ``cov``); ``K`` (one group per value). A seed gives
``k_net, k_data = jax.random.split(jax.random.key(seed))``: SGD starts from
``init_autoencoder(k_net, D, K, scale=init_scale)`` and samples from ``k_data``; the theory starts
from the unit network of ``k_net`` times ``init_scale``, so the two are directly comparable.

Sharding: the batch is padded to a multiple of the device count and split over a one-axis mesh
(``"batch"``); each device runs ``vmap`` inside :func:`jax.shard_map`. Several hosts: call
``jax.distributed.initialize()`` everywhere and run the same sweep; process 0 writes the files.
With ``out=<folder>`` finished chunks are written atomically beside ``meta.json`` (a fingerprint
of the sweep): a rerun computes only missing chunks; a different sweep there is refused.
"""

import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from . import theory
from ._activations import get_activation
from ._checks import check_int, check_number, check_times, require_x64
from ._data import Covariance
from ._defaults import ATOL, BLOCK, INIT_SCALE, LR, MAX_STEPS, RTOL, log_times
from ._io import atomic_write, npz_bytes, run_folder
from ._mesh import batch_mesh, devices_of, fetch, place
from ._model import init_autoencoder
from ._simulate import _record_steps, simulate
from .theory._policy import phases

#: The parameters a sweep can vary (besides ``K``).
PARAMETERS = ("lr", "lr_W", "lr_V", "lr_b", "lr_c", "seed", "init_scale", "weight_decay", "rho")
_DEFAULTS = {"lr": LR, "seed": 0, "init_scale": INIT_SCALE, "weight_decay": 0.0}
STATUS = ("ok", "num_steps", "implicit", "regime")  # of a theory sweep


def seed_keys(seed):
    """(k_net, k_data) of a seed: ``jax.random.split(jax.random.key(seed))``."""
    k = jax.random.split(jax.random.key(seed))
    return k[0], k[1]


def initial_network(seed, D: int, K: int, *, init_scale=INIT_SCALE, activation="erf", dtype=jnp.float64, **kw):
    """The initial network a sweep uses for ``seed`` (see the module docstring)."""
    return init_autoencoder(seed_keys(seed)[0], D, K, activation=activation, scale=init_scale, dtype=dtype, **kw)


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """A sweep's result: ``pmse`` (*shape, n_t) over named ``axes`` (grid parameters, or
    ``("config",)``) with their ``coords``; ``ts``; ``params`` (every parameter of every
    configuration); ``status`` (theory: ``ok``, ``num_steps``, ``implicit``, ``regime`` (2: SGD
    diverges at these learning rates, 1: departs from the theory, see ``theory.solve``); simulation:
    ``diverged``, ``diverged_step``, ``diverged_t``); ``config`` (static settings). pmse is NaN only
    where a run diverged or a solve failed, and then flagged in ``status``."""

    kind: str
    axes: tuple
    coords: dict
    ts: np.ndarray
    pmse: np.ndarray
    params: dict
    status: dict
    config: dict = dataclasses.field(default_factory=dict)

    shape = property(lambda self: self.pmse.shape[:-1])

    failed = property(lambda self: ~self.status["ok"] if self.kind == "theory" else self.status["diverged"],
                      doc="Runs that diverged (simulation) or solves that failed (theory), shape ``shape``.")

    def index(self, **sel) -> tuple:
        """Index tuple of the configurations with axis values ``sel`` (other axes kept whole)."""
        unknown = set(sel) - set(self.axes)
        if unknown:
            raise KeyError(f"unknown axes {sorted(unknown)}; the sweep's axes are {self.axes}")
        idx = [slice(None)] * len(self.axes)
        for ax, want in sel.items():
            vals = np.asarray(self.coords[ax])
            close = np.isclose(vals, np.asarray(want), rtol=1e-12, atol=0)
            hits = np.where(close if vals.ndim == 1 else close.all(axis=1))[0]
            if hits.size == 0:
                raise KeyError(f"{ax}={want!r} is not a coordinate of the sweep ({vals.tolist()})")
            idx[self.axes.index(ax)] = int(hits[0])
        return tuple(idx)

    def sel(self, **sel) -> np.ndarray:
        """pmse of the configurations with the given axis values, e.g. ``res.sel(lr=0.1, seed=0)``."""
        return self.pmse[self.index(**sel)]

    def mean(self, axis: str) -> np.ndarray:
        """pmse averaged over one named axis (failed runs propagate NaN: inspect ``failed``)."""
        if axis not in self.axes:
            raise KeyError(f"axis: unknown axis {axis!r}; the sweep's axes are {self.axes}")
        return self.pmse.mean(axis=self.axes.index(axis))

    def to_table(self) -> dict[str, np.ndarray]:
        """One row per (configuration, time): every parameter, the status flags, t and pmse."""
        n_t, n = self.ts.shape[0], int(np.prod(self.shape, dtype=np.int64))
        cols: dict[str, np.ndarray] = {}
        for name, v in {**self.params, **self.status}.items():
            flat = np.asarray(v).reshape(n, -1)
            for j in range(flat.shape[1]):
                cols[name if flat.shape[1] == 1 else f"{name}_{j}"] = np.repeat(flat[:, j], n_t)
        cols["t"], cols["pmse"] = np.tile(self.ts, n), self.pmse.reshape(n * n_t)
        return cols

    def save_csv(self, path) -> None:
        """Write :meth:`to_table` as CSV (atomically), the configuration as a comment line."""
        cols = self.to_table()
        head = "# " + json.dumps({"kind": self.kind, "axes": list(self.axes), **self.config}, default=str)
        mat = np.stack([np.asarray(c, np.float64) for c in cols.values()], axis=-1)
        atomic_write(path, "\n".join([head, ",".join(cols)] + [",".join(f"{x:.17g}" for x in r) for r in mat]) + "\n")


def _expand(grid, configs, base, N: int, rho0):
    """Per-configuration parameter arrays (B,) from a grid (outer product) or a list of mappings."""
    if (grid is None) == (configs is None):
        raise ValueError("pass exactly one of grid= (a mapping name -> values) or configs= (a list of mappings)")
    for where, keys in (("base", base or {}), ("grid", grid or {}), *(("configs", c) for c in configs or [])):
        if not isinstance(keys, Mapping):
            raise TypeError(f"{where}: expected a mapping of parameter names to values, got {type(keys).__name__}")
        for k in keys:
            if k not in PARAMETERS:
                raise ValueError(f"{where}: unknown parameter {k!r}; expected some of {PARAMETERS}")
    base = {**_DEFAULTS, **(base or {})}
    if grid is not None:
        axes, coords = tuple(grid), {}
        for k in axes:
            v = np.asarray(grid[k], np.float64)
            v = np.atleast_2d(v) if k == "rho" else np.atleast_1d(v)
            if v.ndim != (2 if k == "rho" else 1) or not len(v) or (k == "rho" and v.shape[1] != N):
                what = f"vectors of N = {N} eigenvalues" if k == "rho" else "numbers"
                raise ValueError(f"grid: {k} must be a non-empty list of {what}, got shape {v.shape}")
            coords[k] = v
        rows = [dict(zip(axes, c)) for c in itertools.product(*(coords[k] for k in axes))]
        shape = tuple(len(coords[a]) for a in axes)
    else:
        rows = [dict(c) for c in configs]
        if not rows:
            raise ValueError("configs: the list of configurations is empty")
        axes, coords, shape = ("config",), {"config": np.arange(len(rows))}, (len(rows),)
    names = ("lr_W", "lr_V", "lr_b", "lr_c", "seed", "init_scale", "weight_decay")
    flat = {name: np.empty(len(rows)) for name in names}
    flat["rho"] = np.empty((len(rows), N))
    for i, r in enumerate(rows):
        c = {**base, **r}
        for name in names:
            flat[name][i] = c.get(name, c["lr"])  # lr_W, lr_V, lr_b, lr_c default to lr
        rho = np.asarray(c.get("rho", rho0), np.float64).reshape(-1)
        if rho.shape != (N,):
            raise ValueError(f"configuration {i}: rho must have N = {N} eigenvalues, got {rho.shape}")
        flat["rho"][i] = rho
    for name, v in flat.items():
        bad = ~(np.isfinite(v) & (v >= 0)) | ((v != np.round(v)) | (v >= 2**31) if name == "seed" else False)
        if bad.any():
            raise ValueError(f"{name}: values must be finite and >= 0{' integers < 2^31' if name == 'seed' else ''}, "
                             f"got {v[bad][:3]}")
    flat["seed"] = flat["seed"].astype(np.int64)
    return flat, axes, coords, shape


class _Run(eqx.Module):
    """One configuration (``p``: its parameters): the theory solve, or the SGD run, of its seed's
    network. Static settings only, so ``eqx.filter_jit`` caches the compiled sweep on them."""

    kind: str
    D: int
    K: int
    net_kw: tuple  # activation, bias, output_bias, dtype of the initial network
    kw: tuple  # keyword arguments of theory.solve or simulate

    def __call__(self, p, shared):
        k_net, k_data = seed_keys(p["seed"])
        cov = Covariance(p["rho"], shared["U"], shared["bulk"])
        dt = shared["U"].dtype
        common = dict(lr={w: p[f"lr_{w}"].astype(dt) for w in "WVbc"}, ts=shared["ts"],
                      weight_decay=p["weight_decay"].astype(dt), **dict(self.kw))
        if self.kind == "theory":
            net = init_autoencoder(k_net, self.D, self.K, scale=1.0, **dict(self.net_kw))
            tr = theory.solve(net, cov, init_scale=p["init_scale"], throw=False, **common)
            return {"pmse": tr.pmse, "ok": tr.stats["successful"], **{k: tr.stats[k] for k in STATUS[1:]}}
        net = init_autoencoder(k_net, self.D, self.K, scale=p["init_scale"].astype(dt), **dict(self.net_kw))
        tr = simulate(net, cov, key=k_data, on_divergence="stop", **common)
        return {"pmse": tr.pmse, "diverged_step": tr.stats["diverged_step"]}


@eqx.filter_jit
def _batched(run, part, shared, mesh):
    """``vmap`` of ``run`` over the configurations, in ``shard_map`` over ``mesh`` (if given)."""
    f = jax.vmap(run, in_axes=(0, None))
    if mesh is not None:
        f = jax.shard_map(f, mesh=mesh, in_specs=(PartitionSpec("batch"), PartitionSpec()),
                          out_specs=PartitionSpec("batch"), check_vma=False)
    return f(part, shared)


def _execute(run, flat, shared, devs, *, chunk_size, out, meta, progress, callback, desc):
    """Run the configurations in chunks (resuming from ``out``); the concatenated outputs."""
    B, nd = len(flat["seed"]), len(devs)
    chunk = B if chunk_size is None else check_int(chunk_size, "chunk_size", lo=1)
    chunk = -(-min(chunk, B) // nd) * nd  # a multiple of the device count
    n_chunks, writer = -(-B // chunk), jax.process_index() == 0
    if out is not None:
        run_folder(out, {"meta": {**meta, "chunk": chunk, "n_chunks": n_chunks, "B": B}, "flat": flat, "shared": shared},
                   write=writer, what="sweep")
    mesh = batch_mesh(devs)
    shared_dev = place(shared, mesh, batched=False)
    from tqdm.auto import tqdm

    results = []
    for c in tqdm(range(n_chunks), desc=desc, unit="chunk", disable=not progress):
        path = None if out is None else os.path.join(out, f"chunk_{c:05d}.npz")
        if path is not None and os.path.exists(path):
            with np.load(path, allow_pickle=False) as z:
                results.append({k: z[k] for k in z.files})
        else:
            lo, hi = c * chunk, min((c + 1) * chunk, B)
            idx = np.minimum(np.arange(lo, lo + chunk), B - 1)  # pad by repeating the last config
            res = fetch(_batched(run, place({k: v[idx] for k, v in flat.items()}, mesh, True), shared_dev, mesh))
            results.append({k: v[: hi - lo] for k, v in res.items()})
            if path is not None and writer:
                atomic_write(path, npz_bytes(results[-1]))
            if callback is not None:
                callback(c, n_chunks)
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def _check_cov(cov):
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")


def _sweep(kind, cov, K, grid, configs, base, ts, net_kw, kw, settings, devices, chunk_size, out, progress, callback):
    """The sweep common to theory and SGD: K groups, grid expansion, execution, result."""
    if grid is not None and isinstance(grid, Mapping) and "K" in grid:
        Ks = [check_int(k, "K", lo=1) for k in np.atleast_1d(grid["K"]).tolist()]
        sub = {k: v for k, v in grid.items() if k != "K"}
        res = [_sweep(kind, cov, k, sub, None, base, ts, net_kw, kw, settings, devices, chunk_size,
                      None if out is None else os.path.join(out, f"K={k}"), progress, callback) for k in Ks]
        pos, r0 = list(grid).index("K"), res[0]
        st = lambda xs: np.stack(xs, axis=pos)  # noqa: E731
        axes = r0.axes[:pos] + ("K",) + r0.axes[pos:]
        return SweepResult(kind, axes, {a: np.asarray(Ks) if a == "K" else r0.coords[a] for a in axes}, r0.ts,
                           st([r.pmse for r in res]), {k: st([r.params[k] for r in res]) for k in r0.params},
                           {k: st([r.status[k] for r in res]) for k in r0.status}, {**r0.config, "K": Ks})
    K = check_int(K, "K", lo=1)
    if K > cov.dim:
        raise ValueError(f"K: K = {K} hidden units exceed the input dimension D = {cov.dim}")
    ts = log_times() if ts is None else ts
    ts = _record_steps(ts, cov.dim) / cov.dim if kind == "simulation" else check_times(ts)
    flat, axes, coords, shape = _expand(grid, configs, base, cov.n_modes, np.asarray(cov.eigvals, np.float64))
    devs, dtype = devices_of(devices), net_kw["dtype"]
    shared = {"U": np.asarray(cov.eigvecs, dtype), "bulk": np.asarray(cov.bulk, dtype), "ts": ts}
    meta = {"kind": kind, "D": cov.dim, "K": K, **settings}
    run = _Run(kind, cov.dim, K, tuple(net_kw.items()), tuple(kw.items()))
    res = _execute(run, {**flat, "rho": flat["rho"].astype(dtype)}, shared, devs, chunk_size=chunk_size,
                   out=out, meta=meta, progress=progress, callback=callback, desc=f"{kind} sweep")
    params = {k: v.reshape(shape + v.shape[1:]) for k, v in flat.items()}
    params["K"] = np.full(shape, K)
    if kind == "theory":
        status = {k: res[k].reshape(shape) for k in STATUS}
        theory.warn_regime(status["regime"], cov.dim, "sweep_theory")
    else:
        div = res["diverged_step"].reshape(shape).astype(np.int64)
        status = {"diverged": div >= 0, "diverged_step": div, "diverged_t": np.where(div >= 0, div / cov.dim, np.nan)}
    return SweepResult(kind, axes, coords, ts, res["pmse"].reshape(shape + (len(ts),)), params,
                       status, {**meta, "devices": len(devs)})


def sweep_theory(cov: Covariance, *, K: int = 2, grid: Mapping[str, Any] | None = None,
                 configs: Sequence[Mapping[str, Any]] | None = None, base: Mapping[str, Any] | None = None, ts=None,
                 activation="erf", bias: float | None = None, output_bias: float | None = None,
                 rule: str = "vanilla", method: str = "auto",
                 solver=None, rtol: float = RTOL, atol: float = ATOL, max_steps: int = MAX_STEPS, devices=None,
                 chunk_size: int | None = None, out: str | os.PathLike | None = None, progress: bool = False,
                 callback: Callable[[int, int], None] | None = None) -> SweepResult:
    """:func:`aedyn.theory.solve` for a grid (or list) of configurations: one ``vmap``, sharded.

    ``cov``: the covariance (its eigenvectors and bulk fixed, ``rho`` may be swept); ``K``: hidden
    units (or ``"K"`` in the grid); ``grid``: parameter -> values (outer product, axes in the
    mapping's order; parameters from :data:`PARAMETERS`), or ``configs``: a list of mappings (axis
    "config"); ``base``: the parameters not swept (default lr=0.1, seed=0, init_scale=0.1,
    weight_decay=0, rho=cov.eigvals); ``ts``: times (default: 100 log-spaced from 0.01 to 100);
    ``activation`` ... ``max_steps``: as :func:`aedyn.theory.solve`; ``devices``: the mesh (default
    all; an int: the first n local devices); ``chunk_size``: configurations per chunk (a multiple of
    the device count); ``out``: a folder for resumable results; ``progress``: a bar over chunks;
    ``callback(chunk_index, n_chunks)`` after each computed chunk (it may raise to stop the sweep).
    """
    require_x64("aedyn.sweeps.sweep_theory")
    _check_cov(cov)
    act = get_activation(activation)
    if rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    for name, v in (("bias", bias), ("output_bias", output_bias)):
        if v is not None:
            check_number(v, name)
    has_bias = bias is not None or output_bias is not None
    kw = dict(rule=rule, method=theory.resolve_method(method, act, False, has_bias), solver=solver,
              rtol=rtol, atol=atol, max_steps=check_int(max_steps, "max_steps", lo=1))
    stiff, explicit = phases(solver, kw["max_steps"], rule=kw["rule"], method=kw["method"])
    settings = {"activation": act.name, "bias": bias, "output_bias": output_bias, **kw,
                "solver": type(solver or theory.default_solver()).__name__,
                "stiff_solver": None if stiff is None else type(stiff).__name__,
                "stiff_pid": None if stiff is None else list(theory.STIFF_PID),
                "explicit_steps": None if stiff is None else explicit}
    net_kw = dict(activation=act, bias=bias, output_bias=output_bias, dtype=jnp.float64)
    return _sweep("theory", cov, K, grid, configs, base, ts, net_kw, kw,
                  settings, devices, chunk_size, out, progress, callback)


def sweep_simulation(cov: Covariance, *, K: int = 2, grid: Mapping[str, Any] | None = None,
                     configs: Sequence[Mapping[str, Any]] | None = None, base: Mapping[str, Any] | None = None,
                     ts=None, activation="erf", bias: float | None = None, output_bias: float | None = None,
                     rule: str = "vanilla", dtype=jnp.float32,
                     block: int = BLOCK, devices=None, chunk_size: int | None = None,
                     out: str | os.PathLike | None = None, progress: bool = False,
                     callback: Callable[[int, int], None] | None = None) -> SweepResult:
    """:func:`aedyn.simulate` for a grid (or list) of configurations: one ``vmap``, sharded.

    Arguments as :func:`sweep_theory`, plus ``dtype`` and ``block`` (as :func:`aedyn.simulate`).
    Every run equals ``simulate(initial_network(seed, ..., dtype=dtype), cov,
    key=seed_keys(seed)[1], ...)``; a diverging run stops (``status["diverged"]``, its pmse NaN
    from the diverging step on).
    """
    _check_cov(cov)
    act = get_activation(activation)
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    if rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: sweeps cover untied networks ('vanilla', 'truncated'), got {rule!r}")
    kw = dict(rule=rule, block=check_int(block, "block", lo=1))
    for name, v in (("bias", bias), ("output_bias", output_bias)):
        if v is not None:
            check_number(v, name)
    net_kw = dict(activation=act, bias=bias, output_bias=output_bias, dtype=dtype)
    return _sweep("simulation", cov, K, grid, configs, base, ts, net_kw, kw,
                  {"activation": act.name, "bias": bias, "output_bias": output_bias, "dtype": dtype.name, **kw},
                  devices, chunk_size, out,
                  progress, callback)
