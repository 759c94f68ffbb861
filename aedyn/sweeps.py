"""Vectorised sweeps over configurations, for the theory and for the SGD simulator.

One call runs a grid (or a list) of configurations in a single ``vmap``-ed computation, sharded
over devices: the batch of configurations is padded to a multiple of the device count, split over
a one-axis :class:`jax.sharding.Mesh` (axis ``"batch"``) and every device runs its share with a
plain ``vmap`` inside :func:`jax.shard_map` (each device then runs its own adaptive solves: no
auto-sharding of the solver's while loop, which is slow).

Swept parameters (axis names):

* ``lr`` (eta_W = eta_V = eta_b), or ``lr_W``, ``lr_V``, ``lr_b`` separately;
* ``seed``: the initial network (and, for SGD, the data stream) — see :func:`seed_keys`;
* ``init_scale``: the initial weights are ``init_scale`` times a unit-scale network;
* ``weight_decay``: kappa;
* ``rho``: the explicit eigenvalues of the covariance (each value a vector of length N; the
  eigenvectors and the bulk stay those of ``cov``) — spike strengths;
* ``K``: the number of hidden units. Shapes differ between values of K, so each value runs as a
  separate group (one compilation each); pmse has the same shape for every K and is stacked.

Seeds: ``key = jax.random.key(seed)``, ``k_net, k_data = jax.random.split(key)``; the initial
network is ``init_autoencoder(k_net, D, K, scale=init_scale, ...)`` and SGD draws its samples
from ``k_data``. The theory starts from the exact order parameters of the same network, so a
theory sweep and an SGD sweep with the same seeds are directly comparable.

Theory solver: with ``solver=None`` the batch is solved with Tsit5 limited to
:data:`aedyn.theory.solve.EXPLICIT_STEPS` steps, and the configurations that reach the limit
(stiff: long horizons near convergence) are continued, batched, with Kvaerno5 from the last
state the explicit pass saved;
``status["implicit"]`` says which (the policy of :func:`aedyn.theory.solve`).

Resumability: with ``out=<folder>`` the configurations are run in chunks of ``chunk_size``;
each finished chunk is written atomically (``chunk_00000.npz``, ...) next to ``meta.json`` (a
fingerprint of the whole sweep). A sweep restarted with the same arguments loads the chunks on
disk and computes only the missing ones; a different sweep in the same folder is refused.

Multi-host: call ``jax.distributed.initialize()`` on every process before the sweep, and run the
same sweep call on every process. The mesh then spans ``jax.devices()`` (all hosts); every
process builds the (identical) configuration list, supplies its addressable shards through
:func:`jax.make_array_from_callback`, the results are gathered with
``multihost_utils.process_allgather`` and only process 0 writes chunk files. On one host (the
usual case) nothing of this is needed: the mesh is ``jax.local_devices()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import check_times, log_times
from .data import Covariance
from .model import init_autoencoder, pmse
from .rules import LearningRates, check_rule
from .simulate import simulate_core
from .theory.rhs import TheoryParams, theory_pmse
from .theory.solve import restart_point, solve_states
from .theory.state import init_state
from .trajectory import atomic_write

__all__ = ["SweepResult", "sweep_theory", "sweep_simulation", "seed_keys", "initial_network", "PARAMETERS"]

#: The parameters a sweep can vary (besides ``K``).
PARAMETERS = ("lr", "lr_W", "lr_V", "lr_b", "seed", "init_scale", "weight_decay", "rho")

_DEFAULTS = {"lr": 0.1, "seed": 0, "init_scale": 0.1, "weight_decay": 0.0}


def seed_keys(seed):
    """(k_net, k_data) of a seed: ``jax.random.split(jax.random.key(seed))``."""
    k = jax.random.split(jax.random.key(seed))
    return k[0], k[1]


def initial_network(seed, D: int, K: int, *, init_scale=0.1, activation="erf", dtype=jnp.float64, **kw):
    """The initial network a sweep uses for ``seed`` (see the module docstring)."""
    k_net, _ = seed_keys(seed)
    return init_autoencoder(k_net, D, K, activation=activation, scale=init_scale, dtype=dtype, **kw)


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The result of a sweep: arrays with named axes.

    Attributes:
        kind: "theory" or "simulation".
        axes: names of the leading axes of ``pmse`` (grid parameters, or ``("config",)``).
        coords: for each axis its values (``rho``: an (n, N) array; ``config``: 0..n-1).
        ts: (n_t,) times.
        pmse: (*shape, n_t) population error; NaN only where a run diverged or a solve failed,
            and then flagged in ``status``.
        params: the full parameter of every configuration, each an array of shape ``shape``
            (``rho``: shape + (N,)): lr_W, lr_V, lr_b, seed, init_scale, weight_decay, rho, K.
        status: theory: ``ok`` (bool) and ``num_steps``; simulation: ``diverged`` (bool),
            ``diverged_step`` (-1 when not diverged) and ``diverged_t`` (NaN when not).
        config: static settings of the sweep (plain Python values).
    """

    kind: str
    axes: tuple
    coords: dict
    ts: np.ndarray
    pmse: np.ndarray
    params: dict
    status: dict
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return self.pmse.shape[:-1]

    @property
    def failed(self) -> np.ndarray:
        """Boolean array (shape): runs that diverged (simulation) or solves that failed (theory)."""
        if self.kind == "theory":
            return ~self.status["ok"]
        return self.status["diverged"]

    def index(self, **sel) -> tuple:
        """The index tuple of the configuration whose axis values are ``sel`` (axes not named
        are kept whole)."""
        idx = []
        for ax in self.axes:
            if ax not in sel:
                idx.append(slice(None))
                continue
            vals = np.asarray(self.coords[ax])
            want = np.asarray(sel[ax])
            if vals.ndim == 1:
                hits = np.where(np.isclose(vals, want, rtol=1e-12, atol=0))[0]
            else:
                hits = np.where(np.all(np.isclose(vals, want[None], rtol=1e-12, atol=0), axis=1))[0]
            if hits.size == 0:
                raise KeyError(f"{ax}={sel[ax]!r} is not a coordinate of the sweep ({vals.tolist()})")
            idx.append(int(hits[0]))
        unknown = set(sel) - set(self.axes)
        if unknown:
            raise KeyError(f"unknown axes {sorted(unknown)}; the sweep's axes are {self.axes}")
        return tuple(idx)

    def sel(self, **sel) -> np.ndarray:
        """pmse of the configurations with the given axis values, e.g. ``res.sel(lr=0.1, seed=0)``."""
        return self.pmse[self.index(**sel)]

    def to_table(self) -> dict[str, np.ndarray]:
        """Long table: one row per (configuration, time), columns for every parameter, t, pmse
        and the status flags."""
        n_t = self.ts.shape[0]
        n = int(np.prod(self.shape, dtype=np.int64))
        cols: dict[str, np.ndarray] = {}
        for name, v in self.params.items():
            v = np.asarray(v)
            if v.ndim > len(self.shape):  # rho
                flat = v.reshape(n, -1)
                for j in range(flat.shape[1]):
                    cols[f"{name}_{j}"] = np.repeat(flat[:, j], n_t)
            else:
                cols[name] = np.repeat(v.reshape(n), n_t)
        for name, v in self.status.items():
            cols[name] = np.repeat(np.asarray(v).reshape(n), n_t)
        cols["t"] = np.tile(self.ts, n)
        cols["pmse"] = self.pmse.reshape(n * n_t)
        return cols

    def save_csv(self, path) -> None:
        """Write :meth:`to_table` as CSV (atomically), the configuration as a comment line."""
        cols = self.to_table()
        lines = ["# " + json.dumps({"kind": self.kind, "axes": list(self.axes), **self.config}, default=str)]
        lines.append(",".join(cols))
        mat = np.stack([np.asarray(c, np.float64) for c in cols.values()], axis=-1)
        lines += [",".join(f"{x:.17g}" for x in row) for row in mat]
        atomic_write(path, "\n".join(lines) + "\n")

    def mean(self, axis: str) -> np.ndarray:
        """pmse averaged over one named axis (e.g. "seed"), NaN-aware only in that failed runs
        propagate NaN (inspect ``failed`` first)."""
        return self.pmse.mean(axis=self.axes.index(axis))


