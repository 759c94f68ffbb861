"""Gradients through the theory (vs finite differences) and fits of hyperparameters and spectra."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn
from aedyn import fit, sweeps
from aedyn import objectives as ob

D, K = 500, 2
# These curves stay far from stiff (eta t <= 150): Tsit5 alone gives the numbers of the default
# two-phase policy (whose implicit phase would take no step) and compiles ~3x faster under grad.
# The default policy's gradients are checked in tests/test_transforms.py and tests/test_stiff.py.
TSIT5 = {"solver": diffrax.Tsit5()}


@pytest.fixture(scope="module")
def cov():
    return aedyn.spiked_covariance(jax.random.key(1), D, [2.0, 1.0])


def test_time_to_level_interpolates():
    ts = np.geomspace(0.1, 100.0, 50)
    curve = jnp.asarray(1.0 / (1.0 + ts))  # reaches 0.1 at t = 9
    assert abs(float(ob.time_to_level(ts, curve, 0.1)) - 9.0) < 0.5
    miss = float(ob.time_to_level(ts, curve, 1e-3))
    assert miss > 100.0
    # smooth in the level
    g = jax.grad(lambda lv: ob.time_to_level(ts, curve, lv))(0.1)
    assert np.isfinite(float(g)) and float(g) < 0
    assert float(ob.log_time_area(ts, jnp.ones(50))) == pytest.approx(np.log(1000.0))


def test_gradients_match_finite_differences(cov):
    ts = aedyn.log_times(20.0, 30)
    kw = dict(K=K, seeds=(0,), ts=ts, rtol=1e-11, atol=1e-13, **TSIT5)
    curve = ob.make_curve(cov, **kw)
    curve_fwd = ob.make_curve(cov, adjoint=diffrax.ForwardMode(), **kw)
    theta = {"lr": 0.5, "init_scale": 0.1, "weight_decay": 0.01, "rho": np.asarray(cov.eigvals)}
    observed = np.asarray(jax.jit(curve)({**theta, "lr": 0.45}))

    def objective(c):
        return (ob.final_pmse(c) + 0.1 * ob.log_time_area(ts, c) + 0.01 * ob.time_to_level(ts, c, 1.5)
                + ob.curve_distance(c, observed))

    f = jax.jit(lambda th: objective(curve(th)))
    v, g = jax.jit(lambda th: ob.value_and_grad(lambda t: objective(curve(t)), th))(theta)
    vf, gf = ob.value_and_grad(jax.jit(lambda th: objective(curve_fwd(th))), theta, mode="forward")
    fd = ob.finite_difference(f, theta, rel_step=1e-4)
    assert float(v) == pytest.approx(float(vf), rel=1e-12)
    for k in theta:
        for name, grad in (("reverse", g), ("forward", gf)):
            rel = np.max(np.abs(np.asarray(grad[k]) - fd[k]) / np.abs(fd[k]))
            assert rel < 1e-5, (k, name, rel, grad[k], fd[k])


def test_minimise_quadratic_with_bounds():
    loss = lambda th: (jnp.log(th["a"]) - np.log(2.0)) ** 2 + (jnp.log(th["b"]) - np.log(5.0)) ** 2  # noqa: E731
    r = fit.minimise(loss, {"a": 1.0, "b": 1.0}, bounds={"b": (0.1, 3.0)}, max_steps=50)
    assert r.converged and r.steps <= 50
    assert r.params["a"] == pytest.approx(2.0, rel=1e-5)
    assert r.params["b"] <= 3.0 and r.params["b"] > 2.9
    assert len(r.history["loss"]) == r.steps and len(r.history["grad_norm"]) == r.steps
    r2 = fit.minimise(loss, {"a": 1.0, "b": 1.0}, optimizer="adam", max_steps=300)
    assert r2.params["a"] == pytest.approx(2.0, rel=1e-2)
    with pytest.raises(ValueError, match="> 0"):
        fit.minimise(loss, {"a": -1.0, "b": 1.0})


TS_FIT = aedyn.log_times(250.0, 40)


@pytest.fixture(scope="module")
def observed(cov):
    """Mean of 5 SGD runs, D = 500, eta = 0.1, initial scale 0.1, in float64."""
    sim = sweeps.sweep_simulation(cov, K=K, grid=dict(seed=range(5)), base=dict(lr=0.1, init_scale=0.1),
                                  ts=TS_FIT, dtype=jnp.float64)
    assert not sim.failed.any()
    return sim.pmse.mean(0)


@pytest.mark.slow
def test_fit_recovers_lr_and_init_scale(cov, observed):
    r = fit.fit_curve(TS_FIT, observed, cov, K=K, seeds=range(5), init={"lr": 0.2, "init_scale": 0.3},
                      max_steps=60, curve_kw=TSIT5)
    assert r.converged, r.summary()
    assert abs(r.params["lr"] / 0.1 - 1) < 0.02, r.summary()
    assert abs(r.params["init_scale"] / 0.1 - 1) < 0.10, r.summary()


@pytest.mark.slow
def test_fit_recovers_spikes(cov, observed):
    rho = np.asarray(cov.eigvals)
    r = fit.fit_spectrum(TS_FIT, observed, cov, rho0=rho * [0.7, 1.4], K=K, seeds=range(5),
                         fixed=dict(lr=0.1, init_scale=0.1), max_steps=60, curve_kw=TSIT5)
    assert r.converged, r.summary()
    np.testing.assert_allclose(r.params["rho"], rho, rtol=0.05)


@pytest.mark.slow
def test_optimised_settings_reach_target_sooner(cov):
    target, budget = 0.7, 300.0
    r = fit.optimise_time_to_target(cov, target, budget=budget, K=K, seeds=range(5), max_steps=15,
                                     curve_kw=TSIT5)
    assert r.params["lr_W"] <= 0.5 + 1e-9 and r.params["lr_V"] <= 0.5 + 1e-9
    ts = np.geomspace(1e-2, budget, 200)
    p = {k: float(v) for k, v in r.params.items()}
    times = []
    for base in (dict(lr=0.1, init_scale=0.1, weight_decay=0.0), dict(p, lr_b=0.1)):
        sim = sweeps.sweep_simulation(cov, K=K, grid=dict(seed=range(5)), base=base, ts=ts, dtype=jnp.float64)
        assert not sim.failed.any()
        times.append(float(ob.time_to_level(ts, jnp.asarray(sim.pmse.mean(0)), target)))
    assert times[1] <= 0.8 * times[0], times
