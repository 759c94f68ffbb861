"""Online SGD simulation of an autoencoder, recorded on a time grid (t = steps / D).

The steps run inside ``lax.scan`` over blocks of ``block`` samples drawn in one call; the samples
of step n depend only on (key, n // block), so a run's data stream does not depend on the
recording times, and a run resumed from a checkpoint continues it exactly.

:func:`simulate` is pure and traceable with its default arguments (``jax.jit``, ``jax.vmap``
over the learning rates, the key, the initial network and the covariance's eigenvalues); the
host conveniences (progress bar, checkpoint file) apply outside a trace only.
"""

import json
import os
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from ._checks import check_int, check_key, check_times, is_concrete
from ._data import Covariance
from ._dataset import Dataset
from ._defaults import BLOCK, LR, log_times
from ._errors import DivergenceError
from ._io import atomic_write, fingerprint, npz_bytes
from ._model import AutoEncoder, Overlaps, overlaps, pmse
from ._rules import (
    LearningRates,
    LearningRatesLike,
    Scalar,
    check_rule,
    check_weight_decay,
    learning_rates,
    sgd_step,
)
from ._trajectory import Trajectory, key_data

#: A step whose per-sample loss exceeds this multiple of E|x|^2 counts as diverged.
DIVERGENCE_FACTOR = 1e8


def _sample_block(data, key, blk, B, dtype):
    """The B samples of block ``blk``: Gaussian from a Covariance, or a Dataset's draw."""
    if isinstance(data, Dataset):
        return data.draw(key, blk, B, dtype)
    return data.sample(jax.random.fold_in(key, blk), B, dtype)


def _advance(net, n, div, target, data, key, lr, weight_decay, limit, rule, block, unroll):
    """Run SGD steps n .. target-1; stop early at a diverging step (recorded in ``div``).

    Block ``blk`` holds steps blk * block .. (blk + 1) * block - 1 and its samples come from
    ``fold_in(key, blk)``. A block run in full (the common case) takes the fast path: an unmasked
    ``lax.scan`` that also tracks the largest loss; if a step of it diverged, the block is thrown
    away and redone by the exact path. The exact path (partial blocks at the ends of a recording
    interval, or a diverging block) steps through the active range only, and keeps the network of
    the last good step. Both paths apply the same ``sgd_step`` to the same samples, so the result
    does not depend on which path ran (``tests/test_simulate_speedpath.py``).

    The rare paths are entered through ``lax.cond`` and a ``while_loop`` that runs at most once, so
    that under ``vmap`` (batched predicates) the exact path costs nothing unless some batch member
    needs it.
    """
    dtype = net.W.dtype

    def stepper(net, x):
        return sgd_step(net, x, lr, rule=rule, weight_decay=weight_decay)

    def cond(c):
        _, n, div = c
        return (n < target) & (div < 0)

    def body(c):
        net, n, div = c
        blk = n // block
        first = blk * block
        lo = n - first  # first active step in the block
        hi = jnp.minimum(target - first, block)  # one past the last active step
        X = _sample_block(data, key, blk, block, dtype)

        def fast(net):
            def step(c2, x):
                net, worst = c2
                new, loss = stepper(net, x)
                return (new, jnp.maximum(worst, loss)), None  # NaN propagates

            (new, worst), _ = jax.lax.scan(step, (net, jnp.zeros((), dtype)), X, unroll=unroll)
            return new, worst <= limit  # False for NaN and inf

        def skip(net):
            return net, jnp.asarray(False)

        full = (lo == 0) & (hi == block)
        new, ok = jax.lax.cond(full, fast, skip, net)

        def exact(c2):
            net, div, _ = c2

            def econd(c3):
                _, i, div = c3
                return (i < hi) & (div < 0)

            def estep(c3):
                net, i, div = c3
                new, loss = stepper(net, jax.lax.dynamic_index_in_dim(X, i, keepdims=False))
                bad = ~jnp.isfinite(loss) | (loss > limit)
                net = jax.tree_util.tree_map(lambda a, b: jnp.where(bad, b, a), new, net)
                div = jnp.where(bad, first + i, div).astype(jnp.int32)
                return net, i + 1, div

            net, _, div = jax.lax.while_loop(econd, estep, (net, lo, div))
            return net, div, jnp.asarray(False)

        net_e, div, _ = jax.lax.while_loop(lambda c2: c2[2], exact, (net, div, ~ok))
        net = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, net_e)
        return net, (first + hi).astype(jnp.int32), div

    return jax.lax.while_loop(cond, body, (net, n, div))


