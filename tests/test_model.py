"""The autoencoder: construction, exact pmse vs Monte Carlo, overlaps (docs/theory.md §1–2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as np_erf

import aedyn

N_MC = 100_000


def _cov(kind, D, key):
    if kind == "spiked":
        return aedyn.spiked_covariance(key, D, (2.0, 3.0), noise=1.0)
    rng = np.random.default_rng(11)
    A = rng.standard_normal((D, D))
    return aedyn.Covariance.from_matrix(A @ A.T / D + 0.2 * np.eye(D) + 3 * np.outer(np.ones(D), np.ones(D)) / D)


def _net(key, D, K, act, tied, bias):
    # Scale 1 untied (tied: |w| = O(1)) and a spike-aligned encoder so that pre-activations are O(1)
    # and pmse exercises the non-linear regime of g, not just its slope at 0.
    net = aedyn.init_autoencoder(key, D, K, activation=act, scale=1.0, tied=tied, bias=bias, dtype=jnp.float64)
    return net


CASES = [
    ("erf", False, None, "spiked"),
    ("erf", False, 0.3, "spiked"),
    ("erf", True, None, "spiked"),
    ("erf", False, None, "full"),
    ("relu", False, None, "spiked"),
    ("relu", False, -0.2, "full"),
    ("relu", True, None, "full"),
    ("linear", False, None, "full"),
    ("linear", True, 0.5, "spiked"),
    ("tanh", False, None, "spiked"),
    ("tanh", False, 0.4, "full"),
    ("tanh", True, 0.2, "spiked"),
    ("sigmoid", False, 0.1, "spiked"),
]


@pytest.mark.parametrize("act,tied,bias,kind", CASES)
def test_pmse_exact_matches_monte_carlo(act, tied, bias, kind, getkey):
    """Exact pmse within 3 standard errors of a 1e5-sample Monte-Carlo estimate."""
    D, K = 40, 3
    cov = _cov(kind, D, getkey())
    net = _net(getkey(), D, K, act, tied, bias)
    # Align unit 0 with the leading eigenvector so the spike drives it into the non-linearity.
    u = cov.eigvecs[:, 0]
    W = net.W.at[0].add((2.0 if not tied else 2.0 / math.sqrt(D)) * math.sqrt(D) * u / math.sqrt(float(cov.eigvals[0])))
    net = aedyn.AutoEncoder(W, net.V, net.activation, net.b, net.tied)
    exact = float(aedyn.pmse(net, cov))
    X = cov.sample(getkey(), N_MC)
    mc, se = (float(v) for v in aedyn.pmse_mc(net, X))
    assert se > 0 and se < 0.05 * mc
    assert abs(exact - mc) < 3 * se, (exact, mc, se)


def test_pmse_matches_numpy_formula_erf():
    """pmse = tr/(2D) - sum_k R_kk E[g'] + 1/2 sum T0 G with the closed-form erf kernels, in NumPy."""
    rng = np.random.default_rng(0)
    D, K = 30, 2
    A = rng.standard_normal((D, D))
    C = A @ A.T / D
    W, V = rng.standard_normal((K, D)), rng.standard_normal((K, D))
    cov = aedyn.Covariance.from_matrix(C)
    net = aedyn.AutoEncoder(jnp.asarray(W), jnp.asarray(V), "erf")
    Q = W @ C @ W.T / D
    R = V @ C @ W.T / D**1.5
    T0 = V @ V.T / D
    d = 1 + np.diag(Q)
    K1 = np.sqrt(2 / np.pi) / np.sqrt(d)
    G = 2 / np.pi * np.arcsin(Q / np.sqrt(np.outer(d, d)))
    ref = np.trace(C) / (2 * D) - np.sum(np.diag(R) * K1) + 0.5 * np.sum(T0 * G)
    np.testing.assert_allclose(float(aedyn.pmse(net, cov)), ref, rtol=1e-12)
    ov = aedyn.overlaps(net, cov)
    np.testing.assert_allclose(np.asarray(ov.Q), Q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(ov.R), R, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(ov.T0), T0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ov.T), V @ C @ V.T / D**2, rtol=1e-12, atol=1e-14)


def test_pmse_zero_network_and_pca_floor(getkey):
    D = 50
    cov = aedyn.spiked_covariance(getkey(), D, (3.0, 5.0))
    zero = aedyn.AutoEncoder(jnp.zeros((2, D)), jnp.zeros((2, D)), "linear")
    np.testing.assert_allclose(float(aedyn.pmse(zero, cov)), float(cov.trace) / (2 * D), rtol=1e-14)
    # A linear net with W = sqrt(D) U^T, V = U^T reconstructs the top-2 PCs: pmse = PCA(2).
    U = cov.eigvecs
    pca_net = aedyn.AutoEncoder(math.sqrt(D) * U.T, U.T, "linear")
    np.testing.assert_allclose(float(aedyn.pmse(pca_net, cov)), float(cov.pca_errors(2)[2]), rtol=1e-12)


def test_overlaps_cosines_and_shapes(getkey):
    D, K = 60, 2
    cov = aedyn.spiked_covariance(getkey(), D, (3.0, 5.0))
    U = np.asarray(cov.eigvecs)
    W = np.stack([U[:, 0] * 5.0, U[:, 1] * -2.0])
    V = np.stack([U[:, 1] * 3.0, U[:, 0] + U[:, 1]])
    net = aedyn.AutoEncoder(jnp.asarray(W), jnp.asarray(V), "erf")
    ov = aedyn.overlaps(net, cov)
    for name in ("Q", "R", "T", "T0"):
        assert getattr(ov, name).shape == (K, K)
    np.testing.assert_allclose(np.asarray(ov.m_W), [[1, 0], [0, -1]], atol=1e-12)
    np.testing.assert_allclose(np.asarray(ov.m_V), [[0, 1], [1 / math.sqrt(2), 1 / math.sqrt(2)]], atol=1e-12)


