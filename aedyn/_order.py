"""Order parameters from per-mode factors (docs/theory.md §2, §4, §6).

For every explicit eigenmode tau the factors are wt_tau = W u_tau and vs_tau = V u_tau / sqrt(D)
(both O(1) along a spike). The D - N bulk directions of equal variance enter only through their
second moment M = sum_bulk z z^T of z = (wt, vs) (2K x 2K), exact for an isotropic bulk. A trained
output bias c adds the factor cs_tau = c . u_tau / sqrt(D) and one row to the moment (z = (wt, vs, cs)).
"""

import jax.numpy as jnp

from ._defaults import NODES
from ._kernels import gram, mean_slope, mean_value


def network_factors(W, V, U, n_bulk: int, c=None):
    """(wt, vs, M, cs) of a network: W, V (K, D), eigenvectors U (D, N), output bias c (D,) or None
    (then cs is None and M is 2K x 2K; else cs (N,) and M is (2K + 1) x (2K + 1))."""
    D = W.shape[1]
    sq = jnp.sqrt(jnp.asarray(D, W.dtype))
    wt = W @ U
    vs = V @ U / sq
    cs = None if c is None else c @ U / sq
    K = W.shape[0]
    n = 2 * K + (c is not None)
    if n_bulk == 0:
        M = jnp.zeros((n, n), W.dtype)
    else:
        rows = [W, V / sq] + ([] if c is None else [c[None, :] / sq])
        Z = jnp.concatenate(rows, axis=0)
        z = jnp.concatenate([wt, vs] + ([] if c is None else [cs[None, :]]), axis=0)
        M = Z @ Z.T - z @ z.T
        M = 0.5 * (M + M.T)
    return wt, vs, M, cs


def bias_overlaps(vs, cs, M):
    """(C, c2): C_k = v^k . c / D (K,) and c2 = |c|^2 / D of the output bias, from the factors and
    the (2K + 1) x (2K + 1) bulk moment (docs/theory.md, "Output bias")."""
    K = vs.shape[0]
    C = vs @ cs + M[K : 2 * K, 2 * K]
    c2 = cs @ cs + M[2 * K, 2 * K]
    return C, c2


def order_parameters(wt, vs, M, rho, bulk, D: int):
    """Q, R, T, T0 (each K x K) from factors and the spectrum (rho (N,), bulk variance, D)."""
    K = wt.shape[0]
    Mww, Mvw, Mvv = M[:K, :K], M[K : 2 * K, :K], M[K : 2 * K, K : 2 * K]
    cb = bulk / D
    r = rho[None, :]
    Q = (wt * r) @ wt.T / D + cb * Mww
    R = (vs * r) @ wt.T / D + cb * Mvw
    T = (vs * r) @ vs.T / D + cb * Mvv
    T0 = vs @ vs.T + Mvv
    return Q, R, T, T0


def pmse_from_overlaps(act, trace, D, Q, R, T0, b=None, nodes=NODES, C=None, c2=None):
    """pmse = tr(Omega)/(2D) - sum_k R_kk K1_k + 1/2 sum_kl T0_kl G_kl (docs/theory.md §2), plus
    sum_k C_k E[g(lambda^k)] + c2 / 2 with an output bias (C_k = v^k . c / D, c2 = |c|^2 / D)."""
    K1 = mean_slope(act, Q, b, nodes)
    G = gram(act, Q, b, nodes)
    e = trace / (2 * D) - jnp.sum(jnp.diagonal(R) * K1) + 0.5 * jnp.sum(T0 * G)
    if C is not None:
        e = e + jnp.sum(C * mean_value(act, Q, b, nodes)) + 0.5 * c2
    return e
