"""Scalars of a theory solution and their gradients w.r.t. hyperparameters and spectrum.

:func:`make_curve` builds a differentiable map ``theta -> pmse(ts)`` (the theory's learning
curve, averaged over the initial networks of some seeds, as in :mod:`aedyn.sweeps`), where
``theta`` is a dict with any of

    lr (eta_W = eta_V = eta_b), lr_W, lr_V, lr_b, init_scale, weight_decay, rho (N,)

and parameters not in ``theta`` take the values of ``base``. Scalars of a curve:
:func:`final_pmse`, :func:`log_time_area`, :func:`time_to_level` (smooth: interpolated between
grid points) and :func:`curve_distance`. Gradients go through the diffrax solve in reverse mode
(:func:`jax.grad`) or forward mode (:func:`jax.jvp`, cheaper for a few parameters), both with the
default adjoint of :func:`aedyn.theory.solve`; see :func:`value_and_grad`.
"""

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import theory
from ._activations import get_activation
from ._checks import check_times, require_x64
from ._data import Covariance
from ._defaults import ATOL, INIT_SCALE, LR, MAX_STEPS, RTOL, log_times
from ._sweeps import PARAMETERS, initial_network

_BASE = {"lr": LR, "init_scale": INIT_SCALE, "weight_decay": 0.0}


def make_curve(
    cov: Covariance,
    *,
    K: int = 2,
    seeds: Sequence[int] = (0,),
    ts=None,
    base: Mapping | None = None,
    activation="erf",
    rule: str = "vanilla",
    method: str = "auto",
    solver=None,
    rtol: float = RTOL,
    atol: float = ATOL,
    max_steps: int = MAX_STEPS,
    adjoint=None,
) -> Callable[[dict], jax.Array]:
    """``curve(theta) -> (n_t,)``: the theory's pmse at ``ts``, mean over the initial networks
    of ``seeds`` (unit networks times ``init_scale``), differentiable in every entry of theta.

    A transform of :func:`aedyn.theory.solve` (``vmap`` over the seeds' initial states), with its
    solver policy and its default adjoint (``jax.grad`` and ``jax.jacfwd`` both work).
    """
    require_x64("aedyn.objectives.make_curve")
    act = get_activation(activation)
    ts = jnp.asarray(check_times(log_times() if ts is None else ts), jnp.float64)
    base = {**_BASE, **(base or {})}
    for k in base:
        if k not in PARAMETERS or k == "seed":
            raise ValueError(f"base: unknown parameter {k!r}; expected some of {PARAMETERS} but 'seed'")
    states = [theory.init_state(initial_network(int(s), cov.dim, K, init_scale=1.0, activation=act), cov)
              for s in seeds]
    states0 = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    kw = dict(ts=ts, rule=rule, method=method, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps,
              adjoint=adjoint, throw=False)

    def curve(theta: Mapping) -> jax.Array:
        unknown = set(theta) - set(PARAMETERS)
        if unknown or "seed" in theta:
            raise ValueError(f"theta: unknown or non-differentiable parameters {sorted(unknown | ({'seed'} & set(theta)))}")
        p = {**base, **theta}
        f = lambda k: jnp.asarray(p.get(k, p["lr"]), jnp.float64)  # noqa: E731
        c = cov if "rho" not in p else Covariance(jnp.asarray(p["rho"], jnp.float64), cov.eigvecs, cov.bulk)

        def one(s0):
            return theory.solve(s0, c, lr={"W": f("lr_W"), "V": f("lr_V"), "b": f("lr_b")}, init_scale=f("init_scale"),
                                weight_decay=f("weight_decay"), **kw).pmse

        return jnp.mean(jax.vmap(one)(states0), axis=0)

    curve.ts = ts
    curve.base = base
    return curve


# --------------------------------------------------------------------------------------------
# Scalars of a curve
# --------------------------------------------------------------------------------------------


def final_pmse(curve: jax.Array) -> jax.Array:
    """pmse at the last time."""
    return curve[-1]


