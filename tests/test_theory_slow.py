"""Slow physics checks of the theory (issue 3 acceptance; docs/theory.md §7): one-step Monte Carlo at
mid-training states, trajectories vs the mean of SGD seeds, long horizons, reduced vs full
spectrum, and the truncated rule's individual principal components.

Run by the default test command; ``-m "not slow"`` skips them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import theory
from helpers import band_ratio, sgd_runs
from test_theory import ACTIVATIONS, RULES, check_one_step

pytestmark = pytest.mark.slow


# -- one-step Monte Carlo at a mid-training state -------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_one_step_monte_carlo_mid_training(activation, rule):
    """After t = 10 of SGD (eta = 0.5) the network has learnt a spike (Q_kk = O(1)-O(10)): the
    RHS still equals D times the mean one-step change, within 5 standard errors."""
    D = 100
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), D, 2, activation=activation, scale=0.1, dtype=jnp.float64)
    net = aedyn.simulate(net, cov, key=jax.random.key(5), lr=0.5, ts=[10.0], rule=rule).net
    Q = np.asarray(aedyn.overlaps(net, cov).Q)
    assert Q.diagonal().max() > 1.0  # a trained state, not the initial one
    summary = check_one_step(net, cov, 0.1, rule, jax.random.key(8), 200_000)
    print(activation, rule, "Q_kk", Q.diagonal(), summary)


# -- trajectories vs SGD ----------------------------------------------------------------------------


def compare_with_sgd(
    D, strengths, activation, *, lr=0.1, seeds=8, t_max=200.0, n_times=50, rule="vanilla", dtype=jnp.float64
):
    """ODE from the simulation's exact initial state vs the mean of SGD seeds (same initial
    weights, different data streams), at every logged time: |ODE - mean| / max(3% mean, 3 SEM,
    the ODE's change over a 5% time shift)."""
    K = len(strengths)
    cov = aedyn.spiked_covariance(jax.random.key(0), D, strengths)
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, activation=activation, scale=0.1, dtype=dtype)
    P, tr = sgd_runs(net, cov, lr, aedyn.log_times(t_max, n_times), seeds=seeds, rule=rule)
    ts_sim = np.asarray(tr.ts[0], np.float64)
    ode = np.asarray(theory.solve(net, cov, lr=lr, ts=ts_sim, rule=rule).pmse)
    ratio, mean, sem = band_ratio(ode, P, ts=ts_sim, shift=0.05)
    i = int(np.argmax(ratio))
    print(
        f"D={D} strengths={strengths} {activation}: max |ODE-mean|/tol = {ratio.max():.3f} at t = {ts_sim[i]:.4g} "
        f"(ODE {ode[i]:.5g}, SGD {mean[i]:.5g} +- {sem[i]:.2g}); max rel. dev. {np.max(np.abs(ode - mean) / mean):.4f}"
    )
    return ts_sim, ode, mean, sem, ratio


@pytest.mark.parametrize(
    "D, strengths, activation",
    [
        # D = 1000: at D = 500 the late-time gap (SGD above the ODE by 2-3.2% at t = 200 over
        # seeds, a finite-size effect, docs/finite_size.md) sits on the 3% band; at D = 1000 it is
        # 1.3-1.6%. At the steep escape (linear, t ~ 1.3-1.6) SGD escapes later than the theory
        # by O(1/sqrt(D)) in time (2-4% at D = 1000, over seeds): the band allows a 5% time shift there.
        (1000, (3.0, 5.0), "erf"),
        (1000, (3.0, 5.0), "linear"),
    ],
    ids=["standard-erf", "standard-linear"],
)
def test_trajectory_matches_sgd(D, strengths, activation):
    # float64 SGD; the initial weights are init_autoencoder(key(1), ..., dtype=float64).
    ts, ode, mean, sem, ratio = compare_with_sgd(D, strengths, activation)
    bad = ratio > 1
    assert not bad.any(), (
        f"|ODE - SGD mean| > max(3% mean, 3 SEM, 5% time shift) at t = {ts[bad]}: ODE {ode[bad]}, SGD {mean[bad]} +- {sem[bad]}"
    )


def test_sgd_leaves_the_first_order_regime_with_strong_spikes():
    """A measured limit of the first-order theory, not covered by the regime check (which scales
    with eta / D at spike strengths (2, 1), docs/finite_size.md): with spikes up to 17 at D = 1000
    and eta = 0.1 (eta / D = 1e-4), the fastest mode's rate times the SGD step 1/D reaches 0.54 at
    t ~ 13 and 1.2 at t ~ 25. SGD follows the ODE (within 3%) while that product is small, then
    stalls at a pmse of 35-60 while the ODE falls on. One-step Monte Carlo at these states agrees
    with the drift (the theory is right; SGD is no longer first-order). Measured (2 seeds):
    SGD / ODE = 0.995-1.005 for t <= 5, 2.65 at t = 68, 4.10 at t = 100."""
    ts, ode, mean, sem, ratio = compare_with_sgd(1000, (3.0, 5.0, 9.0, 17.0), "erf", seeds=2, t_max=100.0,
                                                 n_times=25)
    early, late = ts <= 5.0, ts >= 60.0
    assert late.sum() >= 2
    np.testing.assert_allclose(mean[early], ode[early], rtol=0.03)
    assert np.all(mean[late] > 2.0 * ode[late]), (ts[late], mean[late], ode[late])
    assert np.all(mean[late] > 30.0) and ode[-1] < 10.0, (mean[late], ode[-1])


