"""The public core composes with JAX transforms (jit, vmap, grad, jacfwd, shard_map), with its
default arguments, and equals the untransformed calls."""

import os
import subprocess
import sys
import textwrap

import chex
import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import theory

TS = jnp.array([0.0, 2.0, 5.0])


@pytest.fixture(scope="module")
def spiked():
    cov = aedyn.spiked_covariance(jax.random.key(0), 300, (3.0, 5.0))
    return cov, aedyn.init_autoencoder(jax.random.key(1), 300, 2, dtype=jnp.float64)


@pytest.fixture(scope="module")
def full():
    cov = aedyn.spiked_covariance(jax.random.key(0), 40, (3.0, 5.0)).full()
    return cov, aedyn.init_autoencoder(jax.random.key(1), 40, 2, dtype=jnp.float64)


@pytest.mark.parametrize("form", ["spiked", "full"])
def test_solve_jit_vmap_grad_jacfwd_default_arguments(form, request):
    cov, net = request.getfixturevalue(form)
    init = theory.init_state(net, cov) if form == "full" else net  # a network's full spectrum is merged
    f = lambda lr: theory.solve(init, cov, lr=lr, ts=TS).pmse  # noqa: E731
    lrs = jnp.array([0.2, 0.5, 0.9])
    eager = np.stack([np.asarray(f(lr)) for lr in lrs])
    chex.assert_trees_all_close(jax.jit(f)(0.5), eager[1], rtol=1e-12)
    chex.assert_trees_all_close(jax.vmap(f)(lrs), eager, rtol=1e-12)
    jf = jax.jacfwd(f)(0.5)
    chex.assert_shape(jf, (3,))
    # Reverse mode against forward mode: grad, and (one form is enough: the same reverse program
    # vmapped over the cotangents) jacrev.
    if form == "spiked":
        g = jax.grad(lambda lr: f(lr)[-1])(0.5)
        chex.assert_trees_all_close(jf[-1], g, rtol=1e-8)
    else:
        jr = jax.jacrev(f)(0.5)
        chex.assert_trees_all_close(jr, jf, rtol=1e-8, atol=1e-12)
        g = jr[-1]
    assert float(g) < 0  # a larger learning rate learns faster at t = 5


def test_vmapped_batch_with_stiff_members_equals_separate_solves(spiked):
    """lr in [0.05, 3] to t = 30: the large rates go past the explicit budget (Rodas5 phase), the
    small ones do not; the batch equals separate solves to 1e-10 relative."""
    del spiked
    cov = aedyn.spiked_covariance(jax.random.key(1), 500, (2.0, 1.0))
    net = aedyn.init_autoencoder(jax.random.key(0), 500, 2, dtype=jnp.float64)
    lrs = jnp.array([0.05, 0.3, 1.0, 3.0])
    ts = aedyn.log_times(30.0, 30)  # Tsit5 steps 22, 65, 139, 165 (budget 128)
    batch = jax.jit(jax.vmap(lambda lr: theory.solve(net, cov, lr=lr, ts=ts)))(lrs)
    implicit = np.asarray(batch.stats["implicit"])
    assert implicit.any() and not implicit.all(), implicit
    for i, lr in enumerate(lrs):
        one = theory.solve(net, cov, lr=lr, ts=ts)
        assert bool(one.stats["implicit"]) == implicit[i]
        np.testing.assert_allclose(np.asarray(batch.pmse[i]), np.asarray(one.pmse), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(batch.overlaps.Q[i]), np.asarray(one.overlaps.Q), rtol=1e-6, atol=1e-12)


def _central(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("form", ["spiked", "full"])
def test_grad_and_jacfwd_equal_central_differences(form, request):
    """d pmse(t=5) / d (lr, weight decay, init scale, eigenvalues, initial state): grad (both forms)
    and jacfwd (the full form: 44 tangents) equal central differences to 1e-6 relative (tight
    tolerances, so the differences are exact). Forward against reverse mode at the default
    tolerances: test_solve_jit_vmap_grad_jacfwd_default_arguments."""
    cov, net = request.getfixturevalue(form)
    tight = dict(rtol=1e-12, atol=1e-14)
    state0 = theory.init_state(net, cov)
    direction = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), state0)

    def loss(theta):
        lr, wd, scale, rho, eps = theta
        c = aedyn.Covariance(rho, cov.eigvecs, cov.bulk)
        s0 = jax.tree_util.tree_map(lambda a, d: a + eps * d, state0, direction)
        return theory.solve(s0, c, lr=lr, weight_decay=wd, init_scale=scale, ts=TS, **tight).pmse[-1]

    theta = (0.5, 0.02, 0.9, cov.eigvals, 0.0)
    derivatives = [("grad", jax.grad(loss)(theta))]
    if form == "full":
        derivatives.append(("jacfwd", jax.jacfwd(loss)(theta)))
    for i, name in enumerate(["lr", "weight_decay", "init_scale", "rho", "state"]):
        x = np.asarray(theta[i], np.float64)
        for j in np.ndindex(x.shape):
            if name == "rho" and j[0] >= 2:
                break  # the spikes (the full form's bulk eigenvalues are equal: a one-sided change reorders them)
            h = 1e-4 * max(abs(float(x[j])), 1e-2)

            def fj(v, i=i, j=j):
                t = list(theta)
                t[i] = jnp.asarray(x).at[j].set(v) if x.ndim else v
                return float(loss(tuple(t)))

            fd = _central(fj, float(x[j]), h)
            for how, d in derivatives:
                got = np.asarray(d[i])[j]
                assert abs(got - fd) <= 1e-6 * abs(fd) + 1e-10, f"{how} {name}{j}: {got} vs FD {fd}"


