"""Fast checks of the theory (docs/theory.md §3, §6, §7): one-step Monte Carlo at initialisation,
the Stein and gradient forms, the gradient-flow structure, identities, and jit/vmap/grad.

The slow physics checks (mid-training Monte Carlo, trajectories vs SGD, long horizons, truncated
rule) are in ``test_theory_slow.py``.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import theory
from aedyn._kernels import gram, mean_slope

ACTIVATIONS = ("linear", "erf", "relu")
RULES = ("vanilla", "truncated")

#: A Monte-Carlo mean must match the right-hand side within this many standard errors
#: (elementwise; a few hundred comparisons in all, so a 5-sigma miss is a real discrepancy).
MC_SIGMAS = 5.0


def one_step_mc(net, cov, lr, rule, key, n, chunk=10_000):
    """D times the mean one-step SGD change of the factors, over n fresh samples, with SEs.

    Returns (means, standard errors), each a tuple (wt (K, N), vs (K, N), M1, M2 (2K, 2K)) where
    M1 is the first-order change of the bulk moment M = sum_bulk z z^T (z dz^T + dz z^T) and M2
    the second-order one (dz dz^T), measured per sample, so that D E[M1] is the drift the theory
    predicts exactly and D E[M2] = O(eta / D) is the noise term it neglects (docs/theory.md §7.1).
    The mean change of the factors themselves has no second-order term: one step is linear in
    the sample's update at fixed weights, whose mean the Stein form computes exactly.
    """
    D, K = net.D, net.K
    dt = net.W.dtype
    U = cov.eigvecs.astype(dt)
    sq = jnp.sqrt(jnp.asarray(D, dt))
    lrs = aedyn.learning_rates(lr, dt)
    Z = jnp.concatenate([net.W, net.V / sq])
    z = Z @ U

    def one(x):
        new, _ = aedyn.sgd_step(net, x, lrs, rule=rule)
        dZ = jnp.concatenate([new.W - net.W, (new.V - net.V) / sq])
        dz = dZ @ U
        M1 = Z @ dZ.T - z @ dz.T
        M2 = dZ @ dZ.T - dz @ dz.T
        return D * dz[:K], D * dz[K:], D * (M1 + M1.T), D * M2

    def body(acc, k):
        out = jax.vmap(one)(cov.sample(k, chunk, dt))
        s1 = jax.tree_util.tree_map(lambda o: o.sum(0), out)
        s2 = jax.tree_util.tree_map(lambda o: (o**2).sum(0), out)
        return jax.tree_util.tree_map(jnp.add, acc, (s1, s2)), None

    shapes = jax.eval_shape(one, jnp.zeros((D,), dt))
    zero = jax.tree_util.tree_map(lambda o: jnp.zeros(o.shape, o.dtype), shapes)
    nb = n // chunk
    (s1, s2), _ = jax.lax.scan(body, (zero, zero), jax.random.split(key, nb))
    m = nb * chunk
    mean = jax.tree_util.tree_map(lambda a: a / m, s1)
    se = jax.tree_util.tree_map(lambda a, b: jnp.sqrt(jnp.maximum(b / m - (a / m) ** 2, 0.0) / (m - 1)), s1, s2)
    return mean, se


_one_step_mc_jit = jax.jit(one_step_mc, static_argnames=("rule", "n", "chunk"))


def check_one_step(net, cov, lr, rule, key, n):
    """Assert the theory's RHS (both methods) equals the Monte-Carlo drift; return a summary."""
    state = theory.init_state(net, cov)
    params = theory.theory_params(cov, lr)
    (mw, mv, m1, m2), (sw, sv, s1, _) = _one_step_mc_jit(net, cov, lr, rule=rule, key=key, n=n)
    out = {}
    for method in theory.METHODS:
        r = theory.rhs(0.0, state, params, rule=rule, method=method)
        for name, pred, mean, se in (("wt", r.wt, mw, sw), ("vs", r.vs, mv, sv), ("M", r.M, m1, s1)):
            pred, mean, se = (np.asarray(a) for a in (pred, mean, se))
            scale = np.abs(pred).max()
            # The check must be able to see an error of order the drift itself.
            assert se.max() < 0.2 * scale, f"{name}: Monte-Carlo error {se.max():.3g} too large vs {scale:.3g}"
            z = np.abs(pred - mean) / (se + 1e-12 * scale)
            assert z.max() < MC_SIGMAS, f"{method} {name}: |RHS - MC| = {z.max():.2f} standard errors"
            out[name] = (float(z.max()), float(se.max() / scale))
    # The neglected second-order term of the bulk moment is O(eta / D) relative.
    out["M2"] = float(np.abs(np.asarray(m2)).max() / np.abs(np.asarray(r.M)).max())
    return out


