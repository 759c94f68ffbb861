"""Gaussian kernels of the activation (docs/theory.md §3, §5).

All expectations are over pre-activations lambda ~ N(b, Q), with Q the K x K covariance of the
pre-activations and b the biases (zero when absent). The population error needs only

    K1_k = E[g'(lambda^k)]                 (``mean_slope``)
    G_ka = E[g(lambda^k) g(lambda^a)]      (``gram``)

and the hand-written Stein-form equations also need K3, P and S (``stein_kernels``).
Closed forms are used for linear, erf and relu without bias; every other case (any activation,
any bias) uses Gauss–Hermite quadrature, which is differentiable and vmappable.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._activations import Activation
from ._defaults import NODES

# NODES Gauss–Hermite nodes per dimension are accurate to ~1e-10 for smooth entire g (erf, gelu)
# up to Q ~ 5; saturating g with poles near the real axis (tanh, sigmoid) converge slowly at large
# Q (tanh: ~1e-3 at Q ~ 10): pass a larger ``nodes`` there.


@functools.lru_cache(maxsize=None)
def gauss_hermite(n: int = NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w with sum_i w_i f(z_i) ~= E[f(z)] for z ~ N(0, 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / np.sqrt(2.0 * np.pi)


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with a finite (zero) gradient at 0."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _nodes(n, dtype):
    z, w = gauss_hermite(n)
    return jnp.asarray(z, dtype), jnp.asarray(w, dtype)


def _has_bias(b) -> bool:
    return b is not None


def mean_slope(
    act: Activation, Q: Float[Array, "K K"], b: Float[Array, " K"] | None = None, nodes: int = NODES
) -> Float[Array, " K"]:
    """K1_k = E[g'(lambda^k)], lambda^k ~ N(b_k, Q_kk)."""
    q = jnp.diagonal(Q)
    if act.name == "linear":
        return jnp.ones_like(q)
    if act.name == "erf":
        k1 = jnp.sqrt(2.0 / jnp.pi) / jnp.sqrt(1.0 + q)
        if _has_bias(b):
            k1 = k1 * jnp.exp(-0.5 * b**2 / (1.0 + q))
        return k1
    if act.name == "relu":
        if not _has_bias(b):
            return jnp.full_like(q, 0.5)
        from jax.scipy.stats import norm

        return norm.cdf(b / jnp.sqrt(jnp.maximum(q, jnp.finfo(Q.dtype).tiny)))
    z, w = _nodes(nodes, Q.dtype)
    mu = jnp.zeros_like(q) if b is None else b
    lam = mu[:, None] + _safe_sqrt(q)[:, None] * z[None, :]
    return act.derivative(lam) @ w


def mean_value(
    act: Activation, Q: Float[Array, "K K"], b: Float[Array, " K"] | None = None, nodes: int = NODES
) -> Float[Array, " K"]:
    """m_k = E[g(lambda^k)], lambda^k ~ N(b_k, Q_kk) (enters the error only with an output bias)."""
    q = jnp.diagonal(Q)
    mu = jnp.zeros_like(q) if b is None else b
    if act.name == "linear":
        return mu
    if act.name == "erf":
        return jax.scipy.special.erf(mu / jnp.sqrt(2.0 * (1.0 + q)))
    if act.name == "relu":
        from jax.scipy.stats import norm

        sd = jnp.sqrt(jnp.maximum(q, jnp.finfo(Q.dtype).tiny))
        return mu * norm.cdf(mu / sd) + sd * norm.pdf(mu / sd)
    z, w = _nodes(nodes, Q.dtype)
    lam = mu[:, None] + _safe_sqrt(q)[:, None] * z[None, :]
    return act(lam) @ w


def _gram_quadrature(act, Q, b, nodes):
    z, w = _nodes(nodes, Q.dtype)
    K = Q.shape[0]
    q = jnp.diagonal(Q)
    mu = jnp.zeros_like(q) if b is None else b
    # 1-D rule on the diagonal: G_kk = E[g(lambda^k)^2].
    lam1 = mu[:, None] + _safe_sqrt(q)[:, None] * z[None, :]
    diag = act(lam1) ** 2 @ w
    # 2-D tensor rule with the Cholesky factor of [[Q_kk, Q_ka], [Q_ka, Q_aa]] off the diagonal:
    # lambda^k = b_k + L11 z1, lambda^a = b_a + L21 z1 + L22 z2.
    qk = jnp.maximum(q, jnp.finfo(Q.dtype).tiny)
    L11 = jnp.broadcast_to(_safe_sqrt(q)[:, None], (K, K))
    L21 = Q / jnp.sqrt(qk)[:, None]
    L22 = _safe_sqrt(q[None, :] - L21**2)
    gk = act(mu[:, None, None] + L11[..., None] * z[None, None, :])  # (K, K, n) over z1
    la = (
        mu[None, :, None, None]
        + L21[..., None, None] * z[None, None, :, None]
        + L22[..., None, None] * z[None, None, None, :]
    )  # (K, K, n1, n2)
    ga = act(la)
    off = jnp.einsum("kai,kaij,i,j->ka", gk, ga, w, w)
    off = 0.5 * (off + off.T)
    return jnp.where(jnp.eye(K, dtype=bool), jnp.diag(diag), off)


@functools.lru_cache(maxsize=None)
def _legendre(n: int = 48):
    return np.polynomial.legendre.leggauss(n)


def _relu_gram_bias(Q, b):
    """E[relu(lambda^k) relu(lambda^a)] for lambda ~ N(b, Q), closed form in Phi, phi and the
    bivariate normal CDF Phi2(h, k; rho) = Phi(h) Phi(k) + (1/2pi) int_0^asin(rho)
    exp(-(h^2 - 2 h k sin th + k^2) / (2 cos^2 th)) dth (Sheppard's form: a smooth integrand,
    integrated by Gauss–Legendre)."""
    from jax.scipy.stats import norm

    K = Q.shape[0]
    eye = jnp.eye(K, dtype=bool)
    q = jnp.maximum(jnp.diagonal(Q), jnp.finfo(Q.dtype).tiny)
    sd = jnp.sqrt(q)
    h = b / sd  # standardised means
    # Diagonal: E[relu(lambda)^2] = (q + b^2) Phi(h) + b sqrt(q) phi(h).
    diag = (q + b**2) * norm.cdf(h) + b * sd * norm.pdf(h)
    sdsd = sd[:, None] * sd[None, :]
    rho = jnp.where(eye, 0.0, jnp.clip(Q / sdsd, -1 + 1e-12, 1 - 1e-12))
    hk, ha = h[:, None] * jnp.ones((1, K), Q.dtype), h[None, :] * jnp.ones((K, 1), Q.dtype)
    x, w = _legendre()
    x, w = jnp.asarray(x, Q.dtype), jnp.asarray(w, Q.dtype)
    amax = jnp.arcsin(rho)
    th = 0.5 * amax[..., None] * (x[None, None, :] + 1.0)
    expo = -(hk[..., None] ** 2 - 2 * hk[..., None] * ha[..., None] * jnp.sin(th) + ha[..., None] ** 2) / (
        2 * jnp.cos(th) ** 2
    )
    P2 = norm.cdf(hk) * norm.cdf(ha) + 0.5 * amax / (2 * jnp.pi) * jnp.sum(w[None, None, :] * jnp.exp(expo), -1)
    s = jnp.sqrt(1 - rho**2)
    c1 = (ha - rho * hk) / s
    c2 = (hk - rho * ha) / s
    EZ1 = norm.pdf(hk) * norm.cdf(c1) + rho * norm.pdf(ha) * norm.cdf(c2)
    EZ2 = norm.pdf(ha) * norm.cdf(c2) + rho * norm.pdf(hk) * norm.cdf(c1)
    EZ12 = norm.pdf(hk) * (-rho * hk * norm.cdf(c1) + s * norm.pdf(c1)) + rho * (P2 - ha * norm.pdf(ha) * norm.cdf(c2))
    mk, ma = b[:, None] * jnp.ones((1, K), Q.dtype), b[None, :] * jnp.ones((K, 1), Q.dtype)
    sk, sa = sd[:, None] * jnp.ones((1, K), Q.dtype), sd[None, :] * jnp.ones((K, 1), Q.dtype)
    off = mk * ma * P2 + mk * sa * EZ2 + ma * sk * EZ1 + sk * sa * EZ12
    return jnp.where(eye, jnp.diag(diag), off)


def gram(
    act: Activation, Q: Float[Array, "K K"], b: Float[Array, " K"] | None = None, nodes: int = NODES
) -> Float[Array, "K K"]:
    """G_ka = E[g(lambda^k) g(lambda^a)], lambda ~ N(b, Q)."""
    if act.name == "linear":
        G = Q
        if _has_bias(b):
            G = G + b[:, None] * b[None, :]
        return G
    if act.name == "erf" and not _has_bias(b):
        d = 1.0 + jnp.diagonal(Q)
        return (2.0 / jnp.pi) * jnp.arcsin(Q / jnp.sqrt(d[:, None] * d[None, :]))
    if act.name == "relu" and not _has_bias(b):
        K = Q.shape[0]
        q = jnp.diagonal(Q)
        eye = jnp.eye(K, dtype=bool)
        qq = q[:, None] * q[None, :]
        safe_qq = jnp.where(eye | (qq <= 0), 1.0, qq)
        c = jnp.clip(Q / jnp.sqrt(safe_qq), -1.0, 1.0)
        c = jnp.where(eye, 0.0, c)
        off = (Q * (0.5 * jnp.pi + jnp.arcsin(c)) + _safe_sqrt(qq - Q**2)) / (2.0 * jnp.pi)
        return jnp.where(eye, 0.5 * Q, off)
    if act.name == "relu":
        return _relu_gram_bias(Q, b)
    return _gram_quadrature(act, Q, b, nodes)


def stein_kernels(act: Activation, Q: Float[Array, "K K"]):
    """Closed-form (K1, K3, G, P, S) of docs/theory.md §5 for linear, erf and relu without bias.

    Returns K1 (K,), K3 (K,), G (K, K), P (K, K), S (K, K), with S_ka = E[g''(lambda^k) g(lambda^a)].
    """
    K = Q.shape[0]
    q = jnp.diagonal(Q)
    eye = jnp.eye(K, dtype=bool)
    if act.name == "linear":
        one = jnp.ones_like(q)
        return one, jnp.zeros_like(q), Q, jnp.ones_like(Q), jnp.zeros_like(Q)
    if act.name == "erf":
        d = 1.0 + q
        lam = d[:, None] * d[None, :] - Q**2
        K1 = jnp.sqrt(2.0 / jnp.pi) / jnp.sqrt(d)
        K3 = -jnp.sqrt(2.0 / jnp.pi) / d**1.5
        G = (2.0 / jnp.pi) * jnp.arcsin(Q / jnp.sqrt(d[:, None] * d[None, :]))
        P = (2.0 / jnp.pi) / jnp.sqrt(lam)
        S = -(2.0 / jnp.pi) * Q / (d[:, None] * jnp.sqrt(lam))
        return K1, K3, G, P, S
    if act.name == "relu":
        qq = q[:, None] * q[None, :]
        safe_qq = jnp.where(eye | (qq <= 0), 1.0, qq)
        # Diagonal handled apart: arcsin'(1) = inf would turn the masked tangent into NaN.
        c = jnp.where(eye, 0.0, jnp.clip(Q / jnp.sqrt(safe_qq), -1.0, 1.0))
        G = gram(act, Q)
        P = jnp.where(eye, 0.5, 0.25 + jnp.arcsin(c) / (2.0 * jnp.pi))
        # S_ka = E[delta(lambda^k) relu(lambda^a)] = sqrt(Q_kk Q_aa - Q_ka^2) / (2 pi Q_kk); 0 on the diagonal.
        S = _safe_sqrt(qq - Q**2) / (2.0 * jnp.pi * jnp.maximum(q, jnp.finfo(Q.dtype).tiny)[:, None])
        S = jnp.where(eye, 0.0, S)
        return jnp.full_like(q, 0.5), jnp.zeros_like(q), G, P, S
    raise ValueError(
        f"activation: the Stein-form kernels have closed forms only for linear, erf and relu, "
        f"not {act.name!r}; use the autodiff right-hand side"
    )