# ------------------------------------------------------------------------------------------
# Configurations
# ------------------------------------------------------------------------------------------


def _expand(grid: Mapping | None, configs: Sequence[Mapping] | None, base: Mapping, N: int, rho0: np.ndarray):
    """Flatten a grid or a list into per-configuration arrays (B,) and axes/coords."""
    if (grid is None) == (configs is None):
        raise ValueError("pass exactly one of grid= (a mapping name -> values) or configs= (a list of mappings)")
    allowed = set(PARAMETERS)
    base = {**_DEFAULTS, **(base or {})}
    for k in base:
        if k not in allowed:
            raise ValueError(f"base: unknown parameter {k!r}; expected some of {PARAMETERS}")
    if grid is not None:
        for k in grid:
            if k not in allowed:
                raise ValueError(f"grid: unknown parameter {k!r}; expected some of {PARAMETERS} (or 'K')")
        axes = tuple(grid)
        coords = {}
        for k in axes:
            v = np.asarray(grid[k], np.float64 if k != "seed" else np.int64)
            if k == "rho":
                v = np.atleast_2d(v)
                if v.shape[1] != N:
                    raise ValueError(f"grid: each rho must have N = {N} eigenvalues, got shape {v.shape}")
            elif v.ndim != 1:
                v = np.atleast_1d(v)
                if v.ndim != 1:
                    raise ValueError(f"grid: {k} must be a 1-D sequence of values, got shape {v.shape}")
            if len(v) == 0:
                raise ValueError(f"grid: {k} has no values")
            coords[k] = v
        rows = []
        for combo in itertools.product(*(range(len(coords[k])) for k in axes)):
            rows.append({k: coords[k][i] for k, i in zip(axes, combo)})
    else:
        rows = [dict(c) for c in configs]
        if not rows:
            raise ValueError("configs: the list of configurations is empty")
        for r in rows:
            for k in r:
                if k not in allowed:
                    raise ValueError(f"configs: unknown parameter {k!r}; expected some of {PARAMETERS}")
        axes = ("config",)
        coords = {"config": np.arange(len(rows))}
    B = len(rows)
    out = {name: np.empty(B) for name in ("lr_W", "lr_V", "lr_b", "init_scale", "weight_decay")}
    out["seed"] = np.empty(B, np.int64)
    out["rho"] = np.empty((B, N))
    for i, r in enumerate(rows):
        c = {**base, **r}
        lr = c.get("lr")
        for w in ("W", "V", "b"):
            v = c.get(f"lr_{w}", lr)
            if v is None:
                raise ValueError(f"configuration {i}: no learning rate for {w}")
            out[f"lr_{w}"][i] = v
        out["seed"][i] = int(c["seed"])
        out["init_scale"][i] = c["init_scale"]
        out["weight_decay"][i] = c["weight_decay"]
        rho = np.asarray(c.get("rho", rho0), np.float64).reshape(-1)
        if rho.shape != (N,):
            raise ValueError(f"configuration {i}: rho must have N = {N} eigenvalues, got {rho.shape}")
        out["rho"][i] = rho
    for name in ("lr_W", "lr_V", "lr_b", "init_scale", "weight_decay"):
        v = out[name]
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"{name}: values must be finite and >= 0, got {v[~(np.isfinite(v) & (v >= 0))][:3]}")
    if np.any(out["rho"] < 0) or not np.all(np.isfinite(out["rho"])):
        raise ValueError("rho: eigenvalues must be finite and >= 0")
    shape = tuple(len(coords[a]) for a in axes) if grid is not None else (B,)
    return out, axes, coords, shape


