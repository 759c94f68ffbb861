"""Stiff full spectra (issue 12): the structured implicit path for N-mode states and the exact
merging of equal eigenvalues (docs/theory.md §4, §6)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import aedyn
from aedyn import theory
from aedyn.theory import _policy, _stiff


def kernel_covariance(D: int) -> aedyn.Covariance:
    """Two spikes (eigenvalues ~ 25 D and 9 D) + a smooth Gaussian kernel (length 10) + 0.5 I: a
    non-isotropic bulk and a condition number >= 1e4 at D = 500."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((D, 2))
    i = np.arange(D)
    C = (A * np.array([5.0, 3.0]) ** 2) @ A.T + np.exp(-0.5 * ((i[:, None] - i[None, :]) / 10.0) ** 2)
    return aedyn.Covariance.from_matrix(C + 0.5 * np.eye(D))


def structured_and_dense(state, params, gamma, r, *, rule="vanilla", method="stein"):
    """The solution of (I - gamma J) x = r (flat) by the structured factorisation (blocks +
    Woodbury) and by a dense solve with J = jacfwd(rhs). Jitted: dispatched op by op, the gradient
    form's dense Jacobian took ~40 s."""

    @eqx.filter_jit
    def run(state, params, r):
        x0, unravel = ravel_pytree(state)
        J = jax.jacfwd(lambda x: ravel_pytree(theory.rhs(0.0, unravel(x), params, rule=rule, method=method))[0])(x0)
        dense = jnp.linalg.solve(jnp.eye(x0.size) - gamma * J, r)
        f = _stiff.factor(state, params, gamma, rule=rule, method=method)
        return ravel_pytree(_stiff.solve_factored(f, unravel(r)))[0], dense

    return run(state, params, r)


@pytest.mark.parametrize(
    "tied, bias, output_bias, method, rule, full",
    [(False, None, None, "stein", "vanilla", True),
     pytest.param(False, 0.1, None, "gradient", "truncated", False, marks=pytest.mark.slow),  # slow to compile
     pytest.param(True, None, None, "gradient", "vanilla", True, marks=pytest.mark.slow),
     pytest.param(False, 0.1, 0.3, "gradient", "vanilla", True, marks=pytest.mark.slow),
     pytest.param(True, None, 0.3, "gradient", "truncated", True, marks=pytest.mark.slow)],
)
def test_structured_solve_equals_dense(tied, bias, output_bias, method, rule, full):
    """(I - gamma J) x = r by blocks + Woodbury equals the dense solve with J = jacfwd(rhs), for
    every kind of state (untied/tied, encoder bias, output bias)."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 40, (3.0, 5.0))
    cov = cov.full() if full else cov
    net = aedyn.init_autoencoder(jax.random.key(1), 40, 3, tied=tied, bias=bias, output_bias=output_bias,
                                 scale=0.7, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    params = theory.theory_params(cov, 0.3)
    x0, _ = ravel_pytree(st)
    r = jax.random.normal(jax.random.key(2), x0.shape, x0.dtype)
    structured, dense = structured_and_dense(st, params, 2.7, r, rule=rule, method=method)
    np.testing.assert_allclose(structured, dense, rtol=0, atol=1e-12 * np.abs(dense).max())


def test_small_block_inverse():
    A = jnp.eye(6)[None] + 2.0 * jax.random.normal(jax.random.key(0), (50, 6, 6), jnp.float64)
    np.testing.assert_allclose(_stiff._inv_small(A), jnp.linalg.inv(A), rtol=1e-9, atol=1e-12)


def test_merged_equal_eigenvalues():
    """spiked(...).full().merged() is the spikes+bulk form again (also through from_matrix's
    eigh, whose bulk eigenvalues are equal only to rounding); solve from a network merges."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 300, (3.0, 5.0))
    assert cov.merged() is cov
    for full in (cov.full(), aedyn.Covariance.from_matrix(cov.matrix())):
        m = full.merged()
        assert (m.n_modes, m.n_bulk) == (2, 298)
        np.testing.assert_allclose(m.eigvals, cov.eigvals, rtol=1e-12)
        np.testing.assert_allclose(m.bulk, cov.bulk, rtol=1e-12)
    distinct = aedyn.Covariance(np.linspace(2.0, 1.2, 5), np.eye(8)[:, :5], 1.0)
    assert distinct.merged() is distinct
    joins = aedyn.Covariance(np.linspace(2.0, 1.0, 5), np.eye(8)[:, :5], 1.0).merged()
    assert (joins.n_modes, joins.n_bulk, float(joins.bulk)) == (4, 4, 1.0)
    net = aedyn.init_autoencoder(jax.random.key(1), 300, 2, dtype=jnp.float64)
    ts = aedyn.log_times(100.0, 12)
    a = theory.solve(net, cov.full(), ts=ts)
    b = theory.solve(net, cov, ts=ts)
    assert a.config["modes"] == 2
    np.testing.assert_allclose(a.pmse, b.pmse, rtol=1e-9)