def test_simulate_jit_and_vmap_over_lr_and_key_equal_separate_runs(spiked):
    cov, net = spiked
    ts = np.array([0.5, 1.0, 2.0])
    lrs = jnp.array([0.1, 0.5, 1.0])
    keys = jax.random.split(jax.random.key(3), 3)
    f = lambda lr, key: aedyn.simulate(net, cov, key=key, lr=lr, ts=ts)  # noqa: E731
    batch = jax.jit(jax.vmap(f))(lrs, keys)
    for i in range(3):
        one = f(lrs[i], keys[i])
        np.testing.assert_allclose(np.asarray(batch.pmse[i]), np.asarray(one.pmse), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(batch.net.W[i]), np.asarray(one.net.W), rtol=1e-12, atol=1e-15)
    single = jax.jit(f)(lrs[1], keys[1])
    np.testing.assert_allclose(np.asarray(single.pmse), np.asarray(f(lrs[1], keys[1]).pmse), rtol=1e-12)


def test_simulate_vmap_over_networks_and_eigenvalues(spiked):
    cov, _ = spiked
    nets = jax.vmap(lambda k: aedyn.init_autoencoder(k, 300, 2, dtype=jnp.float64))(jax.random.split(jax.random.key(5), 2))
    rhos = jnp.stack([cov.eigvals, 0.5 * cov.eigvals])
    ts = np.array([1.0, 2.0])

    def f(net, rho):
        return aedyn.simulate(net, aedyn.Covariance(rho, cov.eigvecs, cov.bulk), key=jax.random.key(0), lr=0.3, ts=ts).pmse

    batch = jax.vmap(f)(nets, rhos)
    for i in range(2):
        net = jax.tree_util.tree_map(lambda a: a[i], nets)
        np.testing.assert_allclose(np.asarray(batch[i]), np.asarray(f(net, rhos[i])), rtol=1e-12)


def test_simulate_divergence_under_vmap_is_an_array(spiked):
    cov, net = spiked
    out = jax.vmap(lambda lr: aedyn.simulate(net, cov, key=jax.random.key(0), lr=lr, ts=[0.5, 1.0],
                                             on_divergence="stop").stats["diverged_step"])(jnp.array([0.1, 1e5]))
    assert int(out[0]) == -1 and int(out[1]) >= 0


class TestSgdStep(chex.TestCase):
    """sgd_step, pmse and the theory's RHS with and without jit (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_sgd_step_lr_forms(self):
        net = aedyn.init_autoencoder(jax.random.key(1), 30, 2, dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(2), (30,), jnp.float64)
        step = self.variant(lambda lr: aedyn.sgd_step(net, x, lr)[0].W)
        a = step(0.2)
        b = step(jnp.asarray(0.2))
        c = step({"W": 0.2, "V": 0.2, "b": 0.2})
        chex.assert_trees_all_close(a, b, c, rtol=1e-15)
        batched = jax.vmap(lambda lr: aedyn.sgd_step(net, x, lr)[0].W)(jnp.array([0.1, 0.2]))
        chex.assert_shape(batched, (2, 2, 30))
        chex.assert_trees_all_close(batched[1], a, rtol=1e-15)

    @chex.variants(with_jit=True, without_jit=True)
    def test_pmse_and_rhs(self):
        cov = aedyn.spiked_covariance(jax.random.key(0), 50, (2.0,))
        net = aedyn.init_autoencoder(jax.random.key(1), 50, 2, dtype=jnp.float64)
        e = self.variant(aedyn.pmse)(net, cov)
        chex.assert_shape(e, ())
        params = theory.theory_params(cov, 0.3)
        r = self.variant(lambda s: theory.rhs(0.0, s, params))(theory.init_state(net, cov))
        chex.assert_tree_all_finite(r)


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, PartitionSpec as P
    import aedyn
    assert len(jax.devices()) == 8
    cov = aedyn.spiked_covariance(jax.random.key(0), 100, (2.0, 1.0))
    net = aedyn.init_autoencoder(jax.random.key(1), 100, 2, dtype=jnp.float64)
    ts = aedyn.log_times(1000.0, 10)
    f = jax.vmap(lambda lr: aedyn.theory.solve(net, cov, lr=lr, ts=ts).pmse)
    lrs = jnp.geomspace(0.05, 3.0, 8)
    mesh = Mesh(np.array(jax.devices()), ("b",))
    # check_vma=False: diffrax's loops are not yet typed for varying manual axes (diffrax#735)
    sharded = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("b"), out_specs=P("b"), check_vma=False))(lrs)
    plain = jax.jit(f)(lrs)
    print("DIFF", float(jnp.max(jnp.abs(sharded - plain) / plain)))
    assert float(jnp.max(jnp.abs(sharded - plain) / plain)) < 1e-10  # Newton iterations batched differently
    """
)