# ------------------------------------------------------------------------------------------
# Sharded execution
# ------------------------------------------------------------------------------------------

_CACHE: dict = {}


def _devices(devices):
    if devices is None:
        devs = jax.devices() if jax.process_count() > 1 else jax.local_devices()
    elif isinstance(devices, int):
        devs = jax.local_devices()[:devices]
        if len(devs) < devices:
            raise ValueError(f"devices: {devices} requested, {len(jax.local_devices())} available")
    else:
        devs = list(devices)
    if not devs:
        raise ValueError("devices: no devices to run on")
    return tuple(devs)


def _lineax_shard_map_compat() -> None:
    """Work around lineax 0.1.x under ``shard_map`` (jax >= 0.7): lineax compares the structure
    of a vector with the operator's by ``eqx.tree_equal`` of ShapeDtypeStructs *including their
    sharding*; inside ``shard_map`` one side carries the manual mesh and the other does not, and
    every implicit solve (Kvaerno5's Newton step) fails with "pytree does not match
    out_structure". Compare shapes and dtypes only (what the check is for). Idempotent; applied
    only when a sweep runs sharded. Upstream: patrick-kidger/lineax#185 ("Issue with shard_map",
    open); remove this once a lineax release fixes it (tests/test_sweeps.py and
    tests/test_multihost.py run Kvaerno5 under shard_map and would show it)."""
    try:
        import lineax._misc as lm
    except ImportError:  # pragma: no cover
        return
    if getattr(lm, "_aedyn_patched", False):
        return

    def structure_equal(x, y) -> bool:
        sx = jax.tree_util.tree_map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), jax.eval_shape(lambda: x))
        sy = jax.tree_util.tree_map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), jax.eval_shape(lambda: y))
        return jax.tree_util.tree_structure(sx) == jax.tree_util.tree_structure(sy) and jax.tree_util.tree_leaves(
            sx
        ) == jax.tree_util.tree_leaves(sy)

    lm.structure_equal = structure_equal
    try:
        import lineax._solver.misc as lsm

        lsm.structure_equal = structure_equal
    except ImportError:  # pragma: no cover
        pass
    lm._aedyn_patched = True


