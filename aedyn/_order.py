"""Order parameters from per-mode factors (docs/theory.md §2, §4, §6).

For every explicit eigenmode tau the factors are wt_tau = W u_tau and vs_tau = V u_tau / sqrt(D)
(both O(1) along a spike). The D - N bulk directions of equal variance enter only through their
second moment M = sum_bulk z z^T of z = (wt, vs) (2K x 2K), exact for an isotropic bulk.
"""

import jax.numpy as jnp

from ._defaults import NODES
from ._kernels import gram, mean_slope


def network_factors(W, V, U, n_bulk: int):
    """(wt, vs, M) of a network: W, V (K, D), eigenvectors U (D, N)."""
    D = W.shape[1]
    wt = W @ U
    vs = V @ U / jnp.sqrt(jnp.asarray(D, W.dtype))
    K = W.shape[0]
    if n_bulk == 0:
        M = jnp.zeros((2 * K, 2 * K), W.dtype)
    else:
        Z = jnp.concatenate([W, V / jnp.sqrt(jnp.asarray(D, W.dtype))], axis=0)
        z = jnp.concatenate([wt, vs], axis=0)
        M = Z @ Z.T - z @ z.T
        M = 0.5 * (M + M.T)
    return wt, vs, M


def order_parameters(wt, vs, M, rho, bulk, D: int):
    """Q, R, T, T0 (each K x K) from factors and the spectrum (rho (N,), bulk variance, D)."""
    K = wt.shape[0]
    Mww, Mvw, Mvv = M[:K, :K], M[K:, :K], M[K:, K:]
    cb = bulk / D
    r = rho[None, :]
    Q = (wt * r) @ wt.T / D + cb * Mww
    R = (vs * r) @ wt.T / D + cb * Mvw
    T = (vs * r) @ vs.T / D + cb * Mvv
    T0 = vs @ vs.T + Mvv
    return Q, R, T, T0


def pmse_from_overlaps(act, trace, D, Q, R, T0, b=None, nodes=NODES):
    """pmse = tr(Omega)/(2D) - sum_k R_kk K1_k + 1/2 sum_kl T0_kl G_kl (docs/theory.md §2)."""
    K1 = mean_slope(act, Q, b, nodes)
    G = gram(act, Q, b, nodes)
    return trace / (2 * D) - jnp.sum(jnp.diagonal(R) * K1) + 0.5 * jnp.sum(T0 * G)