def test_forward_and_loss_numpy():
    rng = np.random.default_rng(1)
    D, K = 20, 3
    W, V, b, x = rng.standard_normal((K, D)), rng.standard_normal((K, D)), rng.standard_normal(K), rng.standard_normal(D)
    net = aedyn.AutoEncoder(jnp.asarray(W), jnp.asarray(V), "erf", jnp.asarray(b))
    xhat = np_erf((W @ x / math.sqrt(D) + b) / math.sqrt(2)) @ V
    np.testing.assert_allclose(np.asarray(net(jnp.asarray(x))), xhat, rtol=1e-12)
    np.testing.assert_allclose(float(net.loss(jnp.asarray(x))), 0.5 * np.sum((x - xhat) ** 2), rtol=1e-12)
    tied = aedyn.AutoEncoder(jnp.asarray(W / math.sqrt(D)), None, "tanh", tied=True)
    xt = np.tanh(W @ x / D) @ W
    np.testing.assert_allclose(np.asarray(tied(jnp.asarray(x))), xt, rtol=1e-12)


def test_init_autoencoder_scales_and_dtype(getkey):
    D, K = 400, 3
    net = aedyn.init_autoencoder(getkey(), D, K, scale=0.5)
    assert net.W.dtype == net.V.dtype == jnp.float32 and net.b is None and not net.tied
    assert abs(float(jnp.std(net.W)) - 0.5) < 0.03 and abs(float(jnp.std(net.V)) - 0.5) < 0.03
    tied = aedyn.init_autoencoder(getkey(), D, K, scale=0.5, tied=True, bias=0.25, dtype=jnp.float64)
    assert tied.V is None and tied.tied and tied.W.dtype == jnp.float64
    assert abs(float(jnp.std(tied.W)) * math.sqrt(D) - 0.5) < 0.03
    np.testing.assert_array_equal(np.asarray(tied.b), [0.25] * 3)
    a = aedyn.init_autoencoder(jax.random.key(9), D, K)
    b = aedyn.init_autoencoder(jax.random.key(9), D, K)
    c = aedyn.init_autoencoder(jax.random.key(10), D, K)
    assert np.array_equal(np.asarray(a.W), np.asarray(b.W)) and np.array_equal(np.asarray(a.V), np.asarray(b.V))
    assert not np.array_equal(np.asarray(a.W), np.asarray(c.W))


def test_custom_activation_pmse(getkey):
    """A user function of one argument works end to end (quadrature kernels)."""
    D = 30
    cov = aedyn.spiked_covariance(getkey(), D, (2.0,))
    net = aedyn.init_autoencoder(getkey(), D, 2, activation=lambda z: jnp.sin(z), scale=1.0, dtype=jnp.float64)
    mc, se = aedyn.pmse_mc(net, cov.sample(getkey(), N_MC))
    assert abs(float(aedyn.pmse(net, cov)) - float(mc)) < 3 * float(se)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("own_errors")
def test_autoencoder_rejects_bad_input():
    W = jnp.zeros((2, 5))
    with pytest.raises(ValueError, match="W"):
        aedyn.AutoEncoder(jnp.zeros(5), jnp.zeros(5))
    with pytest.raises(ValueError, match="W"):
        aedyn.AutoEncoder(jnp.zeros((6, 5)), jnp.zeros((6, 5)))  # K > D
    with pytest.raises(ValueError, match="V"):
        aedyn.AutoEncoder(W, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="V"):
        aedyn.AutoEncoder(W, None)
    with pytest.raises(ValueError, match="V"):
        aedyn.AutoEncoder(W, W, tied=True)
    with pytest.raises(ValueError, match="b"):
        aedyn.AutoEncoder(W, W, b=jnp.zeros(3))
    with pytest.raises(ValueError, match="activation"):
        aedyn.AutoEncoder(W, W, activation="swish")
    with pytest.raises(ValueError, match="activation"):
        aedyn.AutoEncoder(W, W, activation=lambda z: jnp.sum(z))
    with pytest.raises(TypeError, match="W"):
        aedyn.AutoEncoder(jnp.zeros((2, 5), jnp.int32), jnp.zeros((2, 5), jnp.int32))


@pytest.mark.usefixtures("own_errors")
def test_init_and_pmse_reject_bad_input(getkey):
    with pytest.raises(ValueError, match="K"):
        aedyn.init_autoencoder(getkey(), 3, 4)
    with pytest.raises(ValueError, match="D"):
        aedyn.init_autoencoder(getkey(), 0, 1)
    with pytest.raises(ValueError, match="K"):
        aedyn.init_autoencoder(getkey(), 5, 0)
    with pytest.raises(ValueError, match="scale"):
        aedyn.init_autoencoder(getkey(), 5, 1, scale=-1.0)
    with pytest.raises(ValueError, match="activation"):
        aedyn.init_autoencoder(getkey(), 5, 1, activation="nope")
    net = aedyn.init_autoencoder(getkey(), 10, 2, dtype=jnp.float64)
    cov = aedyn.spiked_covariance(getkey(), 12, (1.0,))
    with pytest.raises(ValueError, match="cov"):
        aedyn.pmse(net, cov)
    with pytest.raises(ValueError, match="samples"):
        aedyn.pmse_mc(net, jnp.zeros((4, 12)))