def _batched(fn: Callable, devs: tuple, key) -> Callable:
    """jit(shard_map(vmap(fn))) over a 1-D mesh of ``devs`` (plain jit(vmap) for one device).

    ``fn(per_config, shared)``: ``per_config`` is split over the batch, ``shared`` replicated.
    """
    ck = (key, tuple(d.id for d in devs))
    if ck in _CACHE:
        return _CACHE[ck]
    vf = jax.vmap(fn, in_axes=(0, None))
    if len(devs) == 1:
        f = jax.jit(vf)
    else:
        _lineax_shard_map_compat()
        mesh = Mesh(np.array(devs), ("batch",))
        f = jax.jit(
            jax.shard_map(vf, mesh=mesh, in_specs=(PartitionSpec("batch"), PartitionSpec()),
                          out_specs=PartitionSpec("batch"), check_vma=False)
        )
    _CACHE[ck] = f
    return f


def _place(tree, devs, batched: bool):
    """Host arrays -> device arrays (sharded over the batch, or replicated)."""
    if len(devs) == 1:
        return jax.tree_util.tree_map(lambda a: jax.device_put(a, devs[0]), tree)
    mesh = Mesh(np.array(devs), ("batch",))
    sh = NamedSharding(mesh, PartitionSpec("batch") if batched else PartitionSpec())
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sh, lambda idx, a=a: np.asarray(a)[idx]), tree
    )


def _fetch(tree):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree_util.tree_map(np.asarray, tree)


