"""Guards for the simulator's fast paths: they must not change a single bit of the results.

- Full blocks run an unmasked scan, partial and diverging blocks an exact step-by-step path: the
  network after n steps must not depend on which path ran (recording grid, resumed runs).
- Divergence is still caught at the exact step, also when the fast path has to be redone, and
  under ``vmap``.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn

sim = importlib.import_module("aedyn._simulate")

D, K, BLOCK = 24, 2, 8


@pytest.fixture(scope="module")
def cov():
    return aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))


def _net(dtype, bias=None, tied=False):
    return aedyn.init_autoencoder(jax.random.key(1), D, K, scale=0.1, dtype=dtype, bias=bias, tied=tied)


def _same(a, b):
    for f in ("W", "V", "b"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(np.asarray(x), np.asarray(y)), f


@pytest.mark.parametrize(
    "dtype,rule,bias,tied",
    [
        (jnp.float32, "vanilla", None, False),
        (jnp.float64, "vanilla", 0.1, False),
        (jnp.float32, "truncated", None, False),
        (jnp.float64, "sanger", None, True),
    ],
)
def test_recording_grid_does_not_change_bits(cov, dtype, rule, bias, tied):
    """Every step recorded (all blocks partial: exact path) == one record (full blocks: fast path)."""
    net = _net(dtype, bias, tied)
    n = 61  # not a multiple of the block
    kw = dict(key=jax.random.key(2), lr={"W": 0.3, "V": 0.2, "b": 0.1}, rule=rule, block=BLOCK, weight_decay=0.2)
    fine = aedyn.simulate(net, cov, ts=np.arange(1, n + 1) / D, **kw)
    coarse = aedyn.simulate(net, cov, ts=[n / D], **kw)
    odd = aedyn.simulate(net, cov, ts=np.array([3, 8, 9, 17, 40, n]) / D, **kw)
    _same(fine.net, coarse.net)
    _same(odd.net, coarse.net)
    assert float(fine.pmse[-1]) == float(coarse.pmse[-1]) == float(odd.pmse[-1])


def test_samples_data_grid(cov):
    X = cov.sample(jax.random.key(4), 300)
    net = _net(jnp.float32)
    kw = dict(key=jax.random.key(2), lr=0.2, block=BLOCK)
    a = aedyn.simulate(net, X, ts=np.arange(1, 41) / D, **kw)
    b = aedyn.simulate(net, X, ts=[40 / D], **kw)
    _same(a.net, b.net)


def _core(net, cov, steps, n0=0, div0=-1, lr=0.2, key=jax.random.key(2)):
    dtype = net.W.dtype
    return sim._core_jit(
        net, cov, cov, key, aedyn.learning_rates(lr, dtype), jnp.asarray(0.0, dtype),
        np.asarray(steps, np.int32), rule="vanilla", block=BLOCK,
        n0=jnp.asarray(n0, jnp.int32), div0=jnp.asarray(div0, jnp.int32),
    )[:5]  # (net, steps, diverged step, pmse, overlaps); the sixth is the held-out error (None here)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_split_run_equals_straight_run(cov, dtype):
    net = _net(dtype)
    straight, n, div, _, _ = _core(net, cov, [100, 100])
    assert int(n) == 100 and int(div) == -1
    for cut in (13, 16, 50):
        half, n1, _, _, _ = _core(net, cov, [cut, cut])
        assert int(n1) == cut
        rest, n2, div2, _, _ = _core(half, cov, [100, 100], n0=cut)
        assert int(n2) == 100 and int(div2) == -1
        _same(rest, straight)


def _manual_divergence(net, cov, lr, key, limit_steps):
    """Step by step with sgd_step on the simulator's samples: first step whose loss is bad."""
    dtype = net.W.dtype
    lrs = aedyn.learning_rates(lr, dtype)
    limit = sim.DIVERGENCE_FACTOR * float(cov.trace)
    step = jax.jit(lambda net, x: aedyn.sgd_step(net, x, lrs))
    for s in range(limit_steps):
        if s % BLOCK == 0:
            X = jax.jit(lambda k: cov.sample(k, BLOCK, dtype))(jax.random.fold_in(key, s // BLOCK))
        new, loss = step(net, X[s % BLOCK])
        if not np.isfinite(float(loss)) or float(loss) > limit:
            return s
        net = new
    return -1


def test_divergence_exact_step_fast_and_exact_paths(cov):
    net = _net(jnp.float64)
    lr, key = 60.0, jax.random.key(5)
    coarse, _, div_c, pm_c, _ = _core(net, cov, [400, 400], lr=lr, key=key)
    fine, _, div_f, pm_f, _ = _core(net, cov, np.arange(1, 401), lr=lr, key=key)
    assert int(div_c) >= 0, "the test needs a diverging run"
    assert int(div_c) == int(div_f)
    _same(coarse, fine)  # the network of the last good step
    assert np.isnan(np.asarray(pm_c)[-1])
    assert int(div_c) == _manual_divergence(net, cov, lr, key, int(div_c) + 1)


def test_vmap_over_learning_rates_with_one_diverging(cov):
    net = _net(jnp.float64)
    lrs = jnp.asarray([0.2, 300.0])
    steps = np.asarray([37, 150, 400], np.int32)

    def one(lr):
        return sim.simulate_core(
            net, cov, cov, jax.random.key(5), aedyn.learning_rates(lr), jnp.asarray(0.0), steps,
            rule="vanilla", block=BLOCK, n0=0, div0=-1,
        )

    out = jax.jit(jax.vmap(one))(lrs)
    for i, lr in enumerate([0.2, 300.0]):
        ref = _core(net, cov, steps, lr=lr, key=jax.random.key(5))
        assert int(out[1][i]) == int(ref[1]) and int(out[2][i]) == int(ref[2])
        np.testing.assert_allclose(np.asarray(out[0].W[i]), np.asarray(ref[0].W), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(out[3][i]), np.asarray(ref[3]), rtol=1e-12, equal_nan=True)
    assert int(out[2][0]) == -1 and int(out[2][1]) >= 0