@pytest.mark.slow
def test_shard_map_over_8_cpu_devices_equals_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "DIFF" in out.stdout


def test_custom_activations_do_not_share_compiled_functions():
    """Two custom activations in one process each get their own results: in sweeps and in direct
    calls. (Tsit5 alone: the compiled functions' keys are under test, not the solver policy.)"""
    cov = aedyn.spiked_covariance(jax.random.key(1), 50, (2.0, 1.0))
    ts = np.array([1.0, 5.0])
    tsit5 = diffrax.Tsit5()
    act1 = lambda z: jnp.tanh(z)  # noqa: E731
    act2 = lambda z: 0 * z  # noqa: E731 - reconstructs nothing: pmse stays tr(Omega) / 2D
    zero = float(cov.trace) / (2 * cov.dim)
    s1 = aedyn.sweep_theory(cov, grid={"lr": [0.5]}, ts=ts, activation=act1, solver=tsit5)
    s2 = aedyn.sweep_theory(cov, grid={"lr": [0.5]}, ts=ts, activation=act2, solver=tsit5)
    np.testing.assert_allclose(s2.pmse, zero, rtol=1e-12)
    assert abs(s1.pmse[0, -1] - zero) > 0.1 * zero
    g1 = aedyn.sweep_simulation(cov, grid={"lr": [0.5]}, ts=ts, activation=act1, dtype=jnp.float64)
    g2 = aedyn.sweep_simulation(cov, grid={"lr": [0.5]}, ts=ts, activation=act2, dtype=jnp.float64)
    np.testing.assert_allclose(g2.pmse, zero, rtol=1e-12)
    assert abs(g1.pmse[0, -1] - zero) > 0.1 * zero
    for act, same in ((act1, False), (act2, True)):
        net = aedyn.init_autoencoder(jax.random.key(0), 50, 2, activation=act, dtype=jnp.float64)
        e = float(theory.solve(net, cov, lr=0.5, ts=ts, solver=tsit5).pmse[-1])
        assert (abs(e - zero) < 1e-12 * zero) == same
        e = float(aedyn.simulate(net, cov, key=jax.random.key(0), lr=0.5, ts=ts).pmse[-1])
        assert (abs(e - zero) < 1e-12 * zero) == same


@pytest.mark.parametrize("x64", [False, True])
def test_import_leaves_jax_config_alone(x64):
    code = textwrap.dedent(f"""
        import jax
        jax.config.update("jax_enable_x64", {x64})
        import aedyn
        assert jax.config.jax_enable_x64 is {x64}, jax.config.jax_enable_x64
        assert jax.numpy.arange(3).dtype == ("int64" if {x64} else "int32")
        if not {x64}:
            cov = aedyn.spiked_covariance(jax.random.key(0), 20, (2.0,))
            net = aedyn.init_autoencoder(jax.random.key(1), 20, 2)
            aedyn.simulate(net, cov, key=jax.random.key(2), lr=0.1, ts=[1.0])  # float32 SGD works
            try:
                aedyn.theory.solve(net, cov, lr=0.1, ts=[1.0])
            except RuntimeError as err:
                assert "jax_enable_x64" in str(err), err
            else:
                raise AssertionError("solve ran without float64")
        print("OK")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr[-2000:]


def test_no_function_shadows_a_module():
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(aedyn.__path__, "aedyn."):
        parent, _, name = info.name.rpartition(".")
        obj = getattr(importlib.import_module(parent), name, None)
        if obj is not None:
            assert isinstance(obj, type(aedyn)), f"{info.name} is shadowed by {obj!r}"


def test_non_finite_input_under_a_trace_fails_fast(spiked):
    """Under jit the values cannot be checked at the boundary: a NaN start takes no step and the
    solve reports failure at once (it used to spin to max_steps for minutes)."""
    import time

    cov, net = spiked

    f = jax.jit(lambda s: theory.solve(net, cov, lr=0.1, ts=[1.0, 2.0], init_scale=s, throw=False))
    t0 = time.perf_counter()
    tr = f(jnp.nan)
    assert not bool(tr.stats["successful"]) and int(tr.stats["num_steps"]) == 0
    assert np.all(np.isnan(np.asarray(tr.pmse)))
    ok = f(1.0)
    assert bool(ok.stats["successful"])
    assert time.perf_counter() - t0 < 60.0
    with pytest.raises(Exception, match="solve failed"):
        jax.jit(lambda s: theory.solve(net, cov, lr=0.1, ts=[1.0], init_scale=s).pmse)(jnp.nan).block_until_ready()