def log_time_area(ts, curve: jax.Array) -> jax.Array:
    """Area under the curve against log t (trapezoids): int pmse d(log t)."""
    lt = jnp.log(jnp.asarray(ts, curve.dtype))
    return jnp.sum(0.5 * (curve[1:] + curve[:-1]) * jnp.diff(lt))


def time_to_level(ts, curve: jax.Array, level, *, overshoot: float = 1.0) -> jax.Array:
    """First time the curve reaches ``level``, interpolated linearly in (log t, pmse) between the
    grid points around the first crossing: a smooth (piecewise-differentiable) function of the
    curve. Not reached by the last time: ``t_last * exp(overshoot * (pmse_last - level) / level)``,
    continuous with the reached case and increasing with the remaining gap (a penalty usable for
    optimisation at a fixed budget)."""
    lt = jnp.log(jnp.asarray(ts, curve.dtype))
    below = curve <= level
    reached = jnp.any(below)
    i1 = jnp.argmax(below)  # first index at or below the level
    i0 = jnp.maximum(i1 - 1, 0)
    c0, c1 = curve[i0], curve[i1]
    denom = jnp.where(c0 - c1 > 0, c0 - c1, 1.0)
    frac = jnp.where(i1 > 0, jnp.clip((c0 - level) / denom, 0.0, 1.0), 0.0)
    t_hit = jnp.exp(lt[i0] + frac * (lt[i1] - lt[i0]))
    t_miss = jnp.exp(lt[-1] + overshoot * (curve[-1] - level) / level)
    return jnp.where(reached, t_hit, t_miss)


def curve_distance(curve: jax.Array, observed, *, log: bool = True, weights=None) -> jax.Array:
    """Mean squared distance to an observed curve (of log pmse by default, which weighs the
    decades of a learning curve alike)."""
    obs = jnp.asarray(observed, curve.dtype)
    if obs.shape != curve.shape:
        raise ValueError(f"observed: expected shape {curve.shape} like the curve, got {obs.shape}")
    d = (jnp.log(curve) - jnp.log(obs)) if log else (curve - obs)
    w = jnp.ones_like(d) if weights is None else jnp.asarray(weights, curve.dtype)
    return jnp.sum(w * d**2) / jnp.sum(w)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


def value_and_grad(f: Callable[[dict], jax.Array], theta: Mapping, *, mode: str = "reverse"):
    """(f(theta), df/dtheta) for a scalar function of a dict of parameters.

    ``mode="reverse"``: :func:`jax.value_and_grad`. ``mode="forward"``: one :func:`jax.jvp` per
    parameter entry, batched with vmap.
    """
    theta = {k: jnp.asarray(v, jnp.float64) for k, v in theta.items()}
    if mode == "reverse":
        return jax.value_and_grad(f)(theta)
    if mode != "forward":
        raise ValueError(f"mode: expected 'reverse' or 'forward', got {mode!r}")
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(theta)
    g = lambda x: f(unravel(x))  # noqa: E731
    basis = jnp.eye(flat.size, dtype=flat.dtype)
    vals, tangents = jax.vmap(lambda v: jax.jvp(g, (flat,), (v,)))(basis)
    return vals[0], unravel(tangents)


def finite_difference(f: Callable[[dict], jax.Array], theta: Mapping, *, rel_step: float = 1e-4) -> dict:
    """Central finite differences of a scalar f for every entry of theta (a check)."""
    out = {}
    for k, v in theta.items():
        v = np.asarray(v, np.float64)
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            h = rel_step * max(abs(float(v[idx])), 1e-3)
            vp, vm = v.copy(), v.copy()
            vp[idx] += h
            vm[idx] -= h
            fp = float(f({**theta, k: jnp.asarray(vp)}))
            fm = float(f({**theta, k: jnp.asarray(vm)}))
            g[idx] = (fp - fm) / (2 * h)
        out[k] = g
    return out