def simulate_core(
    net: AutoEncoder,
    data,
    cov: Covariance,
    key: PRNGKeyArray,
    lr: LearningRates,
    weight_decay,
    record_steps,
    *,
    rule: str = "vanilla",
    block: int = BLOCK,
    n0=0,
    div0=-1,
    unroll: int = 4,
):
    """The traceable simulation: jit-, vmap- and shard-compatible.

    Returns (final net, steps reached, diverged step or -1, pmse (n,), overlaps (n, ...), and the
    error on held-out samples (n,) of a Dataset that has them, else None).
    """
    dtype = net.W.dtype
    limit = DIVERGENCE_FACTOR * cov.trace.astype(dtype)
    wd = jnp.asarray(weight_decay, dtype)
    covd = cov.astype(dtype)
    if isinstance(data, Dataset):
        data = data.for_run(key, dtype)
    heldout = isinstance(data, Dataset) and data.heldout is not None

    def record(carry, target):
        net, n, div = carry
        net, n, div = _advance(net, n, div, target, data, key, lr, wd, limit, rule, block, unroll)
        e = pmse(net, covd)
        ov = overlaps(net, covd)
        e = jnp.where(div >= 0, jnp.nan, e)
        h = jnp.where(div >= 0, jnp.nan, data.heldout_pmse(net)) if heldout else None
        return (net, n, div), (e, ov, h)

    carry = (net, jnp.asarray(n0, jnp.int32), jnp.asarray(div0, jnp.int32))
    (net, n, div), (es, ovs, hs) = jax.lax.scan(record, carry, jnp.asarray(record_steps, jnp.int32))
    return net, n, div, es, ovs, hs


_core_jit = eqx.filter_jit(simulate_core)


def _as_data(data, net):
    if isinstance(data, (Covariance, Dataset)):
        cov = data if isinstance(data, Covariance) else data.covariance
        if cov.dim != net.D:
            raise ValueError(f"data: {type(data).__name__} of dimension {cov.dim} does not match the network's D = {net.D}")
        return data, cov
    if isinstance(data, (str, bytes)) or data is None:
        raise TypeError(f"data: expected a Covariance, a Dataset or an array of samples (n, D), got {type(data).__name__}")
    X = jnp.asarray(data)
    if X.ndim != 2 or X.shape[1] != net.D or X.shape[0] < 1:
        raise ValueError(f"data: expected a Covariance, a Dataset or samples of shape (n, {net.D}), got shape {X.shape}")
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise TypeError(f"data: expected floating-point samples, got {X.dtype}")
    if not is_concrete(X):
        raise TypeError("data: an array of samples must be concrete (its second moment defines the population "
                        "error); under a trace pass an aedyn.Dataset built outside it")
    if not bool(np.all(np.isfinite(np.asarray(X)))):
        raise ValueError("data: the samples contain non-finite values")
    ds = Dataset.from_samples(X, dtype=net.W.dtype)
    return ds, ds.covariance


def _record_steps(ts, D):
    """Recording steps round(t * D) of concrete times (checked), or of traced ones (unchecked);
    several times may round to the same step (recorded twice)."""
    if not is_concrete(ts):
        ts = jnp.asarray(ts)
        if ts.ndim != 1:
            raise ValueError(f"ts: expected a 1-D array of times, got shape {ts.shape}")
        return jnp.round(ts * D).astype(jnp.int32)
    ts = check_times(ts)
    steps = np.round(ts * D).astype(np.int64)
    below = np.nonzero((ts > 0) & (steps == 0))[0]
    if below.size:
        raise ValueError(
            f"ts: t = {ts[below[0]]:.4g} is below one step (1/D = {1 / D:.4g}) and would be recorded at t = 0; "
            "record at times >= 1/D (times are rounded to whole steps)"
        )
    if steps[-1] >= 2**31 - 1:
        raise ValueError(f"ts: {steps[-1]} steps exceed the 2^31 limit of a run")
    return steps


