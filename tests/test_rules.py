"""Single SGD steps against a hand-written float64 NumPy reference of docs/theory.md §1, and against
``jax.grad`` of the per-sample loss (the gradient form of the rules).

The reference below is written from the formulas of docs/theory.md §1 only (it calls no package code):

    lambda^k = w^k . x / sqrt(D) + b^k,   Delta = x - sum_k v^k g(lambda^k),   e_k = v^k . Delta
    v^k <- (1 - kappa/D) v^k + (eta_V / D)   g(lambda^k) Delta
    w^k <- (1 - kappa/D) w^k + (eta_W / D^2) e_k g'(lambda^k) x / sqrt(D)
    b^k <- b^k               + (eta_b / D^2) e_k g'(lambda^k)

truncated: Delta -> Delta_k = x - sum_{a<=k} v^a g(lambda^a) in unit k's updates. Tied: v^k = sqrt(D) w^k
and w^k <- (1 - kappa/D) w^k - (eta_W / D^2) dl/dw^k through both uses,
dl/dw^k = -sqrt(D) g(lambda^k) Delta_k - e_k g'(lambda^k) x / sqrt(D). Sanger (tied): the generalised
Hebbian rule w^k <- (1 - kappa/D) w^k + (eta_W / D^2) sqrt(D) g(lambda^k) Delta_k (bias as truncated).
"""

from __future__ import annotations

import itertools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as np_erf

import aedyn

TOL = 1e-12

