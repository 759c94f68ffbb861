"""Trajectories against SGD and the paper's phenomena for the extended models (issue 4).

Each case: the ODE from the simulation's exact initial state against the mean of 5 SGD seeds
from the same initial weights (D = 500, eta = 0.1 unless stated), at every logged time up to
t = 200: |ODE - mean| <= max(3% of the mean, 3 standard errors of the mean).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn as ae
from aedyn import analysis
from aedyn import theory as th
from helpers import assert_in_band, sgd_runs

pytestmark = pytest.mark.slow

D = 500
SEEDS = 5
TS = np.concatenate([[0.0], np.geomspace(0.1, 200.0, 30)])


@functools.lru_cache(maxsize=None)
def _cov(strengths=(3.0, 5.0), dim=D):
    return ae.spiked_covariance(jax.random.key(1), dim, strengths)


def sgd_seeds(net, cov, lr, ts, *, rule="vanilla", weight_decay=0.0, seeds=SEEDS):
    """pmse (seeds, len(ts)) and PC overlaps of SGD runs from the same initial weights."""
    e, tr = sgd_runs(net, cov, lr, ts, seeds=seeds, rule=rule, weight_decay=weight_decay)
    return e, np.asarray(tr.overlaps.m_W)


def assert_agrees(ode, sims, label):
    assert_in_band(TS, ode, sims, label)


CASES = {
    "relu_trained_bias": (dict(activation="relu", bias=0.0), {}),
    # tied linear at D = 500: SGD escapes later than the ODE (up to 10.6% at t = 3-5, 1.4x the band;
    # halving eta does not help: 1.34x), a finite-D effect: at D = 1000 0.94x. Tested at D = 1000.
    "tied_linear": (dict(activation="linear", tied=True, scale=1.0), dict(dim=1000)),
    "tied_erf": (dict(activation="erf", tied=True, scale=1.0), {}),
    # tanh at D = 500: SGD ends 2.5-4% above the ODE at t ~ 150-200 (1.08-1.16 x the tolerance,
    # float32 and float64 draws), the late-time lift of SGD noise (docs/theory.md §7.2) that shrinks
    # with D: at D = 1000 it is 2.0% (0.67 x the tolerance). Tested at D = 1000.
    "tanh_untied": (dict(activation="tanh"), dict(dim=1000)),
    "erf_weight_decay": (dict(activation="erf"), dict(weight_decay=0.05)),
    "erf_separate_rates": (dict(activation="erf"), dict(lr={"W": 0.05, "V": 0.2})),
    "erf_truncated": (dict(activation="erf"), dict(rule="truncated")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectory_matches_sgd(case):
    net_opts, run_opts = CASES[case]
    net_opts = {"scale": 0.1, **net_opts}
    lr = run_opts.get("lr", 0.1)
    rule = run_opts.get("rule", "vanilla")
    wd = run_opts.get("weight_decay", 0.0)
    dim = run_opts.get("dim", D)
    cov = _cov(dim=dim)
    net = ae.init_autoencoder(jax.random.key(7), dim, 2, dtype=jnp.float32, **net_opts)
    sims, mW = sgd_seeds(net, cov, lr, TS, rule=rule, weight_decay=wd)
    ode = th.solve(net, cov, lr=lr, ts=TS, rule=rule, weight_decay=wd)
    assert_agrees(np.asarray(ode.pmse), sims, case)
    if rule == "truncated":
        # (d) each unit converges to its own principal component, in theory and in SGD: the
        # overlap matrix with the top PCs is diagonal up to signs (the cosines themselves stay
        # small for erf, whose encoder keeps its random bulk part while it shrinks).
        for m in (np.abs(np.asarray(ode.overlaps.m_W[-1])), np.abs(mW[:, -1]).mean(0)):
            ratio = m / np.diagonal(m)[:, None]
            assert np.all(ratio[~np.eye(2, dtype=bool)] < 0.1), m


def test_sequential_learning_plateaus_in_order():
    """(a) pmse descends in steps, each plateau at the PCA error of one more component, the
    leading component first."""
    cov = _cov((6.0, 1.5))
    pca = np.asarray(cov.pca_errors(2))
    ts = np.geomspace(0.05, 400.0, 120)
    # Linear: a clear plateau at PCA(1) between the two escapes, in the theory and in SGD.
    net = ae.init_autoencoder(jax.random.key(3), D, 2, dtype=jnp.float32, activation="linear", scale=0.1)
    ode = th.solve(net, cov, lr=0.1, ts=ts)
    plats = analysis.find_plateaus(ts, np.asarray(ode.pmse), flatness=0.05, min_decades=0.4)
    # starts on the PCA(0) level (the flat start before the first escape)
    assert abs(float(ode.pmse[0]) - pca[0]) / pca[0] < 0.02, plats
    mid = [p for p in plats if abs(p.level - pca[1]) / pca[1] < 0.05]
    assert mid, f"no plateau at the PCA(1) level {pca[1]:.3f}: {plats}"
    esc = analysis.escape_times(ts, np.asarray(ode.pmse), pca)
    assert np.all(np.isfinite(esc)) and esc[0] < mid[0].t_start < esc[1]
    t_mid = np.sqrt(mid[0].t_start * mid[0].t_end)
    sims, _ = sgd_seeds(net, cov, 0.1, np.array([0.0, t_mid]))
    assert abs(sims[:, 1].mean() - pca[1]) / pca[1] < 0.05
    # erf: the same order (the sigmoidal network approaches each level slowly, so the plateau
    # is a slope rather than flat): the leading PC is learned first, in theory and in SGD.
    net = ae.init_autoencoder(jax.random.key(3), D, 2, dtype=jnp.float32, activation="erf", scale=0.1)
    t_erf = np.geomspace(0.5, 200.0, 40)
    ode = th.solve(net, cov, lr=0.1, ts=t_erf)
    sims, mW = sgd_seeds(net, cov, 0.1, t_erf)
    for label, m in (("theory", np.abs(np.asarray(ode.overlaps.m_W))), ("sgd", np.abs(mW).mean(0))):
        # strength of each PC in the encoder, summed over units
        pc = np.sqrt((m**2).sum(1))  # (t, P)
        t1 = t_erf[np.argmax(pc[:, 0] > 0.5 * pc[-1, 0])]
        t2 = t_erf[np.argmax(pc[:, 1] > 0.5 * pc[-1, 1])]
        assert t1 < t2, (label, t1, t2)


def test_tied_erf_stays_above_pca_by_the_predicted_amount_untied_approaches():
    """(b) tied erf: long-time pmse = the analysis' plateau level, far above PCA; untied erf
    approaches the PCA error monotonically."""
    cov = _cov()
    pca = np.asarray(cov.pca_errors(2))
    ts = np.geomspace(0.1, 1e4, 60)
    tied = ae.init_autoencoder(jax.random.key(7), D, 2, dtype=jnp.float32, activation="erf", tied=True, scale=1.0)
    ode = th.solve(tied, cov, lr=0.1, ts=ts)
    predicted = analysis.plateau_levels(th.init_state(tied, cov), cov)[-1]
    assert predicted > 5 * pca[-1]
    assert abs(float(ode.pmse[-1]) - predicted) / predicted < 1e-3
    sims, _ = sgd_seeds(tied, cov, 0.1, np.array([0.0, 200.0]))
    assert abs(sims[:, -1].mean() - predicted) / predicted < 0.03
    untied = ae.init_autoencoder(jax.random.key(7), D, 2, dtype=jnp.float32, activation="erf", scale=0.1)
    ode_u = th.solve(untied, cov, lr=0.1, ts=ts)
    e = np.asarray(ode_u.pmse)
    assert np.all(np.diff(e) <= 1e-12)
    gap = (e - pca[-1]) / pca[-1]
    assert gap[-1] < 0.1 and gap[-1] < gap[np.searchsorted(ts, 1e3)]


def test_relu_loses_half_without_bias_and_paired_units_recover():
    """(c) relu without bias: one unit reconstructs half of a component's variance, K = M units
    stay above the PCA error; paired units (K = 2M) reach it."""
    cov = _cov()
    pca = np.asarray(cov.pca_errors(4))
    rho = np.asarray(cov.eigvals)
    ts = np.geomspace(0.1, 1e4, 40)
    one = ae.init_autoencoder(jax.random.key(2), D, 1, dtype=jnp.float64, activation="relu")
    e1 = float(th.solve(one, cov, lr=0.1, ts=ts).pmse[-1])
    np.testing.assert_allclose(e1, pca[0] - rho[0] / (4 * D), rtol=1e-3)
    two = ae.init_autoencoder(jax.random.key(2), D, 2, dtype=jnp.float32, activation="relu")
    e2 = float(th.solve(two, cov, lr=0.1, ts=ts).pmse[-1])
    assert e2 > 5 * pca[2]
    sims, _ = sgd_seeds(two, cov, 0.1, np.array([0.0, 200.0]))
    assert sims[:, -1].mean() > 5 * pca[2]
    four = ae.init_autoencoder(jax.random.key(2), D, 4, dtype=jnp.float64, activation="relu")
    e4 = float(th.solve(four, cov, lr=0.1, ts=ts).pmse[-1])
    assert abs(e4 - pca[2]) / pca[2] < 0.01
