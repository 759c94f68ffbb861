"""The trained output (decoder) bias c (issue 11, docs/theory.md "Output bias"): model, rules,
exact pmse, theory (gradient form), one-step Monte-Carlo checks, invariants, sweeps, CLI."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import aedyn as ae
from aedyn import _kernels as kernels, analysis
from aedyn import theory as th
from aedyn.validation import one_step_check


@pytest.fixture(scope="module")
def cov100():
    return ae.spiked_covariance(jax.random.key(1), 100, (3.0, 5.0))


# --- kernel and exact error ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["relu", "erf", "linear", "tanh"])
def test_mean_value_kernel(name):
    act = ae.get_activation(name)
    Q = jnp.asarray([[1.3, 0.2], [0.2, 0.4]])
    b = jnp.asarray([0.4, -0.9])
    m = kernels.mean_value(act, Q, b)
    for k in range(2):
        s = float(np.sqrt(Q[k, k]))
        ref, _ = integrate.quad(lambda z: float(act(jnp.asarray(float(b[k]) + s * z))) * stats.norm.pdf(z), -30, 30,
                                epsabs=1e-13, limit=200)
        assert abs(float(m[k]) - ref) < 1e-9, (name, k)


@pytest.mark.parametrize("tied", [False, True])
def test_exact_pmse_with_output_bias_matches_monte_carlo(cov100, tied):
    net = ae.init_autoencoder(jax.random.key(5), 100, 2, dtype=jnp.float64, activation="relu", bias=0.3,
                              output_bias=0.5, tied=tied, scale=2.0 if tied else 0.5)
    X = cov100.sample(jax.random.key(0), 100_000, jnp.float64)
    mean, sem = ae.pmse_mc(net, X)
    exact = ae.pmse(net, cov100)
    assert abs(float(exact - mean)) < 4 * float(sem)
    # The theory's error of the same network is the same number.
    s = th.init_state(net, cov100)
    assert abs(float(th.theory_pmse(s, th.theory_params(cov100))) - float(exact)) < 1e-10
    # Overlaps: C = V c / D, c2 = |c|^2 / D, in the network and in the theory state.
    ov = ae.overlaps(net, cov100)
    np.testing.assert_allclose(ov.C, net.decoder @ net.c / 100, rtol=1e-12)
    np.testing.assert_allclose(ov.c2, 0.25, rtol=1e-12)
    ovs = th.state_overlaps(s, cov100.eigvals, cov100.bulk)
    np.testing.assert_allclose(ovs.C, ov.C, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ovs.c2, ov.c2, rtol=1e-10)


def test_optimal_output_bias_is_the_fixed_point(cov100):
    """With zero-mean data the error is smallest at c = -sum_k v^k E[g(lambda^k)] (docs/theory.md)."""
    net = ae.init_autoencoder(jax.random.key(5), 100, 2, dtype=jnp.float64, activation="relu", bias=0.5,
                              output_bias=0.0, scale=0.5)
    ov = ae.overlaps(net, cov100)
    m = kernels.mean_value(net.activation, ov.Q, net.b)
    c_star = -(m @ net.V)
    best = ae.pmse(ae.AutoEncoder(net.W, net.V, "relu", net.b, c=c_star), cov100)
    for d in (0.05, -0.05):
        other = ae.AutoEncoder(net.W, net.V, "relu", net.b, c=c_star + d)
        assert float(ae.pmse(other, cov100)) > float(best)
    none = ae.pmse(ae.AutoEncoder(net.W, net.V, "relu", net.b), cov100)
    assert float(best) < float(none)


# --- SGD rules: c <- c + (eta_c / D) Delta, every rule is minus the gradient -----------------------


@pytest.mark.parametrize("rule,tied", [("vanilla", False), ("truncated", False), ("vanilla", True),
                                       ("truncated", True), ("sanger", True)])
def test_sgd_step_output_bias(rule, tied):
    D = 50
    net = ae.init_autoencoder(jax.random.key(3), D, 3, dtype=jnp.float64, activation="relu", bias=0.2,
                              output_bias=0.3, tied=tied, scale=2.0 if tied else 0.7)
    x = jax.random.normal(jax.random.key(4), (D,), jnp.float64) * 2.0
    lr = {"W": 0.3, "V": 0.2, "b": 0.1, "c": 0.7}
    new, loss = ae.sgd_step(net, x, lr, rule=rule)
    assert abs(float(loss) - float(net.loss(x))) < 1e-10
    # The output bias follows the full residual of the whole network.
    np.testing.assert_allclose(new.c - net.c, 0.7 / D * (x - net(x)), rtol=1e-10, atol=1e-14)
    if rule == "vanilla":
        # The whole step is minus the scaled gradient of the per-sample loss (docs/theory.md §1, §8).
        g = jax.grad(lambda n: n.loss(x))(net)
        np.testing.assert_allclose(new.c - net.c, -0.7 / D * g.c, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(new.W - net.W, -0.3 / D**2 * g.W, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(new.b - net.b, -0.1 / D**2 * g.b, rtol=1e-10, atol=1e-14)
        if not tied:
            np.testing.assert_allclose(new.V - net.V, -0.2 / D * g.V, rtol=1e-10, atol=1e-14)


def test_learning_rates_with_c():
    lr = ae.learning_rates({"W": 0.1, "c": 0.3})
    assert float(lr.c) == pytest.approx(0.3) and float(lr.V) == pytest.approx(0.1)
    assert float(ae.learning_rates(0.2).c) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="eta_c"):
        ae.learning_rates({"W": 0.1, "c": -1.0})


# --- theory: gradient flow, one-step Monte-Carlo, invariants (docs/theory.md §7) ---------------------


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_rhs_is_gradient_flow_with_output_bias(cov100, tied, activation):
    net = ae.init_autoencoder(jax.random.key(5), 100, 2, dtype=jnp.float64, activation=activation, tied=tied,
                              bias=0.1, output_bias=0.3, scale=2.0 if tied else 0.5)
    s = th.init_state(net, cov100)
    lr = {"W": 0.3, "V": 0.7, "b": 0.2, "c": 0.4}
    p = th.theory_params(cov100, lr)
    d = th.rhs(0.0, s, p)

    def f(wt, vs, b, c, M):
        return th.theory_pmse(th.TheoryState(wt, vs, M, b, s.activation, s.tied, s.D, c), p)

    gw, gv, gb, gc, gM = jax.grad(f, argnums=(0, 1, 2, 3, 4))(s.wt, s.vs, s.b, s.c, s.M)
    np.testing.assert_allclose(d.wt, -0.3 * gw, rtol=1e-10, atol=1e-14)
    if not tied:
        np.testing.assert_allclose(d.vs, -0.7 * gv, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(d.b, -0.2 * gb, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(d.c, -0.4 * gc, rtol=1e-10, atol=1e-14)
    # The bulk moment's flow decreases pmse at the rate of its gradient (d pmse/dt = <gM, dM>).
    Z = s.M.shape[0]
    assert Z == (2 if tied else 4) + 1
    dp = jnp.sum(gw * d.wt) + jnp.sum(gb * d.b) + jnp.sum(gc * d.c) + jnp.sum(gM * d.M)
    if not tied:
        dp = dp + jnp.sum(gv * d.vs)
    assert float(dp) < 0


D_MC = 200
MC_CASES = {
    "relu_bias_c": (dict(activation="relu", bias=0.2, output_bias=1.0), "vanilla"),
    "relu_c_truncated": (dict(activation="relu", output_bias=-1.0), "truncated"),
    "erf_tied_c": (dict(activation="erf", tied=True, scale=3.0, output_bias=1.0), "vanilla"),
}


@pytest.mark.parametrize("case", sorted(MC_CASES))
def test_one_step_monte_carlo_output_bias(case):
    opts, rule = MC_CASES[case]
    opts = dict(opts)
    opts.setdefault("scale", 1.0)
    cov = ae.spiked_covariance(jax.random.key(1), D_MC, (3.0, 5.0))
    net = ae.init_autoencoder(jax.random.key(2), D_MC, 2, dtype=jnp.float64, **opts)
    lr = {"W": 0.05, "V": 0.05, "b": 0.05, "c": 0.08}
    res = one_step_check(net, cov, lr=lr, key=jax.random.key(3), n=60_000, rule=rule)
    assert "c" in res
    for name, (pred, mean, sem) in res.items():
        z = np.abs(pred - mean) / (sem + 0.08 / D_MC * np.abs(pred).max())
        assert z.max() < 5.0, f"{case}: {name} deviates by {z.max():.1f} standard errors"
    if opts["activation"] != "relu":
        return
    # The check resolves the output-bias terms: without the mean E[relu] the prediction for c is off.
    pred, mean, sem = res["c"]
    p_naive = -0.08 * np.asarray(th.init_state(net, cov).c)  # dc/dt = -eta_c c, the mean term dropped
    assert (np.abs(p_naive - mean) / (sem + 1e-12)).max() > 5


def test_solve_with_output_bias_invariants(cov100):
    net = ae.init_autoencoder(jax.random.key(2), 100, 2, activation="relu", bias=0.5, output_bias=0.0,
                              dtype=jnp.float64)
    ts = np.geomspace(0.1, 20.0, 12)
    tr = th.solve(net, cov100, lr=0.3, ts=ts)
    assert tr.config["method"] == "gradient" and tr.config["output_bias"] and tr.config["lr"]["c"] == 0.3
    e = np.asarray(tr.pmse)
    assert np.all(np.diff(e) <= 1e-10 * e[:-1])  # vanilla: pmse never increases
    assert tr.state.c.shape == (cov100.n_modes,) and tr.state.M.shape == (5, 5)
    assert np.all(np.linalg.eigvalsh(np.asarray(tr.state.M)) > -1e-10)  # PSD bulk moment
    with pytest.raises(ValueError, match="method"):
        th.solve(net, cov100, ts=ts, method="stein")


def test_init_scale_keeps_the_output_bias(cov100):
    net = ae.init_autoencoder(jax.random.key(2), 100, 2, activation="relu", bias=0.5, output_bias=0.4,
                              dtype=jnp.float64, scale=1.0)
    small = ae.init_autoencoder(jax.random.key(2), 100, 2, activation="relu", bias=0.5, output_bias=0.4,
                                dtype=jnp.float64, scale=0.1)
    s = th.init_state(net, cov100).scale(0.1)
    s2 = th.init_state(small, cov100)
    np.testing.assert_allclose(s.M, s2.M, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(s.c, s2.c, rtol=1e-12)


# --- the one-unit fraction f(beta) and the levels (docs/theory.md §8) ------------------------------


def test_relu_fraction_values():
    f = analysis.relu_fraction([0.0, 1.0, 2.0])
    np.testing.assert_allclose(f[[0, 2]], [0.733, 0.994], atol=1e-3)
    assert np.all(np.diff(analysis.relu_fraction(np.linspace(-2, 6, 50))) > 0)
    g = analysis.relu_fraction(np.linspace(-3, 3, 61), output_bias=False)
    assert abs(g.max() - 0.5) < 1e-12 and abs(g[30] - 0.5) < 1e-12
    # Monte-Carlo: the best v (and c) for one unit on a standard normal component.
    z = np.random.default_rng(0).standard_normal(400_000)
    for beta in (0.0, 1.0):
        h = np.maximum(z + beta, 0)
        with_c = np.cov(z, h)[0, 1] ** 2 / np.var(h)
        without = np.mean(z * h) ** 2 / np.mean(h * h)
        assert abs(with_c - analysis.relu_fraction(beta)) < 5e-3
        assert abs(without - analysis.relu_fraction(beta, output_bias=False)) < 5e-3


def test_relu_level(cov100):
    pca = np.asarray(cov100.pca_errors(2))
    assert analysis.relu_level(cov100, 2) == pytest.approx(pca[1])
    assert analysis.relu_level(cov100, 2, output_bias=True) == pytest.approx(pca[2])
    rho1 = float(cov100.spectrum()[0])
    assert analysis.relu_level(cov100, 1) == pytest.approx(pca[0] - rho1 / (4 * 100))


# --- sweeps and CLI ------------------------------------------------------------------------------------


def test_sweeps_with_output_bias(cov100):
    ts = [0.5, 1.0]
    grid = {"lr_c": [0.0, 0.5]}
    base = {"lr": 0.2}
    sim = ae.sweep_simulation(cov100, K=2, grid=grid, base=base, ts=ts, activation="relu", bias=0.5,
                              output_bias=0.0)
    # Tsit5 alone (t <= 1 is far from stiff; the policy's implicit phase would add ~30 s of compilation).
    theo = ae.sweep_theory(cov100, K=2, grid=grid, base=base, ts=ts, activation="relu", bias=0.5, output_bias=0.0,
                           solver=diffrax.Tsit5())
    assert sim.pmse.shape == (2, 2) and theo.pmse.shape == (2, 2)
    assert np.all(np.isfinite(sim.pmse)) and np.all(theo.status["ok"])
    assert not np.allclose(theo.pmse[0], theo.pmse[1])  # eta_c matters
    # Same as a single solve.
    net = ae.sweeps.initial_network(0, 100, 2, activation="relu", bias=0.5, output_bias=0.0, init_scale=1.0)
    one = th.solve(net, cov100, lr={"W": 0.2, "V": 0.2, "b": 0.2, "c": 0.5}, ts=ts, init_scale=0.1,
                   solver=diffrax.Tsit5())
    np.testing.assert_allclose(theo.pmse[1], one.pmse, rtol=1e-6)
    with pytest.raises(ValueError, match="output_bias"):
        ae.sweep_theory(cov100, K=2, grid=grid, ts=ts, activation="relu", output_bias=float("nan"))


def test_cli_output_bias(tmp_path):
    from typer.testing import CliRunner

    from aedyn.cli import app

    res = CliRunner().invoke(app, ["simulate", "--D", "60", "--K", "2", "--activation", "relu", "--bias", "0.5",
                                   "--output-bias", "0", "--lr-c", "0.3", "--t-max", "0.5", "--n-times", "4",
                                   "--theory", "--no-progress", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    import json

    cfg = json.loads((tmp_path / "simulation.json").read_text())["config"]
    assert cfg["output_bias"] and cfg["lr"]["c"] == pytest.approx(0.3)
    bad = CliRunner().invoke(app, ["simulate", "--lr-c", "-1", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "--lr-c" in bad.output
