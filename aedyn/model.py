"""The shallow autoencoder xhat = sum_k v^k g(w^k . x / sqrt(D) + b^k) (THEORY.md §1–2)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import is_concrete
from ._order import network_factors, order_parameters, pmse_from_overlaps
from .activations import Activation, get_activation
from .data import Covariance

__all__ = ["AutoEncoder", "init_autoencoder", "pmse", "pmse_mc", "overlaps", "Overlaps"]


class AutoEncoder(eqx.Module):
    """A shallow autoencoder with K hidden units in D dimensions.

    Attributes:
        W: (K, D) encoder vectors, row k = w^k.
        V: (K, D) decoder vectors, row k = v^k; ``None`` for tied weights, where the decoder is
            sqrt(D) W (THEORY.md §1, "tied": |w^k| = O(1), entries O(1/sqrt(D))).
        b: (K,) trained encoder bias, or ``None`` for no bias.
        activation: the activation g.
        tied: whether the decoder is tied to the encoder.
    """

    W: Float[Array, "K D"]
    V: Float[Array, "K D"] | None
    b: Float[Array, " K"] | None
    activation: Activation = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(self, W, V=None, activation="erf", b=None, tied=False):
        W = jnp.asarray(W)
        if W.ndim != 2:
            raise ValueError(f"W: expected the encoder as a (K, D) array, got shape {W.shape}")
        if not jnp.issubdtype(W.dtype, jnp.floating):
            raise ValueError(f"W: expected a floating-point array, got {W.dtype}")
        K, D = W.shape
        if K > D:
            raise ValueError(f"W: K = {K} hidden units exceed the input dimension D = {D}")
        if tied:
            if V is not None:
                raise ValueError("V: a tied autoencoder has no separate decoder (its decoder is sqrt(D) W); pass V=None")
        else:
            if V is None:
                raise ValueError("V: an untied autoencoder needs a (K, D) decoder")
            V = jnp.asarray(V)
            if V.shape != W.shape:
                raise ValueError(f"V: expected shape {W.shape} like W, got {V.shape}")
            if V.dtype != W.dtype:
                raise ValueError(f"V: dtype {V.dtype} differs from W's {W.dtype}")
        if b is not None:
            b = jnp.asarray(b, W.dtype)
            if b.shape != (K,):
                raise ValueError(f"b: expected the bias as a ({K},) array, got shape {b.shape}")
        self.W = W
        self.V = V
        self.b = b
        self.activation = get_activation(activation)
        self.tied = bool(tied)

    @property
    def K(self) -> int:
        return self.W.shape[0]

    @property
    def D(self) -> int:
        return self.W.shape[1]

    @property
    def decoder(self) -> Float[Array, "K D"]:
        """The decoder vectors v^k (sqrt(D) w^k when tied)."""
        if self.tied:
            return jnp.sqrt(jnp.asarray(self.D, self.W.dtype)) * self.W
        return self.V

    def preactivations(self, x: Float[Array, " D"]) -> Float[Array, " K"]:
        lam = self.W @ x / jnp.sqrt(jnp.asarray(self.D, self.W.dtype))
        return lam if self.b is None else lam + self.b

    def __call__(self, x: Float[Array, " D"]) -> Float[Array, " D"]:
        """The reconstruction xhat of one input x (D,)."""
        return self.activation(self.preactivations(x)) @ self.decoder

    def loss(self, x: Float[Array, " D"]) -> Float[Array, ""]:
        """Per-sample loss l = |x - xhat|^2 / 2."""
        d = x - self(x)
        return 0.5 * jnp.dot(d, d)


def init_autoencoder(
    key: PRNGKeyArray,
    D: int,
    K: int,
    *,
    activation: str | Callable | Activation = "erf",
    scale: float = 0.1,
    tied: bool = False,
    bias: float | None = None,
    dtype=jnp.float32,
) -> AutoEncoder:
    """A random autoencoder: W, V entries N(0, scale^2) (tied: N(0, scale^2 / D), THEORY.md §1).

    ``bias=None`` means no bias; a number means a trained bias starting at that value.
    """
    if not isinstance(D, int) or D < 1:
        raise ValueError(f"D: expected a positive integer, got {D!r}")
    if not isinstance(K, int) or K < 1:
        raise ValueError(f"K: expected a positive integer, got {K!r}")
    if K > D:
        raise ValueError(f"K: K = {K} hidden units exceed the input dimension D = {D}")
    if is_concrete(scale) and float(scale) < 0:
        raise ValueError(f"scale: expected a non-negative initial scale, got {scale}")
    kw, kv = jax.random.split(key)
    # Draw in float64 and cast, so that one key gives the same initial weights in every dtype
    # (a float32 simulation and the float64 theory start from the same network).
    hi = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    scale = jnp.asarray(scale, hi)
    if tied:
        W = (scale * jax.random.normal(kw, (K, D), hi) / jnp.sqrt(jnp.asarray(D, hi))).astype(dtype)
        V = None
    else:
        W = (scale * jax.random.normal(kw, (K, D), hi)).astype(dtype)
        V = (scale * jax.random.normal(kv, (K, D), hi)).astype(dtype)
    b = None if bias is None else jnp.full((K,), bias, dtype)
    return AutoEncoder(W, V, activation, b, tied)


class Overlaps(eqx.Module):
    """Macroscopic order parameters of a network (THEORY.md §2), each K x K (leading axes allowed).

    ``m_W[k, j]`` / ``m_V[k, j]``: cosine between w^k (v^k) and the j-th principal component.
    """

    Q: Float[Array, "*t K K"]
    R: Float[Array, "*t K K"]
    T: Float[Array, "*t K K"]
    T0: Float[Array, "*t K K"]
    m_W: Float[Array, "*t K P"]
    m_V: Float[Array, "*t K P"]


def _check_pair(net: AutoEncoder, cov: Covariance):
    if cov.dim != net.D:
        raise ValueError(f"cov: covariance of dimension {cov.dim} does not match the network's D = {net.D}")


def _factors(net: AutoEncoder, cov: Covariance):
    dtype = net.W.dtype
    return network_factors(net.W, net.decoder, cov.eigvecs.astype(dtype), cov.n_bulk)


def overlaps(net: AutoEncoder, cov: Covariance) -> Overlaps:
    """Order parameters Q, R, T, T0 and the cosine overlaps with the leading K PCs."""
    _check_pair(net, cov)
    dtype = net.W.dtype
    wt, vs, M = _factors(net, cov)
    Q, R, T, T0 = order_parameters(wt, vs, M, cov.eigvals.astype(dtype), cov.bulk.astype(dtype), net.D)
    P = min(net.K, cov.n_modes)
    wnorm = jnp.linalg.norm(net.W, axis=1, keepdims=True)
    vnorm = jnp.linalg.norm(net.decoder, axis=1, keepdims=True) / jnp.sqrt(jnp.asarray(net.D, dtype))
    m_W = wt[:, :P] / jnp.where(wnorm > 0, wnorm, 1)
    m_V = vs[:, :P] / jnp.where(vnorm > 0, vnorm, 1)
    return Overlaps(Q, R, T, T0, m_W, m_V)


def pmse(net: AutoEncoder, cov: Covariance) -> Float[Array, ""]:
    """Population error E[|x - xhat|^2] / (2D) for x ~ N(0, cov), exact (THEORY.md §2)."""
    _check_pair(net, cov)
    dtype = net.W.dtype
    ov = overlaps(net, cov)
    return pmse_from_overlaps(net.activation, cov.trace.astype(dtype), net.D, ov.Q, ov.R, ov.T0, net.b)


def pmse_mc(net: AutoEncoder, samples: Float[Array, "n D"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Monte-Carlo estimate of pmse on given samples: (mean, standard error of the mean)."""
    samples = jnp.asarray(samples, net.W.dtype)
    if samples.ndim != 2 or samples.shape[1] != net.D:
        raise ValueError(f"samples: expected shape (n, {net.D}), got {samples.shape}")
    losses = jax.vmap(net.loss)(samples) / net.D
    n = samples.shape[0]
    return losses.mean(), losses.std(ddof=1) / jnp.sqrt(n) if n > 1 else jnp.zeros((), losses.dtype)