def simulate(
    net: AutoEncoder,
    data: Covariance | Dataset | Float[ArrayLike, "N D"],
    *,
    key: PRNGKeyArray,
    lr: LearningRatesLike = LR,
    ts: Sequence[float] | Real[ArrayLike, " n"] | None = None,
    rule: str = "vanilla",
    weight_decay: Scalar = 0.0,
    block: int = BLOCK,
    progress: bool = False,
    chunk: int = 8,
    checkpoint: str | os.PathLike | None = None,
    on_divergence: str = "raise",
) -> Trajectory:
    """Train ``net`` by online SGD on ``data`` and record pmse and overlaps at times ``ts``.

    Pure and traceable: ``jax.jit`` and ``jax.vmap`` over ``lr``, ``key``, ``net`` and the
    covariance's eigenvalues give the same numbers as separate runs.

    Args:
        net: the initial network; its dtype (float32 or float64) is the simulation's.
        data: a :class:`Covariance` (Gaussian inputs), a :class:`Dataset` (real samples: drawn with
            replacement, in one pass or as Gaussian samples of their second moment; the error on
            its held-out samples is recorded too), or an array of samples (n, D) (drawn with
            replacement; outside a trace).
        key: PRNG key; the same key gives the same numbers on the same platform.
        lr: eta for all weights, or a mapping with keys "W", "V", "b", "c".
        ts: (n,) increasing times t = steps / D (default: 100 log-spaced times from 0.01 to
            100), rounded to whole steps (the trajectory's ``ts`` are the times recorded); a
            positive time below one step (1/D) is an error.
        rule: "vanilla", "truncated" or "sanger" (tied networks).
        weight_decay: kappa per unit of t (below D).
        block: samples drawn per random-number call.
        progress: show a progress bar (outside a trace).
        chunk: records per compiled call outside a trace (the unit of progress and checkpoints).
        checkpoint: a file to write the run to after every chunk (atomically); if it exists and
            holds the same run (network, data, rule, learning rates, key, dtype, times), the run
            resumes from it; a different run is refused, naming what differs.
        on_divergence: "raise" (a :class:`DivergenceError` outside a trace, an
            ``equinox.error_if`` error inside one) or "stop": return the trajectory, NaN from the
            diverging step on, ``stats["diverged_step"]`` set.

    Returns:
        A :class:`Trajectory` with the final ``net``; ``stats``: ``steps`` done and
        ``diverged_step`` (-1 if none); ``params``: learning rates, weight decay and key.
    """
    if not isinstance(net, AutoEncoder):
        raise TypeError(f"net: expected an AutoEncoder, got {type(net).__name__}")
    check_rule(rule, net)
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence: expected 'raise' or 'stop', got {on_divergence!r}")
    block = check_int(block, "block", lo=1)
    chunk = check_int(chunk, "chunk", lo=1)
    key = check_key(key)
    check_weight_decay(weight_decay, net.D)
    for name in ("W", "V", "b", "c"):
        x = getattr(net, name)
        if x is not None and is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
            raise ValueError(f"net: the initial network's {name} contains non-finite values")
    dtype = net.W.dtype
    lrs = learning_rates(lr, dtype)
    wd = jnp.asarray(weight_decay, dtype)
    data_arr, cov = _as_data(data, net)
    D = net.D
    steps = _record_steps(log_times() if ts is None else ts, D)
    if isinstance(data_arr, Dataset) and is_concrete(steps):
        data_arr.check_steps(int(np.asarray(steps)[-1]))
    kind = ("covariance" if isinstance(data, Covariance) else
            data.describe() if isinstance(data, Dataset) else f"samples{tuple(data_arr.samples.shape)}")
    info = {"kind": "simulation", "D": D, "K": net.K, "activation": net.activation.name, "rule": rule,
            "tied": net.tied, "bias": net.b is not None,
            "output_bias": net.c is not None, "dtype": str(jnp.dtype(dtype)), "block": block,
            "data": kind}
    traced = not is_concrete(net, data_arr, cov, lrs, wd, key, steps)
    if traced:
        if checkpoint is not None:
            raise ValueError("checkpoint: files cannot be written under a JAX trace (jit/vmap); pass checkpoint=None")
        net, n, div, pm, ov, ho = _core_jit(net, data_arr, cov, key, lrs, wd, steps, rule=rule, block=block)
    else:
        net, n, div, pm, ov, ho = _chunked(net, data_arr, cov, key, lrs, wd, steps, rule, block, chunk, progress,
                                           checkpoint, info)
    traj = Trajectory(
        ts=jnp.asarray(steps, dtype) / D, pmse=pm, overlaps=ov, net=net, pca=cov.pca_errors(net.K),
        params={"lr_W": lrs.W, "lr_V": lrs.V, "lr_b": lrs.b, "lr_c": lrs.c, "weight_decay": wd,
                "key": key_data(key)},
        stats={"steps": n, "diverged_step": div}, info=tuple(info.items()), pmse_heldout=ho,
    )
    if on_divergence == "raise":
        if traced:
            return eqx.tree_at(lambda t: t.pmse, traj, eqx.error_if(
                traj.pmse, div >= 0, "simulate: the run diverged (pass on_divergence='stop' to get NaNs and "
                "stats['diverged_step'] instead)"))
        if int(div) >= 0:
            raise DivergenceError(
                f"simulate: the run diverged at step {int(div)} (t = {int(div) / D:.4g}): the loss became "
                f"non-finite or exceeded {DIVERGENCE_FACTOR:.0e} x E|x|^2; try a smaller learning rate "
                f"(lr = {traj.config['lr']})",
                step=int(div), t=int(div) / D, trajectory=traj,
            )
    return traj