@pytest.fixture(scope="module")
def cov100():
    return aedyn.spiked_covariance(jax.random.key(0), 100, (3.0, 5.0))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_one_step_monte_carlo_at_init(activation, rule, cov100):
    net = aedyn.init_autoencoder(jax.random.key(1), 100, 2, activation=activation, scale=0.1, dtype=jnp.float64)
    summary = check_one_step(net, cov100, 0.1, rule, jax.random.key(7), 100_000)
    print(activation, rule, summary)


# -- the two forms of the right-hand side and the gradient-flow structure ---------------------


def _random_states(cov, activation, K=3):
    """States at several scales: small (initialisation), O(1) and large overlaps."""
    out = []
    for i, s in enumerate((0.1, 1.0, 3.0)):
        out.append(theory.init_state_random(jax.random.key(10 + i), cov, K, activation=activation, scale=s))
    return out


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_stein_equals_gradient(activation, rule):
    cov = aedyn.spiked_covariance(jax.random.key(2), 200, (2.0, 3.0, 5.0, 7.0))
    params = theory.theory_params(cov, {"W": 0.3, "V": 0.7}, weight_decay=0.01)
    for state in _random_states(cov, activation):
        a = theory.rhs(0.0, state, params, rule=rule, method="stein")
        b = theory.rhs(0.0, state, params, rule=rule, method="gradient")
        for name in ("wt", "vs", "M"):
            assert _rel(getattr(a, name), getattr(b, name)) < 1e-12, name


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_rhs_is_minus_lr_weighted_gradient_of_pmse(activation):
    """d wt/dt = -eta_W grad_wt pmse, d vs/dt = -eta_V grad_vs pmse (docs/theory.md §3 with vs = vt/sqrt(D)),
    and the bulk moment M = Z Z^T moves as Z does: dM = L M + M L^T, L = -2 diag(eta) sym(dpmse/dM)."""
    cov = aedyn.spiked_covariance(jax.random.key(3), 150, (3.0, 5.0, 8.0))
    eW, eV = 0.3, 0.7
    params = theory.theory_params(cov, {"W": eW, "V": eV})
    for state in _random_states(cov, activation):

        def f(wt, vs, M, state=state):
            s = theory.TheoryState(wt, vs, M, None, state.activation, state.tied, state.D)
            return theory.theory_pmse(s, params)

        gw, gv, gM = jax.grad(f, argnums=(0, 1, 2))(state.wt, state.vs, state.M)
        K = state.K
        eta = jnp.concatenate([jnp.full((K,), eW), jnp.full((K,), eV)])
        L = -2 * eta[:, None] * 0.5 * (gM + gM.T)
        for method in theory.METHODS:
            r = theory.rhs(0.0, state, params, method=method)
            assert _rel(r.wt, -eW * gw) < 1e-12
            assert _rel(r.vs, -eV * gv) < 1e-12
            assert _rel(r.M, L @ state.M + state.M @ L.T) < 1e-12


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_decoder_norm_equation(activation, rule):
    """T0 = sum_tau t_tau moves as docs/theory.md §3 says:
    dT0^{kl}/dt = eta_V [K1_k R^{lk} - sum_a G_ka T0^{al}] + (k <-> l) (a <= k for truncated)."""
    cov = aedyn.spiked_covariance(jax.random.key(4), 120, (3.0, 5.0))
    eta = 0.4
    params = theory.theory_params(cov, eta)
    for state in _random_states(cov, activation):
        r = theory.rhs(0.0, state, params, rule=rule, method="stein")
        K = state.K
        dT0 = r.vs @ state.vs.T + state.vs @ r.vs.T + r.M[K:, K:]
        ov = theory.state_overlaps(state, params.rho, params.bulk)
        K1 = mean_slope(state.activation, ov.Q)
        G = gram(state.activation, ov.Q)
        if rule == "truncated":
            G = jnp.tril(G)
        A = eta * (K1[:, None] * ov.R.T - G @ ov.T0)
        assert _rel(dT0, A + A.T) < 1e-12