def test_policy_stiff_solver_is_rodas5():
    s = theory.stiff_solver(rule="truncated", method="gradient", nodes=40)
    assert isinstance(s, theory.Rodas5) and (s.rule, s.method, s.nodes) == ("truncated", "gradient", 40)


def _rodas_steps(state, params, h, n, *, method="stein"):
    """n Rodas5 steps of size h from ``state`` (fixed steps; jitted), flattened."""
    term = diffrax.ODETerm(lambda t, y, a: theory.rhs(t, y, a, method=method))

    @eqx.filter_jit
    def run(state, params):
        sol = diffrax.diffeqsolve(term, theory.Rodas5(method=method), 0.0, n * h, h, state, params,
                                  stepsize_controller=diffrax.ConstantStepSize(), saveat=diffrax.SaveAt(t1=True))
        return ravel_pytree(jax.tree_util.tree_map(lambda y: y[-1], sol.ys))[0]

    return run(state, params)


@pytest.mark.parametrize("D,K,full,structured", [
    (300, 2, False, False),  # reduced spikes + bulk: 24 numbers, 12 overlaps
    (300, 6, False, False),  # reduced, K = 6: 168 numbers, 108 overlaps (dense measured 1.5x faster)
    (40, 2, True, True),  # 40 explicit modes: 176 numbers, 12 overlaps
    (8, 2, True, False),  # 8 modes: 48 numbers, IMPLICIT_DENSE_RATIO = 4 per overlap (the boundary)
    (9, 2, True, True),  # 9 modes: 52 numbers
    (40, 4, True, True),  # 40 modes, K = 4: 384 numbers, 48 overlaps
])
def test_implicit_phase_factors_densely_at_few_numbers_per_overlap(D, K, full, structured):
    """The implicit phase's linear algebra follows theory.structured_implicit: dense while a state
    has at most IMPLICIT_DENSE_RATIO numbers per overlap (the reduced form with a few spikes, at any
    K), structured beyond (full spectra, merged states with many modes)."""
    from aedyn.theory import _rosenbrock

    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    cov = cov.full() if full else cov
    st = theory.init_state(aedyn.init_autoencoder(jax.random.key(1), D, K, dtype=jnp.float64), cov)
    params = theory.theory_params(cov, 0.3)
    n, P = _rosenbrock.state_size(st), 3 * K * K
    assert n == (D if full else 2) * 2 * K + 4 * K * K
    assert theory.structured_implicit(n, P) == (n > theory.IMPLICIT_DENSE_RATIO * P) == structured
    assert _rosenbrock._structured(st, params) == structured  # P counted by the solver: 3 K^2


