"""Data models: Covariance (eigenpairs + isotropic bulk) and the spiked model (docs/theory.md §1–2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aedyn


def _random_psd(rng, D, rank=None):
    A = rng.standard_normal((D, rank or D))
    return A @ A.T / D + 0.1 * np.eye(D)


def test_from_matrix_roundtrip_trace_and_pca_errors():
    rng = np.random.default_rng(0)
    C = _random_psd(rng, 30)
    cov = aedyn.Covariance.from_matrix(C)
    rho = np.sort(np.linalg.eigvalsh(C))[::-1]
    assert cov.dim == 30 and cov.n_modes == 30 and cov.n_bulk == 0
    np.testing.assert_allclose(np.asarray(cov.eigvals), rho, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cov.matrix()), C, atol=1e-12)
    np.testing.assert_allclose(float(cov.trace), np.trace(C), rtol=1e-12)
    # pmse_PCA(k) = (1/(2D)) * (sum of all but the k largest eigenvalues), k = 0..K.
    pca = np.asarray(cov.pca_errors(3))
    assert pca.shape == (4,)
    expected = [rho[k:].sum() / (2 * 30) for k in range(4)]
    np.testing.assert_allclose(pca, expected, rtol=1e-12)
    assert np.all(np.diff(pca) < 0)


def test_given_eigenpairs_with_bulk():
    rng = np.random.default_rng(1)
    D = 20
    U, _ = np.linalg.qr(rng.standard_normal((D, 2)))
    cov = aedyn.Covariance(np.array([9.0, 4.0]), U, bulk=0.5)
    C = U @ np.diag([9.0, 4.0]) @ U.T + 0.5 * (np.eye(D) - U @ U.T)
    np.testing.assert_allclose(np.asarray(cov.matrix()), C, atol=1e-13)
    np.testing.assert_allclose(float(cov.trace), 13.0 + 0.5 * 18, rtol=1e-14)
    spec = np.asarray(cov.spectrum())
    np.testing.assert_allclose(spec, np.r_[9.0, 4.0, np.full(18, 0.5)])
    np.testing.assert_allclose(np.asarray(cov.pca_errors(2)), [22 / 40, 13 / 40, 9 / 40], rtol=1e-14)


def test_full_equals_same_matrix():
    cov = aedyn.spiked_covariance(jax.random.key(3), 40, (2.0, 3.0), noise=0.7)
    full = cov.full()
    assert full.n_modes == 40 and full.n_bulk == 0
    np.testing.assert_allclose(np.asarray(full.matrix()), np.asarray(cov.matrix()), atol=1e-12)
    np.testing.assert_allclose(float(full.trace), float(cov.trace), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(full.pca_errors(2)), np.asarray(cov.pca_errors(2)), rtol=1e-12)
    U = np.asarray(full.eigvecs)
    np.testing.assert_allclose(U.T @ U, np.eye(40), atol=1e-12)


@pytest.mark.parametrize("directions", ["gaussian", "sinusoidal"])
def test_spiked_eigenvalues(directions):
    D, s, sigma = 400, np.array([3.0, 5.0]), 1.0
    cov = aedyn.spiked_covariance(jax.random.key(0), D, s, noise=sigma, directions=directions)
    rho = np.asarray(cov.eigvals)
    assert cov.n_modes == 2 and cov.n_bulk == D - 2
    np.testing.assert_allclose(float(cov.bulk), sigma**2)
    # rho ~ D s^2 + sigma^2, sorted descending; random directions overlap by O(1/sqrt(D)).
    expected = D * np.sort(s**2)[::-1] + sigma**2
    rtol = 1e-12 if directions == "sinusoidal" else 4 / np.sqrt(D)
    np.testing.assert_allclose(rho, expected, rtol=rtol)
    # The trace is E|x|^2 = sum_m |a_m|^2 s_m^2 + D sigma^2 exactly (|a_m|^2 = D).
    np.testing.assert_allclose(float(cov.trace), D * (s**2).sum() + D * sigma**2, rtol=1e-12)


def test_sinusoidal_directions_are_orthogonal_sine_modes():
    D = 64
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (1.0, 2.0, 4.0), directions="sinusoidal")
    U = np.asarray(cov.eigvecs)
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-12)
    i = np.arange(1, D + 1)
    # Strongest spike (m = 3) first; eigenvectors are the normalised sine modes up to sign.
    for col, m in zip(range(3), (3, 2, 1)):
        a = np.sin(np.pi * m * i / (D + 1))
        a /= np.linalg.norm(a)
        assert abs(abs(U[:, col] @ a) - 1) < 1e-12
    # The raw sine modes themselves are mutually orthogonal.
    A = np.sin(np.pi * np.arange(1, 4)[:, None] * i[None, :] / (D + 1))
    G = A @ A.T
    np.testing.assert_allclose(G - np.diag(np.diag(G)), 0, atol=1e-10)


def test_sample_statistics_match_covariance(getkey):
    """E[x x^T] = Omega, checked on the explicit modes and in the bulk, within ~5 standard errors."""
    D, n = 60, 20000
    cov = aedyn.spiked_covariance(getkey(), D, (2.0, 3.0), noise=1.0)
    X = np.asarray(cov.sample(getkey(), n))
    assert X.shape == (n, D) and X.dtype == np.float64
    U = np.asarray(cov.eigvecs)
    proj = X @ U  # x . u_tau ~ N(0, rho_tau), independent
    var = (proj**2).mean(0)
    rho = np.asarray(cov.eigvals)
    # Var of a sample variance of a Gaussian: 2 rho^2 / n.
    assert np.all(np.abs(var - rho) < 5 * rho * np.sqrt(2 / n))
    np.testing.assert_allclose(np.abs(X.mean(0)).max(), 0, atol=5 * np.sqrt(rho[0] / n))
    # Bulk: the residual orthogonal to U has variance bulk in each of the D - 2 directions.
    resid = X - proj @ U.T
    bulk_var = (resid**2).sum(1).mean() / (D - 2)
    assert abs(bulk_var - 1.0) < 5 * np.sqrt(2 / (n * (D - 2)))
    # Spike and bulk are uncorrelated.
    cross = (proj[:, :1] * resid).mean(0)
    assert np.abs(cross).max() < 6 * np.sqrt(rho[0] / n)
    # Empirical second-moment matrix close to Omega in operator norm (relative to the top eigenvalue).
    C = X.T @ X / n
    err = np.linalg.norm(C - np.asarray(cov.matrix()), 2) / rho[0]
    assert err < 0.05


def test_sample_full_covariance_and_float32(getkey):
    rng = np.random.default_rng(2)
    C = _random_psd(rng, 10)
    cov = aedyn.Covariance.from_matrix(C)
    X = np.asarray(cov.sample(getkey(), 40000))
    Ce = X.T @ X / X.shape[0]
    # Entry-wise standard error of a second moment: sqrt((C_ii C_jj + C_ij^2) / n).
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / X.shape[0])
    assert np.all(np.abs(Ce - C) < 5 * se)
    X32 = cov.sample(getkey(), 10, dtype=jnp.float32)
    assert X32.dtype == jnp.float32


def test_same_key_same_samples(getkey):
    cov = aedyn.spiked_covariance(jax.random.key(0), 30, (2.0,))
    a = np.asarray(cov.sample(jax.random.key(5), 100))
    b = np.asarray(cov.sample(jax.random.key(5), 100))
    c = np.asarray(cov.sample(jax.random.key(6), 100))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    c1 = aedyn.spiked_covariance(jax.random.key(1), 30, (2.0,))
    c2 = aedyn.spiked_covariance(jax.random.key(1), 30, (2.0,))
    c3 = aedyn.spiked_covariance(jax.random.key(2), 30, (2.0,))
    assert np.array_equal(np.asarray(c1.eigvecs), np.asarray(c2.eigvecs))
    assert not np.allclose(np.abs(np.asarray(c1.eigvecs)), np.abs(np.asarray(c3.eigvecs)))


def test_from_samples():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((500, 8)) * np.arange(1, 9)
    cov = aedyn.Covariance.from_samples(X)
    np.testing.assert_allclose(np.asarray(cov.matrix()), X.T @ X / 500, atol=1e-10)
    cc = aedyn.Covariance.from_samples(X, center=True)
    Xc = X - X.mean(0)
    np.testing.assert_allclose(np.asarray(cc.matrix()), Xc.T @ Xc / 500, atol=1e-10)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("own_errors")
def test_from_matrix_rejects_bad_matrices():
    rng = np.random.default_rng(5)
    C = _random_psd(rng, 6)
    asym = C.copy()
    asym[0, 1] += 0.5
    with pytest.raises(ValueError, match=r"matrix.*not symmetric"):
        aedyn.Covariance.from_matrix(asym)
    neg = C - 2 * np.abs(np.linalg.eigvalsh(C)).max() * np.outer(np.ones(6), np.ones(6)) / 6
    with pytest.raises(ValueError, match=r"matrix.*positive semi-definite"):
        aedyn.Covariance.from_matrix(neg)
    with pytest.raises(ValueError, match="matrix"):
        aedyn.Covariance.from_matrix(np.ones((3, 4)))
    with pytest.raises(ValueError, match="matrix"):
        aedyn.Covariance.from_matrix(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="samples"):
        aedyn.Covariance.from_samples(np.ones(5))


@pytest.mark.usefixtures("own_errors")
def test_covariance_constructor_rejects_bad_input():
    U, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 2)))
    with pytest.raises(ValueError, match="eigvals"):
        aedyn.Covariance(np.array([1.0, -2.0]), U)
    with pytest.raises(ValueError, match="eigvals.*descending.*from_matrix"):
        aedyn.Covariance(np.array([1.0, 2.0]), U)  # ascending, as numpy.linalg.eigh returns them
    with pytest.raises(ValueError, match="eigvecs"):
        aedyn.Covariance(np.array([2.0, 1.0]), 2 * U)  # not orthonormal
    with pytest.raises(ValueError, match="eigvecs"):
        aedyn.Covariance(np.array([2.0, 1.0, 0.5]), U)  # wrong shape
    with pytest.raises(ValueError, match="eigvals"):
        aedyn.Covariance(np.ones((2, 2)), U)
    with pytest.raises(ValueError, match="bulk"):
        aedyn.Covariance(np.array([2.0, 1.0]), U, bulk=-1.0)
    cov = aedyn.Covariance(np.array([2.0, 1.0]), U)
    with pytest.raises(ValueError, match="K"):
        cov.pca_errors(6)


@pytest.mark.usefixtures("own_errors")
def test_spiked_covariance_rejects_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="directions"):
        aedyn.spiked_covariance(key, 10, (1.0,), directions="cosine")
    with pytest.raises(ValueError, match="noise"):
        aedyn.spiked_covariance(key, 10, (1.0,), noise=-1.0)
    with pytest.raises(ValueError, match="D"):
        aedyn.spiked_covariance(key, 0, (1.0,))
    with pytest.raises(ValueError, match="strengths"):
        aedyn.spiked_covariance(key, 2, (1.0, 2.0, 3.0))