def _fingerprint(obj) -> str:
    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, np.ndarray):
            h.update(str(x.dtype).encode() + str(x.shape).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        else:
            h.update(json.dumps(x, default=str, sort_keys=True).encode())

    feed(obj)
    return h.hexdigest()


def _run_chunks(fn, flat: dict, shared: dict, devs, key, *, chunk_size, out, meta, progress, callback, desc):
    """Run the configurations in chunks, resuming from ``out``; returns the concatenated outputs."""
    B = len(flat["seed"])
    nd = len(devs)
    chunk = B if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    chunk = min(chunk, B)
    chunk = -(-chunk // nd) * nd  # a multiple of the device count
    n_chunks = -(-B // chunk)
    writer = jax.process_index() == 0
    if out is not None:
        meta = {**meta, "chunk": chunk, "n_chunks": n_chunks, "B": B}
        fp = _fingerprint({"meta": meta, "flat": flat, "shared": shared})
        meta["fingerprint"] = fp
        meta_path = os.path.join(out, "meta.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                old = json.load(f)
            if old.get("fingerprint") != fp:
                raise ValueError(
                    f"out: {out} holds a different sweep (other configurations or settings); "
                    "remove it or choose another folder"
                )
        elif writer:
            atomic_write(meta_path, json.dumps(meta, indent=1, default=str))
    f = _batched(fn, devs, key)
    shared_dev = _place(shared, devs, batched=False)
    results = [None] * n_chunks
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_chunks, desc=desc, unit="chunk")
    for c in range(n_chunks):
        path = None if out is None else os.path.join(out, f"chunk_{c:05d}.npz")
        if path is not None and os.path.exists(path):
            with np.load(path) as z:
                results[c] = {k: z[k] for k in z.files}
        else:
            lo, hi = c * chunk, min((c + 1) * chunk, B)
            idx = np.minimum(np.arange(lo, lo + chunk), B - 1)  # pad by repeating the last config
            part = {k: v[idx] for k, v in flat.items()}
            res = _fetch(f(_place(part, devs, batched=True), shared_dev))
            res = {k: v[: hi - lo] for k, v in res.items()}
            results[c] = res
            if path is not None and writer:
                buf = io.BytesIO()
                np.savez(buf, **res)
                atomic_write(path, buf.getvalue())
            if callback is not None:
                callback(c, n_chunks)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


# ------------------------------------------------------------------------------------------
# Per-configuration functions
# ------------------------------------------------------------------------------------------


def _lr(p, dtype):
    return LearningRates(p["lr_W"].astype(dtype), p["lr_V"].astype(dtype), p["lr_b"].astype(dtype))


def _theory_fn(D, K, activation, bias, n_bulk, rule, method, solver, rtol, atol, max_steps, mode="plain"):
    """Per-configuration theory solve. ``mode``: "plain"; "first" (also returns where to
    continue: :func:`aedyn.theory.solve.restart_point`); "continue" (starts from the state
    ``restart_<i>`` at time ``restart_t`` of the configuration)."""

    def fn(p, shared):
        f64 = jnp.float64
        k_net, _ = seed_keys(p["seed"])
        net = init_autoencoder(k_net, D, K, activation=activation, scale=1.0, bias=bias, dtype=f64)
        cov = Covariance(p["rho"], shared["U"], shared["bulk"], check=False)
        state0 = init_state(net, cov).scale(p["init_scale"])
        t0 = 0.0
        if mode == "continue":
            leaves, treedef = jax.tree_util.tree_flatten(state0)
            state0 = jax.tree_util.tree_unflatten(treedef, [p[f"restart_{i}"] for i in range(len(leaves))])
            t0 = p["restart_t"]
        params = TheoryParams(_lr(p, f64), p["weight_decay"], p["rho"], shared["bulk"], n_bulk)
        ys, result, nsteps = solve_states(
            state0, params, shared["ts"], rule=rule, method=method, solver=solver, rtol=rtol, atol=atol,
            max_steps=max_steps, t0=t0,
        )
        e = jax.vmap(lambda s: theory_pmse(s, params))(ys)
        ok = (result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(e))
        out = {"pmse": e, "ok": ok, "num_steps": jnp.asarray(nsteps, jnp.int64),
               "max_steps_reached": result == diffrax.RESULTS.max_steps_reached}
        if mode == "first":
            k, st, t_r = restart_point(state0, ys, shared["ts"])
            out.update(restart_k=k, restart_t=t_r)
            out.update({f"restart_{i}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(st))})
        return out

    return fn


def _sim_fn(D, K, activation, bias, dtype, rule, block):
    def fn(p, shared):
        k_net, k_data = seed_keys(p["seed"])
        net = init_autoencoder(k_net, D, K, activation=activation, scale=p["init_scale"].astype(dtype), bias=bias,
                               dtype=dtype)
        cov = Covariance(p["rho"], shared["U"], shared["bulk"], check=False)
        _, n, div, es, _ = simulate_core(
            net, cov, cov, k_data, _lr(p, dtype), p["weight_decay"].astype(dtype), shared["steps"], rule=rule,
            block=block,
        )
        e0 = pmse(net, cov.astype(dtype))
        return {"pmse": es, "pmse0": e0, "diverged_step": div, "steps_done": n}

    return fn


# ------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------


def _common(cov, K, grid, configs):
    """Split a grid with a "K" axis into K groups: (Ks, grid without K, position of the K axis)."""
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")
    if grid is not None and "K" in grid:
        Ks = [int(k) for k in np.atleast_1d(grid["K"])]
        sub = {k: v for k, v in grid.items() if k != "K"}
        return Ks, sub, list(grid).index("K")
    return None, grid, None


def _stack_K(results: list[SweepResult], Ks, pos) -> SweepResult:
    r0 = results[0]
    axes = r0.axes[:pos] + ("K",) + r0.axes[pos:]
    coords = {**r0.coords, "K": np.asarray(Ks)}
    coords = {a: coords[a] for a in axes}
    st = lambda xs: np.stack(xs, axis=pos)  # noqa: E731
    params = {k: st([r.params[k] for r in results]) for k in r0.params}
    status = {k: st([r.status[k] for r in results]) for k in r0.status}
    return SweepResult(r0.kind, axes, coords, r0.ts, st([r.pmse for r in results]), params, status,
                       {**r0.config, "K": list(Ks)})


def sweep_theory(
    cov: Covariance,
    *,
    K: int = 2,
    grid: Mapping[str, Any] | None = None,
    configs: Sequence[Mapping[str, Any]] | None = None,
    base: Mapping[str, Any] | None = None,
    ts=None,
    activation: str = "erf",
    bias: float | None = None,
    rule: str = "vanilla",
    method: str = "auto",
    solver=None,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    max_steps: int = 1_000_000,
    devices=None,
    chunk_size: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Solve the theory for a grid (or list) of configurations in one vectorised call.

    Args:
        cov: the input covariance (eigenvectors and bulk fixed; ``rho`` may be swept). A spiked
            covariance is solved in the reduced spikes+bulk form; ``cov.full()`` gives the
            full-spectrum form.
        K: hidden units (or sweep ``"K"`` in the grid: one group per value).
        grid: mapping parameter -> values (outer product; axes in the mapping's order), with
            parameters from :data:`PARAMETERS` (and ``"K"``).
        configs: alternatively a list of mappings (one axis ``"config"``).
        base: values of parameters not swept (defaults lr=0.1, seed=0, init_scale=0.1,
            weight_decay=0, rho=cov.eigvals).
        ts: times (default 100 log-spaced times from 0.01 to 100).
        method, solver, rtol, atol, max_steps: as :func:`aedyn.theory.solve` (``solver=None``:
            Tsit5, the stiff configurations continued with Kvaerno5; see the module docstring).
        devices: devices of the mesh (default: all); an int takes the first n local devices.
        chunk_size: configurations per chunk (rounded up to a multiple of the device count;
            default all in one chunk).
        out: a folder for resumable chunked results (see the module docstring).
        progress: show a progress bar over chunks.
        callback: ``callback(chunk_index, n_chunks)`` after each computed chunk (may raise to
            interrupt the sweep; the chunks written so far are kept).
    """
    Ks, grid, pos = _common(cov, K, grid, configs)
    if Ks is not None:
        res = [
            sweep_theory(cov, K=k, grid=grid, base=base, ts=ts, activation=activation, bias=bias, rule=rule,
                         method=method, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, devices=devices,
                         chunk_size=chunk_size, out=None if out is None else os.path.join(out, f"K={k}"),
                         progress=progress, callback=callback)
            for k in Ks
        ]
        return _stack_K(res, Ks, pos)
    if rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    from .activations import get_activation

    act = get_activation(activation)
    if method == "auto":
        method = "stein" if (act.closed_form and bias is None) else "gradient"
    ts = check_times(log_times(100.0) if ts is None else ts)
    D, N = cov.dim, cov.n_modes
    flat, axes, coords, shape = _expand(grid, configs, base, N, np.asarray(cov.eigvals, np.float64))
    from .theory.solve import EXPLICIT_STEPS, default_solver, stiff_solver

    fallback = None
    if solver is None:
        state_probe = init_state(initial_network(0, D, K, activation=activation, bias=bias), cov)
        solver, fallback = default_solver(state_probe), stiff_solver(state_probe)
        solver_key = "default:" + type(solver).__name__
    else:
        solver_key = id(solver)
        _CACHE.setdefault(("solver", id(solver)), solver)  # keep it alive so its id stays unique
    first_max = max_steps if fallback is None else min(EXPLICIT_STEPS, max_steps)
    devs = _devices(devices)
    shared = {
        "U": np.asarray(cov.eigvecs, np.float64),
        "bulk": np.asarray(cov.bulk, np.float64),
        "ts": np.asarray(ts, np.float64),
    }
    meta = {"kind": "theory", "D": D, "K": K, "activation": act.name, "bias": bias, "rule": rule, "method": method,
            "solver": type(solver).__name__, "rtol": rtol, "atol": atol, "max_steps": first_max}

    def run(slv, skey, steps, flat_part, folder, desc, mode):
        key = ("theory", D, N, K, act.name, bias, cov.n_bulk, rule, method, skey, rtol, atol, steps, mode)
        fn = _theory_fn(D, K, act, bias, cov.n_bulk, rule, method, slv, rtol, atol, steps, mode)
        m = {**meta, "solver": type(slv).__name__, "max_steps": steps}
        return _run_chunks(fn, flat_part, shared, devs, key, chunk_size=chunk_size, out=folder, meta=m,
                           progress=progress, callback=callback, desc=desc)

    two_pass = fallback is not None and first_max < max_steps
    res = run(solver, solver_key, first_max, flat, out, "theory sweep", "first" if two_pass else "plain")
    implicit = np.zeros(len(flat["seed"]), bool)
    stiff = np.where(res["max_steps_reached"])[0] if two_pass else []
    if len(stiff):
        # THEORY.md §4: the explicit solves that hit EXPLICIT_STEPS are stiff: continue them
        # implicitly (batched) from the last state the explicit pass saved.
        sub = {k: v[stiff] for k, v in flat.items()}
        sub.update({k: v[stiff] for k, v in res.items() if k.startswith("restart_") and k != "restart_k"})
        res2 = run(fallback, "stiff:" + type(fallback).__name__, max_steps - first_max, sub,
                   None if out is None else os.path.join(out, "stiff"), "theory sweep (stiff)", "continue")
        first = np.arange(len(ts))[None, :] <= res["restart_k"][stiff][:, None]
        res["pmse"][stiff] = np.where(first, res["pmse"][stiff], res2["pmse"])
        res["ok"][stiff] = res2["ok"]
        res["num_steps"][stiff] += res2["num_steps"]
        implicit[stiff] = True
    meta["stiff_solver"] = None if fallback is None else type(fallback).__name__
    meta["explicit_steps"] = first_max
    params = _params(flat, shape, K)
    status = {"ok": res["ok"].reshape(shape), "num_steps": res["num_steps"].reshape(shape),
              "implicit": implicit.reshape(shape)}
    return SweepResult("theory", axes, coords, np.asarray(ts), res["pmse"].reshape(shape + (len(ts),)), params,
                       status, {**meta, "devices": len(devs)})


def _params(flat, shape, K):
    p = {k: v.reshape(shape + v.shape[1:]) for k, v in flat.items()}
    p["K"] = np.full(shape, K)
    return p


def sweep_simulation(
    cov: Covariance,
    *,
    K: int = 2,
    grid: Mapping[str, Any] | None = None,
    configs: Sequence[Mapping[str, Any]] | None = None,
    base: Mapping[str, Any] | None = None,
    ts=None,
    activation: str = "erf",
    bias: float | None = None,
    rule: str = "vanilla",
    dtype=jnp.float32,
    block: int = 128,
    devices=None,
    chunk_size: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run online SGD for a grid (or list) of configurations in one vectorised call.

    Arguments as :func:`sweep_theory`, plus ``dtype`` (float32 or float64) and ``block``
    (samples drawn per random-number call, as :func:`aedyn.simulate`). Every run equals
    ``aedyn.simulate(initial_network(seed, ...), cov, key=seed_keys(seed)[1], ...)``.
    A diverging run stops at its diverging step: ``status["diverged"]`` is set,
    ``status["diverged_step"]``/``["diverged_t"]`` say where, and its pmse is NaN from there on
    (``pmse`` holds no other NaN).
    """
    Ks, grid, pos = _common(cov, K, grid, configs)
    if Ks is not None:
        res = [
            sweep_simulation(cov, K=k, grid=grid, base=base, ts=ts, activation=activation, bias=bias, rule=rule,
                             dtype=dtype, block=block, devices=devices, chunk_size=chunk_size,
                             out=None if out is None else os.path.join(out, f"K={k}"), progress=progress,
                             callback=callback)
            for k in Ks
        ]
        return _stack_K(res, Ks, pos)
    from .activations import get_activation

    act = get_activation(activation)
    if rule == "sanger":
        raise ValueError("rule: sweeps cover untied networks ('vanilla', 'truncated')")
    check_rule(rule, _probe_net(cov, act))
    dtype = jnp.dtype(dtype)
    ts = check_times(log_times(100.0) if ts is None else ts)
    D, N = cov.dim, cov.n_modes
    steps = np.round(ts * D).astype(np.int64)
    if np.any(np.diff(steps) < 0):
        raise ValueError("ts: times must be increasing")
    if steps[-1] >= 2**31 - 1:
        raise ValueError(f"ts: {steps[-1]} steps exceed the 2^31 limit of a run")
    flat, axes, coords, shape = _expand(grid, configs, base, N, np.asarray(cov.eigvals, np.float64))
    devs = _devices(devices)
    key = ("simulation", D, N, K, act.name, bias, str(dtype), rule, block, cov.n_bulk)
    fn = _sim_fn(D, K, act, bias, dtype, rule, block)
    shared = {
        "U": np.asarray(cov.eigvecs, dtype),
        "bulk": np.asarray(cov.bulk, dtype),
        "steps": steps.astype(np.int32),
    }
    meta = {"kind": "simulation", "D": D, "K": K, "activation": act.name, "bias": bias, "rule": rule,
            "dtype": str(dtype), "block": block}
    flat_in = dict(flat)
    flat_in["rho"] = flat["rho"].astype(dtype)
    res = _run_chunks(fn, flat_in, shared, devs, key, chunk_size=chunk_size, out=out, meta=meta,
                      progress=progress, callback=callback, desc="SGD sweep")
    div = res["diverged_step"].reshape(shape).astype(np.int64)
    status = {
        "diverged": div >= 0,
        "diverged_step": div,
        "diverged_t": np.where(div >= 0, div / D, np.nan),
    }
    pm = res["pmse"].reshape(shape + (len(ts),))
    return SweepResult("simulation", axes, coords, steps / D, pm, _params(flat, shape, K), status,
                       {**meta, "devices": len(devs)})


def _probe_net(cov, act):
    from .model import AutoEncoder

    return AutoEncoder(np.zeros((1, cov.dim)), np.zeros((1, cov.dim)), act)