def test_rodas5_structured_step_equals_dense_step(monkeypatch):
    """Rodas5's structured linear algebra (N-mode state, blocks + Woodbury) gives the same steps as
    its dense one (LU of jacfwd), which it uses for states of few numbers per overlap."""
    from aedyn.theory import _rosenbrock

    cov = aedyn.spiked_covariance(jax.random.key(0), 40, (3.0, 5.0)).full()
    net = aedyn.init_autoencoder(jax.random.key(1), 40, 3, scale=0.7, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    params = theory.theory_params(cov, 0.3)
    assert _rosenbrock._structured(st, params)
    structured = _rodas_steps(st, params, 0.2, 4)
    monkeypatch.setattr(_policy, "IMPLICIT_DENSE_RATIO", 10**9)
    assert not _rosenbrock._structured(st, params)
    dense = _rodas_steps(st, params, 0.2, 4)
    assert float(jnp.max(jnp.abs(dense - ravel_pytree(st)[0]))) > 1e-3  # the steps move the state
    np.testing.assert_allclose(structured, dense, rtol=0, atol=1e-12 * np.abs(dense).max())


@pytest.mark.parametrize("size,method", [("structured", "stein"), ("structured", "gradient"), ("dense", "stein")])
def test_rodas5_step_derivatives_equal_autodiff_of_the_stage_loop(size, method):
    """Rodas5's JVP rule (the stage equations differentiated, the factorisation held as a linear
    solve) and its hand-written transpose give the derivatives of one step that plain autodiff of
    the stage loop gives (through the LU factors), in the state, the parameters and the step size:
    JVP and VJP agree to 1e-12 relative."""
    from aedyn.theory import _rosenbrock

    D = 40 if size == "structured" else 300
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    cov = cov.full() if size == "structured" else cov
    net = aedyn.init_autoencoder(jax.random.key(1), D, 2, scale=0.7, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    params = theory.theory_params(cov, 0.3)
    assert _rosenbrock._structured(st, params) == (size == "structured")
    s = theory.Rodas5(method=method)
    term = diffrax.ODETerm(lambda t, y, a: theory.rhs(t, y, a, method=method))
    B = jnp.asarray(_rosenbrock._B8)

    def rule(y, p, h):
        return ravel_pytree(s.step(term, 0.0, h, y, p, None, False)[0])[0]

    def plain(y, p, h):
        vf = lambda y, a: term.vf(0.0, y, a)
        ks = s._stage_loop(vf, s._solver(vf, y, p, _rosenbrock._GAMMA * h), y, p, h)
        return ravel_pytree(jax.tree_util.tree_map(lambda y, k: y + jnp.tensordot(B, k, 1), y, ks))[0]

    keys = iter(jax.random.split(jax.random.key(2), 64))
    rand = lambda t: jax.tree_util.tree_map(lambda x: jax.random.normal(next(keys), x.shape) * (0.1 + jnp.abs(x)), t)
    tangents = (rand(st), rand(params), 0.1)
    primals = (st, params, 0.7)
    (y_r, t_r), (y_p, t_p) = (eqx.filter_jit(lambda *a, f=f: jax.jvp(f, primals, a))(*tangents) for f in (rule, plain))
    np.testing.assert_allclose(y_r, y_p, rtol=0, atol=1e-13 * np.abs(y_p).max())
    assert float(jnp.max(jnp.abs(t_p))) > 1e-3
    np.testing.assert_allclose(t_r, t_p, rtol=0, atol=1e-12 * np.abs(t_p).max())
    ct = jax.random.normal(next(keys), y_p.shape)
    g_r, g_p = (ravel_pytree(eqx.filter_jit(lambda c, f=f: jax.vjp(f, *primals)[1](c))(ct))[0] for f in (rule, plain))
    np.testing.assert_allclose(g_r, g_p, rtol=0, atol=1e-12 * np.abs(g_p).max())


def test_rodas5_is_fifth_order():
    """Fixed steps on the standard example (init scale 1, eta 0.1) from t = 0 to 2: halving the step
    divides the error at t = 2 by ~2^5 (measured 38.8 and 34.1 for 8 -> 16 -> 32 steps: the tableau,
    its stage loop and the dense linear algebra are right), and 16 steps are accurate to 1e-12."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 500, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 500, 2, scale=1.0, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    params = theory.theory_params(cov, 0.1)
    ref = theory.solve(st, cov, lr=0.1, ts=jnp.array([2.0]), solver=diffrax.Tsit5(), rtol=1e-13, atol=1e-15).state
    ref = ravel_pytree(ref)[0]
    e = [float(jnp.max(jnp.abs(_rodas_steps(st, params, 2.0 / n, n) - ref))) for n in (8, 16, 32)]
    assert 28 < e[0] / e[1] < 45 and 28 < e[1] / e[2] < 45, e
    assert e[1] < 1e-11 * float(jnp.max(jnp.abs(ref))), e


@pytest.fixture(scope="module")
def spiked_full_1024():
    cov = aedyn.spiked_covariance(jax.random.key(0), 1024, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 1024, 2, dtype=jnp.float64)
    return cov, theory.init_state(net, cov.full()), theory.init_state(net, cov)


def test_full_spectrum_stiff_path_equals_reduced_form(spiked_full_1024):
    """D = 1024 full spectrum (1024 explicit modes, from a TheoryState: no merging) to t = 1e5 at
    eta = 0.1 and 1: stiff (continued implicitly, structured), <= 1e-6 relative to the reduced form
    for t <= 1e3 and <= 1e-4 to t = 1e5, finite throughout."""
    cov, full_state, reduced_state = spiked_full_1024
    ts = aedyn.log_times(1e5, 40)
    early = ts <= 1e3
    for lr in (0.1, 1.0):
        full = theory.solve(full_state, cov.full(), lr=lr, ts=ts)
        ref = theory.solve(reduced_state, cov, lr=lr, ts=ts)
        assert bool(full.stats["implicit"]) and full.config["modes"] == 1024
        assert np.all(np.isfinite(full.pmse))
        np.testing.assert_allclose(full.pmse[early], ref.pmse[early], rtol=1e-6)
        np.testing.assert_allclose(full.pmse, ref.pmse, rtol=1e-4)


@pytest.mark.slow
def test_full_spectrum_with_output_bias_stiff_path_equals_reduced_form():
    """Encoder and output bias (relu, the ``gradient`` form) on a full spectrum: the structured
    implicit phase carries the output-bias factors; <= 1e-6 relative to the reduced form."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 400, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 400, 2, activation="relu", bias=1.0, output_bias=0.0,
                                 dtype=jnp.float64)
    ts = aedyn.log_times(1000.0, 20)
    full = theory.solve(theory.init_state(net, cov.full()), cov.full(), lr=0.5, ts=ts)
    ref = theory.solve(theory.init_state(net, cov), cov, lr=0.5, ts=ts)
    assert bool(full.stats["implicit"]) and full.config["stiff_solver"] == "Rodas5"
    assert full.config["stiff_pid"] == list(theory.STIFF_PID)
    assert full.config["explicit_steps"] == ref.config["explicit_steps"] == theory.EXPLICIT_STEPS
    np.testing.assert_allclose(full.pmse, ref.pmse, rtol=1e-6)


@pytest.mark.slow
def test_non_isotropic_full_spectrum_against_tight_reference():
    """D = 500, condition number >= 1e4, non-isotropic bulk, eta = 1 to t = 300 (stiff): the
    default policy against Tsit5 at rtol 1e-10, <= 1e-6 relative."""
    cov = kernel_covariance(500)
    rho = np.asarray(cov.eigvals)
    assert rho[0] / rho[-1] >= 1e4 and rho[2] / rho[-1] > 10
    net = aedyn.init_autoencoder(jax.random.key(1), 500, 2, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    ts = aedyn.log_times(300.0, 20)
    tr = theory.solve(st, cov, lr=1.0, ts=ts)
    assert bool(tr.stats["implicit"])
    ref = theory.solve(st, cov, lr=1.0, ts=ts, solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(tr.pmse, ref.pmse, rtol=1e-6)


def test_grad_through_the_default_structured_path_equals_central_differences():
    """jax.grad of a solve through the default policy on an N-mode state (Tsit5, then Rodas5 with
    the structured factorisation; its derivative rule) equals central differences, in the
    learning rate and the initial scale; under vmap the batch equals separate solves, and so do
    its gradients."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 40, (3.0, 5.0)).full()
    net = aedyn.init_autoencoder(jax.random.key(1), 40, 2, scale=0.5, dtype=jnp.float64)
    st = theory.init_state(net, cov)

    @jax.jit
    def f(lr, scale):
        tr = theory.solve(st, cov, lr=lr, init_scale=scale, ts=jnp.array([10.0, 300.0]), rtol=1e-10, atol=1e-13)
        return tr.pmse[-1], tr.stats["implicit"]

    assert bool(f(1.0, 1.0)[1])
    g = jax.grad(lambda lr, s: f(lr, s)[0], argnums=(0, 1))(1.0, 1.0)
    h = 1e-4
    fd_lr = (f(1.0 + h, 1.0)[0] - f(1.0 - h, 1.0)[0]) / (2 * h)
    fd_s = (f(1.0, 1.0 + h)[0] - f(1.0, 1.0 - h)[0]) / (2 * h)
    np.testing.assert_allclose(g, (fd_lr, fd_s), rtol=1e-6)
    lrs = jnp.array([0.7, 1.0])
    batch, implicit = jax.vmap(f, in_axes=(0, None))(lrs, 1.0)
    assert np.all(np.asarray(implicit))
    np.testing.assert_allclose(batch, [f(lr, 1.0)[0] for lr in lrs], rtol=1e-10)
    # vmap of grad (the derivative rule's linear solve batched) equals separate gradients; the two
    # members take 1836 and 1854 steps, so the first steps with zero length at the end (once NaN)
    grad_lr = jax.grad(lambda lr: f(lr, 1.0)[0])
    np.testing.assert_allclose(jax.jit(jax.vmap(grad_lr))(lrs), [grad_lr(lr) for lr in lrs], rtol=1e-10)


@pytest.mark.slow
def test_grad_through_the_structured_chord_equals_central_differences():
    """grad through Kvaerno5 + StructuredChord (small N-mode state) equals central differences.
    (The derivative of each implicit stage goes through optimistix's implicit-function adjoint,
    which factors a dense Jacobian: fine at this size, not at N ~ 1000.)"""
    cov = aedyn.spiked_covariance(jax.random.key(0), 30, (3.0, 5.0)).full()
    net = aedyn.init_autoencoder(jax.random.key(1), 30, 2, scale=1.0, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    solver = diffrax.Kvaerno5(root_finder=theory.StructuredChord(rtol=1e-11, atol=1e-13))

    def f(lr):
        return theory.solve(st, cov, lr=lr, ts=jnp.array([1.0, 3.0]), solver=solver, rtol=1e-11,
                            atol=1e-13).pmse[-1]

    g = jax.grad(f)(0.3)
    h = 1e-4
    fd = (f(0.3 + h) - f(0.3 - h)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


@pytest.mark.slow
def test_structured_solver_under_jit_and_vmap_equals_separate_solves():
    """A vmapped batch of learning rates through Kvaerno5 + StructuredChord (small N-mode state, an
    output bias too) equals separate solves."""
    cov = aedyn.spiked_covariance(jax.random.key(0), 30, (3.0, 5.0)).full()
    net = aedyn.init_autoencoder(jax.random.key(1), 30, 2, scale=1.0, bias=0.0, output_bias=0.0,
                                 dtype=jnp.float64)
    st = theory.init_state(net, cov)
    solver = diffrax.Kvaerno5(root_finder=theory.StructuredChord(rtol=1e-7, atol=1e-10, method="gradient"))
    ts = jnp.array([1.0, 3.0])  # 200-450 implicit steps (the initial transient at scale 1)

    def f(lr):
        return theory.solve(st, cov, lr=lr, ts=ts, solver=solver).pmse

    lrs = jnp.array([0.2, 0.5])
    batch = jax.jit(jax.vmap(f))(lrs)
    separate = jnp.stack([f(lr) for lr in lrs])
    assert np.all(np.isfinite(batch))
    np.testing.assert_allclose(batch, separate, rtol=1e-9)
