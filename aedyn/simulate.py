"""Online SGD simulation of an autoencoder, recorded on a time grid (t = steps / D).

The steps run inside ``lax.scan`` over blocks of ``block`` samples drawn in one call; the samples
of step n depend only on (key, n // block), so a run's data stream does not depend on the
recording times, and a run resumed from a checkpoint continues it exactly.
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import DivergenceError, check_times, is_concrete, log_times
from .data import Covariance
from .model import AutoEncoder, Overlaps, overlaps, pmse
from .rules import LearningRates, check_rule, learning_rates, sgd_step
from .trajectory import Trajectory, atomic_write

__all__ = ["simulate", "simulate_core", "DivergenceError"]

#: A step whose per-sample loss exceeds this multiple of E|x|^2 counts as diverged.
DIVERGENCE_FACTOR = 1e8


def _sample_block(data, key, B, dtype):
    if isinstance(data, Covariance):
        return data.sample(key, B, dtype)
    idx = jax.random.randint(key, (B,), 0, data.shape[0])
    return data[idx].astype(dtype)


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
        X = _sample_block(data, jax.random.fold_in(key, blk), block, dtype)

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
    block: int = 128,
    n0=0,
    div0=-1,
    unroll: int = 4,
):
    """The traceable simulation: jit-, vmap- and shard-compatible.

    Returns (final net, steps reached, diverged step or -1, pmse (n,), overlaps (n, ...)).
    """
    dtype = net.W.dtype
    limit = DIVERGENCE_FACTOR * cov.trace.astype(dtype)
    wd = jnp.asarray(weight_decay, dtype)
    covd = cov.astype(dtype)

    def record(carry, target):
        net, n, div = carry
        net, n, div = _advance(net, n, div, target, data, key, lr, wd, limit, rule, block, unroll)
        e = pmse(net, covd)
        ov = overlaps(net, covd)
        e = jnp.where(div >= 0, jnp.nan, e)
        return (net, n, div), (e, ov)

    carry = (net, jnp.asarray(n0, jnp.int32), jnp.asarray(div0, jnp.int32))
    (net, n, div), (es, ovs) = jax.lax.scan(record, carry, jnp.asarray(record_steps, jnp.int32))
    return net, n, div, es, ovs


_core_jit = eqx.filter_jit(simulate_core)


def _as_data(data, net):
    if isinstance(data, Covariance):
        if data.dim != net.D:
            raise ValueError(f"data: covariance of dimension {data.dim} does not match the network's D = {net.D}")
        return data, data
    X = jnp.asarray(data)
    if X.ndim != 2 or X.shape[1] != net.D:
        raise ValueError(f"data: expected a Covariance or samples of shape (n, {net.D}), got shape {X.shape}")
    if not bool(jnp.all(jnp.isfinite(X))):
        raise ValueError("data: the samples contain non-finite values")
    return X.astype(net.W.dtype), Covariance.from_samples(np.asarray(X))


def simulate(
    net: AutoEncoder,
    data: Covariance | Float[Array, "n D"],
    *,
    key: PRNGKeyArray,
    lr,
    ts=None,
    rule: str = "vanilla",
    weight_decay: float = 0.0,
    block: int = 128,
    progress: bool = False,
    chunk: int = 8,
    checkpoint: str | os.PathLike | None = None,
    on_divergence: str = "raise",
) -> Trajectory:
    """Train ``net`` by online SGD on ``data`` and record pmse and overlaps at times ``ts``.

    Args:
        net: the initial network; its dtype (float32 or float64) is the simulation's.
        data: a :class:`Covariance` (Gaussian inputs) or samples (n, D) drawn with replacement.
        key: PRNG key; the same key gives the same numbers on the same platform.
        lr: eta for all weights, or a mapping with keys "W", "V", "b".
        ts: increasing times t = steps / D (default: 100 log-spaced times from 0.01 to 100).
        rule: "vanilla", "truncated" or "sanger" (tied networks).
        weight_decay: kappa, per unit of t.
        block: samples drawn per random-number call.
        progress: show a progress bar.
        checkpoint: a file to write the run to after every chunk of records (atomically);
            if it exists and holds the same configuration, the run resumes from it.
        on_divergence: "raise" a :class:`DivergenceError`, or "stop" and return the trajectory
            up to the divergence (pmse NaN afterwards, ``config["diverged_at"]`` set).
    """
    if not isinstance(net, AutoEncoder):
        raise TypeError(f"net: expected an AutoEncoder, got {type(net).__name__}")
    check_rule(rule, net)
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence: expected 'raise' or 'stop', got {on_divergence!r}")
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block: expected a positive integer, got {block!r}")
    if is_concrete(weight_decay) and (not np.isfinite(weight_decay) or weight_decay < 0):
        raise ValueError(f"weight_decay: expected kappa >= 0, got {weight_decay}")
    dtype = net.W.dtype
    lrs = learning_rates(lr, dtype)
    data_arr, cov = _as_data(data, net)
    ts = check_times(log_times(100.0) if ts is None else ts)
    D = net.D
    steps = np.round(ts * D).astype(np.int64)
    if np.any(np.diff(steps) < 0):
        raise ValueError("ts: times must be increasing")
    if steps[-1] >= 2**31 - 1:
        raise ValueError(f"ts: {steps[-1]} steps exceed the 2^31 limit of a run")
    config = {
        "kind": "simulation",
        "D": D,
        "K": net.K,
        "activation": net.activation.name,
        "rule": rule,
        "tied": net.tied,
        "bias": net.b is not None,
        "lr": {k: float(getattr(lrs, k)) for k in ("W", "V", "b")},
        "weight_decay": float(weight_decay),
        "dtype": str(jnp.dtype(dtype)),
        "block": block,
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "data": "covariance" if isinstance(data, Covariance) else f"samples{tuple(data_arr.shape)}",
    }
    n_rec = len(steps)
    n_chunks = -(-n_rec // chunk)
    padded = np.concatenate([steps, np.full(n_chunks * chunk - n_rec, steps[-1])]).reshape(n_chunks, chunk)

    pm, ovs = [], []
    n, div, start = 0, -1, 0
    if checkpoint is not None and os.path.exists(checkpoint):
        net, n, div, start, pm, ovs = _load_checkpoint(checkpoint, net, config, steps)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(steps[-1]), initial=int(min(n, steps[-1])), unit="step", desc="SGD", unit_scale=True)
    for c in range(start, n_chunks):
        net, n_new, div_new, es, ov = _core_jit(
            net, data_arr, cov, key, lrs, jnp.asarray(weight_decay, dtype), padded[c], rule=rule, block=block,
            n0=jnp.asarray(n, jnp.int32), div0=jnp.asarray(div, jnp.int32),
        )
        n_new, div = int(n_new), int(div_new)
        if bar is not None:
            bar.update(n_new - n)
        n = n_new
        pm.append(np.asarray(es))
        ovs.append(jax.tree_util.tree_map(np.asarray, ov))
        if checkpoint is not None:
            _save_checkpoint(checkpoint, net, n, div, c + 1, pm, ovs, config, steps)
        if div >= 0:
            break
    if bar is not None:
        bar.close()

    pm_all = np.concatenate(pm)[:n_rec]
    ov_all = jax.tree_util.tree_map(lambda *a: np.concatenate(a)[:n_rec], *ovs)
    got = len(pm_all)
    if got < n_rec:  # stopped early on divergence: pad with NaN
        pm_all = np.concatenate([pm_all, np.full(n_rec - got, np.nan, pm_all.dtype)])
        ov_all = jax.tree_util.tree_map(
            lambda a: np.concatenate([a, np.full((n_rec - got,) + a.shape[1:], np.nan, a.dtype)]), ov_all
        )
    if div >= 0:
        config["diverged_at"] = {"step": div, "t": div / D}
    traj = Trajectory(
        ts=jnp.asarray(steps / D, dtype),
        pmse=jnp.asarray(pm_all),
        overlaps=Overlaps(*(jnp.asarray(getattr(ov_all, f)) for f in ("Q", "R", "T", "T0", "m_W", "m_V"))),
        net=net,
        pca=cov.pca_errors(net.K),
        config=config,
    )
    if div >= 0 and on_divergence == "raise":
        raise DivergenceError(
            f"simulate: the run diverged at step {div} (t = {div / D:.4g}): the loss became non-finite or "
            f"exceeded {DIVERGENCE_FACTOR:.0e} x E|x|^2; try a smaller learning rate "
            f"(lr = {config['lr']})",
            step=div,
            t=div / D,
            trajectory=traj,
        )
    return traj


def _save_checkpoint(path, net, n, div, chunks_done, pm, ovs, config, steps):
    import io
    import json

    arrays = {
        "W": np.asarray(net.W),
        "n": np.asarray(n),
        "div": np.asarray(div),
        "chunks_done": np.asarray(chunks_done),
        "steps": np.asarray(steps),
        "pmse": np.concatenate(pm),
        "config": np.asarray(json.dumps(config, sort_keys=True)),
    }
    if net.V is not None:
        arrays["V"] = np.asarray(net.V)
    if net.b is not None:
        arrays["b"] = np.asarray(net.b)
    for f in Overlaps.__dataclass_fields__:
        arrays["ov_" + f] = np.concatenate([getattr(o, f) for o in ovs])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def _load_checkpoint(path, net, config, steps):
    import json

    try:
        with np.load(path) as z:
            saved = {k: z[k] for k in z.files}
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"checkpoint: {path} is not a readable aedyn checkpoint: {err}") from err
    if json.loads(str(saved["config"])) != json.loads(json.dumps(config, sort_keys=True)) or not np.array_equal(
        saved["steps"], steps
    ):
        raise ValueError(
            f"checkpoint: {path} was written by a different configuration or time grid; "
            "remove it or choose another file"
        )
    net = AutoEncoder(
        jnp.asarray(saved["W"]),
        None if net.tied else jnp.asarray(saved["V"]),
        net.activation,
        jnp.asarray(saved["b"]) if "b" in saved else None,
        net.tied,
    )
    ov = Overlaps(*(saved["ov_" + f] for f in Overlaps.__dataclass_fields__))
    return net, int(saved["n"]), int(saved["div"]), int(saved["chunks_done"]), [saved["pmse"]], [ov]