# -- long horizons ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standard():
    cov = aedyn.spiked_covariance(jax.random.key(0), 500, (3.0, 5.0))
    return cov


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_long_horizon(activation, rule, standard):
    cov = standard
    net = aedyn.init_autoencoder(jax.random.key(1), 500, 2, activation=activation, scale=0.1, dtype=jnp.float64)
    # Linear: the bulk part of the encoder relaxes on the slow time scale D / (eta sigma^2) = 5000,
    # so at eta = 0.1 the gap at t = 1e4 is still 1.17e-3 (measured; it is a function of eta t
    # alone); the run goes on to t = 1e5, where it is 7.5e-7.
    t_max = 1e5 if activation == "linear" else 1e4
    ts = aedyn.log_times(t_max, 120)
    traj = theory.solve(net, cov, lr=0.1, ts=ts, rule=rule)
    e = np.asarray(traj.pmse)
    assert np.all(np.isfinite(e))
    Q = np.asarray(traj.overlaps.Q)
    assert np.all(np.isfinite(Q))
    assert np.linalg.eigvalsh(Q).min() >= -1e-12 * np.abs(Q).max()
    pca = float(cov.pca_errors(2)[-1])
    gap = e[-1] / pca - 1
    print(f"{activation} {rule}: pmse({t_max:g}) = {e[-1]:.6g}, PCA(2) = {pca:.6g}, relative gap {gap:.3e}, "
          f"steps {traj.config['num_steps']}")
    if rule == "vanilla":
        assert np.all(np.diff(e) <= 1e-12 * e[0]), np.diff(e).max()
    if activation == "linear":
        assert abs(gap) < 1e-3
    if activation == "erf":
        # Approaches the PCA error from above, monotonically (vanilla: everywhere; truncated:
        # after the last plateau), without reaching it (docs/theory.md §8).
        assert gap > 0
        late = e[ts > 100]
        assert np.all(np.diff(late) <= 1e-12 * e[0])
        assert e[-1] < 1.3 * pca


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_reduced_equals_full_spectrum(activation):
    """The spikes + bulk-moment form is exact at finite D: it agrees with the full-spectrum solve
    (all D modes explicit) to the solver tolerance, far below the 1e-3 acceptance."""
    D = 100
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), D, 2, activation=activation, scale=0.1, dtype=jnp.float64)
    ts = aedyn.log_times(1e4, 60)
    red = theory.solve(net, cov, lr=0.1, ts=ts)
    full = theory.solve(theory.init_state(net, cov.full()), cov.full(), lr=0.1, ts=ts)  # no merging
    rel = np.abs(np.asarray(red.pmse) - np.asarray(full.pmse)) / np.asarray(full.pmse)
    T0 = np.abs(np.asarray(red.overlaps.T0) - np.asarray(full.overlaps.T0)).max() / np.abs(
        np.asarray(full.overlaps.T0)).max()
    print(f"{activation} D={D}: max rel. pmse difference reduced vs full {rel.max():.2e}, T0 {T0:.2e}")
    assert rel.max() < 1e-3
    assert T0 < 1e-3


# -- the truncated rule learns the individual principal components --------------------------------


def _off_diagonality(m):
    """max over units k of max_{j != k} |m_kj| / |m_kk| (0 for a diagonal overlap matrix)."""
    m = np.abs(np.asarray(m))
    K = m.shape[0]
    off = np.where(np.eye(K, dtype=bool), 0.0, m).max(1)
    return float(np.max(off / np.diag(m)))


def test_truncated_rule_finds_individual_pcs(standard):
    cov = standard
    net = aedyn.init_autoencoder(jax.random.key(1), 500, 2, activation="linear", scale=0.1, dtype=jnp.float32)
    ts = aedyn.log_times(200.0, 20)
    out = {}
    for rule in RULES:
        th = theory.solve(net, cov, lr=0.1, ts=ts, rule=rule)
        sim = aedyn.simulate(net, cov, key=jax.random.key(3), lr=0.1, ts=ts, rule=rule)
        out[rule] = (_off_diagonality(th.overlaps.m_W[-1]), _off_diagonality(sim.overlaps.m_W[-1]))
        print(rule, "m_W theory", np.round(np.asarray(th.overlaps.m_W[-1]), 3).tolist(),
              "simulation", np.round(np.asarray(sim.overlaps.m_W[-1]), 3).tolist())
    print("off-diagonality (theory, simulation):", out)
    assert out["truncated"][0] < 1e-2 and out["truncated"][1] < 0.1
    assert out["vanilla"][0] > 0.3 and out["vanilla"][1] > 0.3