def test_T0_is_sum_of_mode_densities(cov100):
    """T0 = sum_tau t_tau = V V^T / D, in the reduced (spikes + bulk moment) and full forms."""
    net = aedyn.init_autoencoder(jax.random.key(5), 100, 3, activation="erf", scale=0.7, dtype=jnp.float64)
    full = cov100.full()
    for cov in (cov100, full):
        st = theory.init_state(net, cov)
        ov = theory.state_overlaps(st, cov.eigvals, cov.bulk)
        t_tau = st.vs[:, None, :] * st.vs[None, :, :]  # t^{kl}_tau = vt^k vt^l / D
        T0 = t_tau.sum(-1) + st.M[3:, 3:]
        np.testing.assert_allclose(ov.T0, net.V @ net.V.T / 100, rtol=1e-12)
        np.testing.assert_allclose(T0, ov.T0, rtol=1e-12)
        # Q = (1/D) sum_tau rho_tau q_tau = E[lambda lambda^T], the same in both forms.
        np.testing.assert_allclose(ov.Q, net.W @ cov100.matrix() @ net.W.T / 100, rtol=1e-10)
    st = theory.init_state(net, full)
    assert np.abs(np.asarray(st.M)).max() == 0.0


def test_vanilla_solve_pmse_non_increasing_and_Q_psd():
    """A short erf solve (all activations, to t = 1e4, in the slow tests)."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 500, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 500, 2, activation="erf", scale=0.1, dtype=jnp.float64)
    traj = theory.solve(net, cov, lr=0.1, ts=aedyn.log_times(300.0, 80))
    e = np.asarray(traj.pmse)
    assert np.all(np.isfinite(e))
    assert np.all(np.diff(e) <= 1e-12 * e[0]), np.diff(e).max()
    assert e[-1] < 0.5 * e[0]
    Q = np.asarray(traj.overlaps.Q)
    assert np.linalg.eigvalsh(Q).min() >= -1e-12 * np.abs(Q).max()
    np.testing.assert_allclose(Q, np.swapaxes(Q, 1, 2), rtol=0, atol=1e-14 * np.abs(Q).max())


def test_default_solver_policy_explicit_then_stiff():
    """solver=None: Tsit5 at first; a horizon that takes Tsit5 past EXPLICIT_STEPS is continued
    with Rodas5 from the last saved state: the same curve as Kvaerno5 throughout (to the solver
    tolerance, rtol 1e-7), and the early times those of Tsit5."""
    EXPLICIT_STEPS = theory.EXPLICIT_STEPS

    cov = aedyn.spiked_covariance(jax.random.key(1), 500, (2.0, 1.0))
    net = aedyn.init_autoencoder(jax.random.key(0), 500, 2, activation="erf", scale=0.1, dtype=jnp.float64)
    short = theory.solve(net, cov, lr=1.0, ts=aedyn.log_times(10.0, 20))  # 68 steps
    assert short.config["solver"] == "Tsit5" and "solver_note" not in short.config
    assert short.config["num_steps"] < EXPLICIT_STEPS
    ts = aedyn.log_times(3000.0, 20)  # eta t = 3000: converged, stiff
    long = theory.solve(net, cov, lr=1.0, ts=ts)
    assert long.config["solver"] == "Rodas5" and "stiff" in long.config["solver_note"]
    # Outside a trace the implicit phase continues from the explicit one's saves (two programs);
    # under jit both phases run in one: the same numbers.
    traced = jax.jit(lambda lr: theory.solve(net, cov, lr=lr, ts=ts).pmse)(1.0)
    np.testing.assert_allclose(np.asarray(long.pmse), np.asarray(traced), rtol=1e-13)
    ref = theory.solve(net, cov, lr=1.0, ts=ts, solver=diffrax.Kvaerno5())
    np.testing.assert_allclose(np.asarray(long.pmse), np.asarray(ref.pmse), rtol=1e-6)
    early = theory.solve(net, cov, lr=1.0, ts=ts[ts <= 50.0], solver=diffrax.Tsit5())
    np.testing.assert_allclose(np.asarray(long.pmse)[ts <= 50.0], np.asarray(early.pmse), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(long.overlaps.Q)))
    with pytest.raises(aedyn.SolveError, match="max_steps"):
        theory.solve(net, cov, lr=1.0, ts=ts, solver=diffrax.Tsit5(), max_steps=EXPLICIT_STEPS)


def test_explicit_phase_adjoint_checkpoints_every_step_of_its_budget():
    """The default policy's explicit phase keeps a checkpoint per step (theory._policy.explicit_adjoint)
    of diffrax's default adjoint only; an adjoint the user configured is left as given."""
    from aedyn.theory._policy import explicit_adjoint

    assert explicit_adjoint(diffrax.RecursiveCheckpointAdjoint(), 128).checkpoints == 128
    for adjoint in (diffrax.RecursiveCheckpointAdjoint(checkpoints=5), diffrax.ForwardMode(),
                    diffrax.DirectAdjoint()):
        assert explicit_adjoint(adjoint, 128) is adjoint