def _chunked(net, data, cov, key, lrs, wd, steps, rule, block, chunk, progress, checkpoint, info):
    """The run outside a trace: chunks of ``chunk`` records (progress bar, checkpoints)."""
    n_rec = len(steps)
    n_chunks = -(-n_rec // chunk)
    padded = np.concatenate([steps, np.full(n_chunks * chunk - n_rec, steps[-1])]).reshape(n_chunks, chunk)
    fields = None if checkpoint is None else _run_fields(net, data, cov, key, lrs, wd, steps, rule, block, info)
    pm, ovs, hos = [], [], []
    n, div, start = 0, -1, 0
    if checkpoint is not None and os.path.exists(checkpoint):
        net, n, div, start, pm, ovs, hos = _load_checkpoint(checkpoint, net, fields)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(steps[-1]), initial=int(min(n, steps[-1])), unit="step", desc="SGD", unit_scale=True)
    try:
        for c in range(start, n_chunks):
            if div >= 0:
                break
            net, n_new, div_new, es, ov, ho = _core_jit(
                net, data, cov, key, lrs, wd, padded[c], rule=rule, block=block,
                n0=jnp.asarray(n, jnp.int32), div0=jnp.asarray(div, jnp.int32),
            )
            n_new, div = int(n_new), int(div_new)
            if bar is not None:
                bar.update(n_new - n)
            n = n_new
            pm.append(np.asarray(es))
            ovs.append(jax.tree_util.tree_map(np.asarray, ov))
            if ho is not None:
                hos.append(np.asarray(ho))
            if checkpoint is not None:
                _save_checkpoint(checkpoint, net, n, div, c + 1, pm, ovs, fields, hos)
    finally:
        if bar is not None:
            bar.close()
    pm_all = np.concatenate(pm)[:n_rec]
    ov_all = jax.tree_util.tree_map(lambda *a: np.concatenate(a)[:n_rec], *ovs)
    missing = n_rec - len(pm_all)
    if missing:  # stopped early on divergence: NaN from there on
        pm_all = np.concatenate([pm_all, np.full(missing, np.nan, pm_all.dtype)])
        ov_all = jax.tree_util.tree_map(
            lambda a: np.concatenate([a, np.full((missing,) + a.shape[1:], np.nan, a.dtype)]), ov_all
        )
    ov_all = jax.tree_util.tree_map(jnp.asarray, ov_all)
    ho_all = None
    if hos:
        ho_all = np.concatenate(hos)[:n_rec]
        ho_all = jnp.asarray(np.concatenate([ho_all, np.full(n_rec - len(ho_all), np.nan, ho_all.dtype)]))
    return net, jnp.asarray(n, jnp.int32), jnp.asarray(div, jnp.int32), jnp.asarray(pm_all), ov_all, ho_all


