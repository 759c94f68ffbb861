"""Shared test helpers: SGD runs vmapped over seeds, and the SGD-vs-theory tolerance band."""

import jax
import numpy as np

import aedyn


def sgd_runs(net, data, lr, ts, *, seeds=5, key=1234, **kw):
    """``aedyn.simulate`` from the same initial network, ``jax.vmap``-ed over ``seeds`` data keys.

    Returns (pmse (seeds, len(ts)) as float64 NumPy, the vmapped Trajectory); asserts no run diverged.
    """
    keys = jax.random.split(jax.random.key(key), seeds)
    runs = jax.jit(jax.vmap(lambda k: aedyn.simulate(net, data, key=k, lr=lr, ts=ts, on_divergence="stop", **kw)))
    tr = runs(keys)
    assert np.all(np.asarray(tr.stats["diverged_step"]) < 0), "an SGD run diverged"
    return np.asarray(tr.pmse, np.float64), tr


def band_ratio(ode, sims, rel=0.03, sems=3.0, ts=None, shift=0.0):
    """|ODE - mean| / max(rel * mean, sems * SEM, shift band) at every time (<= 1: inside the
    band), and (mean, sem).

    ``shift`` (with ``ts``): also allow the change of the ODE curve over a relative time shift
    ``shift``, |d ODE / d log t| * log(1 + shift). At a steep escape from a plateau the pmse at a
    fixed time is hypersensitive to when the escape happens, and finite-D SGD escapes later than
    the D -> infinity theory by O(1/sqrt(D)) in time (measured: 2.4% at D = 1000, 1.2% at D = 4000,
    linear, spikes (3, 5)); away from escapes this term is negligible."""
    ode = np.asarray(ode)
    mean = sims.mean(0)
    sem = sims.std(0, ddof=1) / np.sqrt(sims.shape[0])
    tol = np.maximum(rel * mean, sems * sem)
    if shift:
        lt = np.log(np.asarray(ts, np.float64))
        tol = np.maximum(tol, np.abs(np.gradient(ode, lt)) * np.log1p(shift))
    return np.abs(ode - mean) / tol, mean, sem


def assert_in_band(ts, ode, sims, label, rel=0.03, sems=3.0):
    """The ODE lies within max(rel of the SGD mean, sems standard errors) at every time."""
    ratio, mean, sem = band_ratio(ode, sims, rel, sems)
    bad = ratio > 1
    assert not bad.any(), (
        f"{label}: ODE leaves the SGD band max({rel:.0%}, {sems:g} SEM) at t = {np.asarray(ts)[bad]}: "
        f"ode {np.asarray(ode)[bad]}, sgd {mean[bad]} +- {sem[bad]}"
    )
    return ratio
