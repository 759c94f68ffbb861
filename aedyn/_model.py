"""The shallow autoencoder xhat = sum_k v^k g(w^k . x / sqrt(D) + b^k) + c (docs/theory.md §1–2)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._activations import Activation, get_activation
from ._checks import check_int, check_key, check_number, is_concrete
from ._data import Covariance
from ._defaults import INIT_SCALE
from ._order import network_factors, order_parameters, pmse_from_overlaps


class AutoEncoder(eqx.Module):
    """A shallow autoencoder with K hidden units in D dimensions.

    Attributes:
        W: (K, D) encoder vectors, row k = w^k.
        V: (K, D) decoder vectors, row k = v^k; ``None`` for tied weights, where the decoder is
            sqrt(D) W (docs/theory.md §1, "tied": |w^k| = O(1), entries O(1/sqrt(D))).
        b: (K,) trained encoder bias, or ``None`` for no bias.
        c: (D,) trained output (decoder) bias, or ``None`` for none; |c| = O(sqrt(D)) (entries O(1)).
        activation: the activation g (static).
        tied: whether the decoder is tied to the encoder (static).
    """

    W: Float[Array, "K D"]
    V: Float[Array, "K D"] | None
    b: Float[Array, " K"] | None
    c: Float[Array, " D"] | None
    activation: Activation = eqx.field(static=True)
    tied: bool = eqx.field(static=True)

    def __init__(
        self,
        W: Float[ArrayLike, "K D"],
        V: Float[ArrayLike, "K D"] | None = None,
        activation: str | Callable | Activation = "erf",
        b: Float[ArrayLike, " K"] | None = None,
        tied: bool = False,
        c: Float[ArrayLike, " D"] | None = None,
    ):
        for name, x in (("W", W), ("V", V), ("b", b), ("c", c)):
            if isinstance(x, (str, bytes)):
                raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
        self.W = jnp.asarray(W)
        self.V = None if V is None else jnp.asarray(V)
        self.b = None if b is None else jnp.asarray(b, self.W.dtype)
        self.c = None if c is None else jnp.asarray(c, self.W.dtype)
        self.activation = get_activation(activation)
        self.tied = bool(tied)

    def __check_init__(self):
        W, V, b, c = self.W, self.V, self.b, self.c
        if W.ndim != 2:
            raise ValueError(f"W: expected the encoder as a (K, D) array, got shape {W.shape}")
        if not jnp.issubdtype(W.dtype, jnp.floating):
            raise TypeError(f"W: expected a floating-point array, got {W.dtype}")
        K, D = W.shape
        if K > D:
            raise ValueError(f"W: K = {K} hidden units exceed the input dimension D = {D}")
        if self.tied and V is not None:
            raise ValueError("V: a tied autoencoder has no separate decoder (its decoder is sqrt(D) W); pass V=None")
        if not self.tied:
            if V is None:
                raise ValueError("V: an untied autoencoder needs a (K, D) decoder")
            if V.shape != W.shape:
                raise ValueError(f"V: expected shape {W.shape} like W, got {V.shape}")
            if V.dtype != W.dtype:
                raise TypeError(f"V: dtype {V.dtype} differs from W's {W.dtype}")
        if b is not None and b.shape != (K,):
            raise ValueError(f"b: expected the bias as a ({K},) array, got shape {b.shape}")
        if c is not None and c.shape != (D,):
            raise ValueError(f"c: expected the output bias as a ({D},) array, got shape {c.shape}")
        for name, x in (("W", W), ("V", V), ("b", b), ("c", c)):
            if x is not None and is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
                raise ValueError(f"{name}: the network's weights contain non-finite values (NaN or inf)")

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
        xhat = self.activation(self.preactivations(x)) @ self.decoder
        return xhat if self.c is None else xhat + self.c

    def loss(self, x: Float[Array, " D"]) -> Float[Array, ""]:
        """Per-sample loss l = |x - xhat|^2 / 2."""
        d = x - self(x)
        return 0.5 * jnp.dot(d, d)


def init_autoencoder(
    key: PRNGKeyArray,
    D: int | np.integer,
    K: int | np.integer,
    *,
    activation: str | Callable | Activation = "erf",
    scale: float | Float[ArrayLike, ""] = INIT_SCALE,
    tied: bool = False,
    bias: float | None = None,
    output_bias: float | None = None,
    dtype=jnp.float32,
) -> AutoEncoder:
    """A random autoencoder: W, V entries N(0, scale^2) (tied: N(0, scale^2 / D), docs/theory.md §1).

    ``bias=None`` means no encoder bias; a number means a trained bias b starting at that value.
    ``output_bias=None`` means no output bias; a number means a trained output bias c (D,) with
    every entry starting at that value (docs/theory.md, "Output bias"). The weights
    are drawn in float64 (float32 when JAX's x64 is off) and cast to ``dtype``, so that one key
    gives the same initial network in every dtype.
    """
    key = check_key(key)
    D = check_int(D, "D", lo=1)
    K = check_int(K, "K", lo=1)
    if K > D:
        raise ValueError(f"K: K = {K} hidden units exceed the input dimension D = {D}")
    check_number(scale, "scale", lo=0.0)
    if bias is not None:
        check_number(bias, "bias")
    if output_bias is not None:
        check_number(output_bias, "output_bias")
    if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
        raise TypeError(f"dtype: expected a floating-point dtype (float32 or float64), got {dtype}")
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
    c = None if output_bias is None else jnp.full((D,), output_bias, dtype)
    return AutoEncoder(W, V, activation, b, tied, c)


class Overlaps(eqx.Module):
    """Macroscopic order parameters of a network (docs/theory.md §2), each K x K (leading axes allowed).

    ``m_W[k, j]`` / ``m_V[k, j]``: cosine between w^k (v^k) and the j-th principal component.
    ``C[k]`` = v^k . c / D and ``c2`` = |c|^2 / D: the output bias's overlaps (zero without one).
    """

    Q: Float[Array, "*t K K"]
    R: Float[Array, "*t K K"]
    T: Float[Array, "*t K K"]
    T0: Float[Array, "*t K K"]
    m_W: Float[Array, "*t K P"]
    m_V: Float[Array, "*t K P"]
    C: Float[Array, "*t K"]
    c2: Float[Array, "*t"]


def _check_pair(net: AutoEncoder, cov: Covariance):
    if not isinstance(net, AutoEncoder):
        raise TypeError(f"net: expected an AutoEncoder, got {type(net).__name__}")
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")
    if cov.dim != net.D:
        raise ValueError(f"cov: covariance of dimension {cov.dim} does not match the network's D = {net.D}")


def _factors(net: AutoEncoder, cov: Covariance):
    dtype = net.W.dtype
    wt, vs, M, _ = network_factors(net.W, net.decoder, cov.eigvecs.astype(dtype), cov.n_bulk)
    return wt, vs, M


def overlaps(net: AutoEncoder, cov: Covariance) -> Overlaps:
    """Order parameters Q, R, T, T0, the cosine overlaps with the leading K PCs and the output bias's
    overlaps C, c2."""
    _check_pair(net, cov)
    dtype = net.W.dtype
    wt, vs, M = _factors(net, cov)
    Q, R, T, T0 = order_parameters(wt, vs, M, cov.eigvals.astype(dtype), cov.bulk.astype(dtype), net.D)
    P = min(net.K, cov.n_modes)
    wnorm = jnp.linalg.norm(net.W, axis=1, keepdims=True)
    vnorm = jnp.linalg.norm(net.decoder, axis=1, keepdims=True) / jnp.sqrt(jnp.asarray(net.D, dtype))
    m_W = wt[:, :P] / jnp.where(wnorm > 0, wnorm, 1)
    m_V = vs[:, :P] / jnp.where(vnorm > 0, vnorm, 1)
    if net.c is None:
        C, c2 = jnp.zeros((net.K,), dtype), jnp.zeros((), dtype)
    else:
        D = jnp.asarray(net.D, dtype)
        C, c2 = net.decoder @ net.c / D, net.c @ net.c / D
    return Overlaps(Q, R, T, T0, m_W, m_V, C, c2)


def pmse(net: AutoEncoder, cov: Covariance) -> Float[Array, ""]:
    """Population error E[|x - xhat|^2] / (2D) for x ~ N(0, cov), exact (docs/theory.md §2)."""
    _check_pair(net, cov)
    dtype = net.W.dtype
    ov = overlaps(net, cov)
    C, c2 = (None, None) if net.c is None else (ov.C, ov.c2)
    return pmse_from_overlaps(net.activation, cov.trace.astype(dtype), net.D, ov.Q, ov.R, ov.T0, net.b, C=C, c2=c2)


def pmse_mc(net: AutoEncoder, samples: Float[ArrayLike, "n D"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Monte-Carlo estimate of pmse on given samples (n, D): (mean, standard error of the mean)."""
    samples = jnp.asarray(samples, net.W.dtype)
    if samples.ndim != 2 or samples.shape[1] != net.D:
        raise ValueError(f"samples: expected shape (n, {net.D}), got {samples.shape}")
    losses = jax.vmap(net.loss)(samples) / net.D
    n = samples.shape[0]
    return losses.mean(), losses.std(ddof=1) / jnp.sqrt(n) if n > 1 else jnp.zeros((), losses.dtype)