def _run_fields(net, data, cov, key, lrs, wd, steps, rule, block, info):
    """Fingerprints of everything that defines a run, field by field (for checkpoints)."""
    samples = "none"
    if isinstance(data, Dataset):
        samples = [np.asarray(data.samples), "none" if data.heldout is None else np.asarray(data.heldout), data.sampling]
    return {
        "network": fingerprint([np.asarray(x) for x in jax.tree_util.tree_leaves(net)] + [net.tied]),
        "activation": fingerprint([net.activation.name, getattr(net.activation.fn, "__qualname__", "")]),
        "covariance": fingerprint([np.asarray(cov.eigvals), np.asarray(cov.eigvecs), np.asarray(cov.bulk)]),
        "samples": fingerprint(samples),
        "rule": rule,
        "learning rates": fingerprint([np.asarray(lrs.W), np.asarray(lrs.V), np.asarray(lrs.b), np.asarray(lrs.c)]),
        "weight decay": fingerprint(np.asarray(wd)),
        "key": fingerprint(np.asarray(key_data(key))),
        "dtype": info["dtype"],
        "block": block,
        "times": fingerprint(np.asarray(steps)),
    }


def _save_checkpoint(path, net, n, div, chunks_done, pm, ovs, fields, hos=()):
    arrays = {
        "n": np.asarray(n),
        "div": np.asarray(div),
        "chunks_done": np.asarray(chunks_done),
        "pmse": np.concatenate(pm),
        "fields": np.asarray(json.dumps(fields, sort_keys=True)),
    }
    if hos:
        arrays["pmse_heldout"] = np.concatenate(hos)
    for name in ("W", "V", "b", "c"):
        if getattr(net, name) is not None:
            arrays[name] = np.asarray(getattr(net, name))
    for f in Overlaps.__dataclass_fields__:
        arrays["ov_" + f] = np.concatenate([getattr(o, f) for o in ovs])
    atomic_write(path, npz_bytes(arrays))


def _load_checkpoint(path, net, fields):
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = {k: z[k] for k in z.files}
        old = json.loads(str(saved["fields"]))
    except Exception as err:  # noqa: BLE001 - any unreadable or foreign file
        raise ValueError(f"checkpoint: {path} is not a readable aedyn checkpoint: {err}") from err
    differ = [k for k in fields if old.get(k) != fields[k]]
    if differ:
        raise ValueError(
            f"checkpoint: {path} holds a different run ({', '.join(differ)} differ); "
            "remove it or choose another file"
        )
    try:
        new = [jnp.asarray(saved[name], net.W.dtype) for name in ("W", "V", "b", "c")
               if getattr(net, name) is not None]
        net = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(net), new)
        ov = Overlaps(*(jnp.asarray(saved["ov_" + f]) for f in Overlaps.__dataclass_fields__))
        hos = [saved["pmse_heldout"]] if "pmse_heldout" in saved else []
        return net, int(saved["n"]), int(saved["div"]), int(saved["chunks_done"]), [saved["pmse"]], [ov], hos
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"checkpoint: {path} is damaged: {err}") from err