NP_ACT = {
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "erf": (lambda x: np_erf(x / math.sqrt(2)), lambda x: math.sqrt(2 / math.pi) * np.exp(-x * x / 2)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
}


def reference_step(W, V, b, x, act, *, rule, tied, eta_W, eta_V, eta_b, kappa):
    """docs/theory.md §1 in plain float64 NumPy, one loop over units (no vectorisation tricks)."""
    g, gp = NP_ACT[act]
    K, D = W.shape
    sq = math.sqrt(D)
    dec = sq * W if tied else V
    lam = W @ x / sq + (0.0 if b is None else b)
    h, hp = g(lam), gp(lam)
    W_new = np.empty_like(W)
    V_new = None if tied else np.empty_like(V)
    b_new = None if b is None else np.empty_like(b)
    for k in range(K):
        if rule == "vanilla":
            delta = x - sum(dec[a] * h[a] for a in range(K))
        else:  # truncated and sanger: unit k sees the residual of units 1..k
            delta = x - sum(dec[a] * h[a] for a in range(k + 1))
        e = dec[k] @ delta
        if tied:
            if rule == "sanger":
                step = sq * h[k] * delta
            else:
                step = sq * h[k] * delta + e * hp[k] * x / sq  # = -dl/dw^k
            W_new[k] = (1 - kappa / D) * W[k] + eta_W / D**2 * step
        else:
            W_new[k] = (1 - kappa / D) * W[k] + eta_W / D**2 * e * hp[k] * x / sq
            V_new[k] = (1 - kappa / D) * V[k] + eta_V / D * h[k] * delta
        if b is not None:
            b_new[k] = b[k] + eta_b / D**2 * e * hp[k]
    full = x - sum(dec[a] * h[a] for a in range(K))
    return W_new, V_new, b_new, 0.5 * full @ full


def _random_net(rng, D, K, act, tied, bias):
    # O(1) pre-activations and decoder norms so that every term of the update matters.
    W = rng.standard_normal((K, D)) * (1 / math.sqrt(D) if tied else 1.0)
    V = None if tied else rng.standard_normal((K, D))
    b = rng.standard_normal(K) * 0.5 if bias else None
    return W, V, b


CASES = [
    (rule, tied, bias, wd, act)
    for rule, tied, bias, wd in itertools.product(("vanilla", "truncated", "sanger"), (False, True), (False, True), (0.0, 0.7))
    if not (rule == "sanger" and not tied)
    for act in (("erf", "relu", "tanh", "linear") if not bias else ("erf", "sigmoid"))
]


@pytest.mark.parametrize("rule,tied,bias,wd,act", CASES)
def test_step_matches_numpy_reference(rule, tied, bias, wd, act):
    rng = np.random.default_rng(zlib.crc32(repr((rule, tied, bias, wd, act)).encode()))
    D, K = 40, 3
    W, V, b = _random_net(rng, D, K, act, tied, bias)
    x = rng.standard_normal(D) * 1.5
    W[0] *= np.sign(W[0] @ x)  # unit 0 active (relu), so that no update vanishes by chance
    etas = dict(eta_W=0.7, eta_V=1.3, eta_b=2.1)
    net = aedyn.AutoEncoder(jnp.asarray(W), None if tied else jnp.asarray(V), act,
                            None if b is None else jnp.asarray(b), tied)
    lr = aedyn.learning_rates({"W": etas["eta_W"], "V": etas["eta_V"], "b": etas["eta_b"]}, jnp.float64)
    new, loss = aedyn.sgd_step(net, jnp.asarray(x), lr, rule=rule, weight_decay=wd)
    W_ref, V_ref, b_ref, loss_ref = reference_step(W, V, b, x, act, rule=rule, tied=tied, kappa=wd, **etas)

    assert new.W.dtype == jnp.float64
    # The update itself (new - old) must match to 1e-12 relative to its size, and the weights absolutely.
    np.testing.assert_allclose(np.asarray(new.W) - W, W_ref - W, rtol=TOL, atol=TOL * np.abs(W_ref - W).max())
    np.testing.assert_allclose(np.asarray(new.W), W_ref, rtol=0, atol=TOL)
    if tied:
        assert new.V is None and new.tied
    else:
        np.testing.assert_allclose(np.asarray(new.V) - V, V_ref - V, rtol=TOL, atol=TOL * np.abs(V_ref - V).max())
        np.testing.assert_allclose(np.asarray(new.V), V_ref, rtol=0, atol=TOL)
    if bias:
        np.testing.assert_allclose(np.asarray(new.b) - b, b_ref - b, rtol=TOL, atol=TOL * np.abs(b_ref - b).max())
    else:
        assert new.b is None
    np.testing.assert_allclose(float(loss), loss_ref, rtol=TOL)
    # The update is not trivially small: every part of the formula is exercised.
    assert np.abs(W_ref - W).max() > 1e-6


def test_default_learning_rate_and_no_op_rates():
    """A number means eta_W = eta_V = eta_b; zero rates and no decay leave the network unchanged."""
    rng = np.random.default_rng(1)
    W, V, b = _random_net(rng, 30, 2, "erf", False, True)
    x = rng.standard_normal(30)
    net = aedyn.AutoEncoder(jnp.asarray(W), jnp.asarray(V), "erf", jnp.asarray(b))
    new, _ = aedyn.sgd_step(net, jnp.asarray(x), aedyn.learning_rates(0.4, jnp.float64))
    W_ref, V_ref, b_ref, _ = reference_step(W, V, b, x, "erf", rule="vanilla", tied=False,
                                            eta_W=0.4, eta_V=0.4, eta_b=0.4, kappa=0.0)
    np.testing.assert_allclose(np.asarray(new.W), W_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.asarray(new.V), V_ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.asarray(new.b), b_ref, rtol=0, atol=TOL)
    same, _ = aedyn.sgd_step(net, jnp.asarray(x), aedyn.learning_rates(0.0, jnp.float64))
    assert np.array_equal(np.asarray(same.W), W) and np.array_equal(np.asarray(same.V), V)


# -- gradient form --------------------------------------------------------------------------------


def _jax_loss(W, V, b, x, g, tied, upto):
    """l restricted to units 0..upto-1, written directly with jax.numpy (not the package's model)."""
    D = W.shape[1]
    sq = jnp.sqrt(jnp.asarray(D, W.dtype))
    dec = sq * W if tied else V
    lam = W @ x / sq + (0.0 if b is None else b)
    h = g(lam)
    mask = (jnp.arange(W.shape[0]) < upto).astype(W.dtype)
    d = x - (h * mask) @ dec
    return 0.5 * d @ d


JAX_ACT = {"erf": lambda z: jax.scipy.special.erf(z / jnp.sqrt(2.0)), "tanh": jnp.tanh, "linear": lambda z: z}


@pytest.mark.parametrize("rule", ["vanilla", "truncated"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("act", ["erf", "tanh", "linear"])
def test_step_is_minus_lr_times_grad(rule, tied, act):
    """vanilla: Delta w = -(eta_W/D^2) dl/dW, Delta v = -(eta_V/D) dl/dV, Delta b = -(eta_b/D^2) dl/db;
    truncated: the same for unit k with the loss of units 1..k, differentiated w.r.t. unit k's params."""
    rng = np.random.default_rng(7)
    D, K = 25, 3
    W, V, b = _random_net(rng, D, K, act, tied, True)
    x = jnp.asarray(rng.standard_normal(D))
    W, V, b = jnp.asarray(W), None if tied else jnp.asarray(V), jnp.asarray(b)
    eW, eV, eb = 0.3, 0.9, 1.7
    net = aedyn.AutoEncoder(W, V, act, b, tied)
    new, loss = aedyn.sgd_step(net, x, aedyn.learning_rates({"W": eW, "V": eV, "b": eb}, jnp.float64), rule=rule)
    g = JAX_ACT[act]
    argnums = (0, 2) if tied else (0, 1, 2)
    if rule == "vanilla":
        grads = jax.grad(_jax_loss, argnums=argnums)(W, V, b, x, g, tied, K)
        gW, gb = grads[0], grads[-1]
        gV = None if tied else grads[1]
    else:
        rows = [jax.grad(_jax_loss, argnums=argnums)(W, V, b, x, g, tied, k + 1) for k in range(K)]
        gW = jnp.stack([r[0][k] for k, r in enumerate(rows)])
        gb = jnp.stack([r[-1][k] for k, r in enumerate(rows)])
        gV = None if tied else jnp.stack([r[1][k] for k, r in enumerate(rows)])
    np.testing.assert_allclose(np.asarray(new.W - W), np.asarray(-(eW / D**2) * gW), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(np.asarray(new.b - b), np.asarray(-(eb / D**2) * gb), rtol=1e-10, atol=1e-15)
    if not tied:
        np.testing.assert_allclose(np.asarray(new.V - V), np.asarray(-(eV / D) * gV), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(float(loss), float(_jax_loss(W, V, b, x, g, tied, K)), rtol=1e-12)
    np.testing.assert_allclose(float(loss), float(net.loss(x)), rtol=1e-12)


def test_float32_step_keeps_dtype():
    rng = np.random.default_rng(3)
    W, V, b = (a.astype(np.float32).astype(np.float64) for a in _random_net(rng, 20, 2, "erf", False, True))
    x = rng.standard_normal(20).astype(np.float32).astype(np.float64)
    net = aedyn.AutoEncoder(*(jnp.asarray(a, jnp.float32) for a in (W, V)), "erf", jnp.asarray(b, jnp.float32))
    new, loss = aedyn.sgd_step(net, jnp.asarray(x, jnp.float32), aedyn.learning_rates(0.5, jnp.float32), weight_decay=0.1)
    assert new.W.dtype == new.V.dtype == new.b.dtype == loss.dtype == jnp.float32
    W_ref, V_ref, b_ref, _ = reference_step(W, V, b, x, "erf", rule="vanilla", tied=False,
                                            eta_W=0.5, eta_V=0.5, eta_b=0.5, kappa=0.1)
    np.testing.assert_allclose(np.asarray(new.W, np.float64), W_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.V, np.float64), V_ref, rtol=1e-5, atol=1e-6)


# -- learning-rate and rule validation ------------------------------------------------------------


def test_learning_rates_mapping_and_errors(own_errors):
    lr = aedyn.learning_rates({"W": 0.1, "V": 0.2})
    assert float(lr.W) == 0.1 and float(lr.V) == 0.2 and float(lr.b) == 0.1
    with pytest.raises(ValueError, match="lr"):
        aedyn.learning_rates(-0.1)
    with pytest.raises(ValueError, match="lr"):
        aedyn.learning_rates({"W": 0.1, "V": -1.0})
    with pytest.raises(ValueError, match="lr"):
        aedyn.learning_rates({"X": 0.1})
    with pytest.raises(ValueError, match="lr"):
        aedyn.learning_rates(float("nan"))
    with pytest.raises(ValueError, match="lr"):
        aedyn.learning_rates([0.1, 0.2])


def test_unknown_rule_and_sanger_untied_raise(getkey):
    net = aedyn.init_autoencoder(getkey(), 20, 2, dtype=jnp.float64)
    cov = aedyn.spiked_covariance(getkey(), 20, (2.0,))
    with pytest.raises(ValueError, match="rule"):
        aedyn.simulate(net, cov, key=getkey(), lr=0.1, ts=[0.1], rule="hebbian")
    with pytest.raises(ValueError, match="rule"):
        aedyn.simulate(net, cov, key=getkey(), lr=0.1, ts=[0.1], rule="sanger")