# -- jit / vmap / grad through the solve --------------------------------------------------------


@pytest.fixture(scope="module")
def small_problem():
    cov = aedyn.spiked_covariance(jax.random.key(0), 60, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 60, 2, activation="erf", scale=1.0, dtype=jnp.float64)
    return cov, theory.init_state(net, cov)


def _final_pmse(cov, state0, lr, scale, solver):
    tr = theory.solve(state0, cov, lr=lr, init_scale=scale, ts=jnp.array([5.0, 30.0]), method="stein",
                      solver=solver, rtol=1e-10, atol=1e-12)
    return tr.pmse[-1]


@pytest.mark.parametrize(
    "solver",
    [pytest.param(diffrax.Kvaerno5(), marks=pytest.mark.slow), diffrax.Tsit5()],  # Kvaerno5's grad compiles slowly
    ids=["kvaerno5", "tsit5"],
)
def test_explicit_solver_jit_vmap_grad(small_problem, solver):
    cov, state0 = small_problem
    f = jax.jit(lambda lr, s: _final_pmse(cov, state0, lr, s, solver))
    lrs = jnp.array([0.05, 0.1, 0.2])
    batched = jax.vmap(lambda lr: f(lr, 0.1))(lrs)
    single = jnp.stack([f(lr, 0.1) for lr in lrs])
    np.testing.assert_allclose(batched, single, rtol=1e-9)
    g_lr, g_s = jax.grad(f, argnums=(0, 1))(0.1, 0.1)
    h = 1e-5
    fd_lr = (f(0.1 + h, 0.1) - f(0.1 - h, 0.1)) / (2 * h)
    fd_s = (f(0.1, 0.1 + h) - f(0.1, 0.1 - h)) / (2 * h)
    assert np.isfinite(g_lr) and np.isfinite(g_s)
    np.testing.assert_allclose(g_lr, fd_lr, rtol=1e-4)
    np.testing.assert_allclose(g_s, fd_s, rtol=1e-4)
    if isinstance(solver, diffrax.Tsit5):  # vmap of the gradient, too (Kvaerno5's would compile for ~40 s more)
        gv = jax.vmap(jax.grad(f, argnums=0), in_axes=(0, None))(lrs, 0.1)
        np.testing.assert_allclose(gv[1], g_lr, rtol=1e-10)


def test_regime_warning_and_flag_outside_the_first_order_regime():
    """Past eta ~ 1.2e-3 D SGD departs from the theory, past eta ~ D/2 it diverges
    (docs/finite_size.md): solve warns and flags both; sweeps flag them per configuration."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 40, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 40, 2, dtype=jnp.float64)
    ts = [1e-3, 2e-3]
    with pytest.warns(aedyn.RegimeWarning, match="diverges"):
        tr = theory.solve(net, cov, lr=1e6, ts=ts)
    assert int(tr.stats["regime"]) == 2
    with pytest.warns(aedyn.RegimeWarning, match="departs"):
        assert int(theory.solve(net, cov, lr=1.0, ts=ts).stats["regime"]) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", aedyn.RegimeWarning)
        assert int(theory.solve(net, cov, lr=0.01, ts=ts).stats["regime"]) == 0
    with pytest.warns(aedyn.RegimeWarning, match="1 learning rate"):
        res = aedyn.sweep_theory(cov, grid={"lr": [0.01, 1e6]}, ts=ts)
    np.testing.assert_array_equal(res.status["regime"], [0, 2])
    assert aedyn.init_autoencoder(jax.random.key(0), np.int64(20), np.int32(2)).D == 20
