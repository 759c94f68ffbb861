"""The theory's state in factor form (docs/theory.md §4, §6).

For each of the N explicit eigenmodes u_tau of the covariance the state holds the projections
wt_tau = W u_tau and vs_tau = V u_tau / sqrt(D) (both O(1) along a spike); the D - N bulk
directions of equal variance enter through their exact second moment M = sum_bulk z z^T of
z = (wt, vs), a 2K x 2K matrix (K x K for tied weights, where vs = wt). Every density of the paper
(q, r, t) and every overlap (Q, R, T, T0) derives from these factors, so they stay PSD. A trained
output bias c adds the factors cs_tau = c . u_tau / sqrt(D) and one row and column to M.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._activations import Activation, get_activation
from .._checks import check_int, check_key, check_number, require_x64
from .._data import Covariance
from .._defaults import INIT_SCALE
from .._model import AutoEncoder, Overlaps
from .._order import bias_overlaps, network_factors, order_parameters


class TheoryState(eqx.Module):
    """Factor-form state of the theory.

    Attributes:
        wt: (K, N) encoder projections on the explicit modes.
        vs: (K, N) decoder projections / sqrt(D); ``None`` for tied weights (then vs = wt).
        M: (Z, Z) bulk second moment of (wt, vs[, cs]): Z = 2K, or K when tied (+1 with c).
        b: (K,) bias, or ``None``.
        activation, tied, D: the network's activation, tying and input dimension (static).
        c: (N,) output-bias factors cs_tau = c . u_tau / sqrt(D), or ``None`` (no output bias).
    """

    wt: Float[Array, "*batch K N"]
    vs: Float[Array, "*batch K N"] | None
    M: Float[Array, "*batch Z Z"]
    b: Float[Array, "*batch K"] | None
    activation: Activation = eqx.field(static=True)
    tied: bool = eqx.field(static=True)
    D: int = eqx.field(static=True)
    c: Float[Array, "*batch N"] | None = None

    @property
    def K(self) -> int:
        return self.wt.shape[0]

    @property
    def decoder_factors(self):
        return self.wt if self.tied else self.vs

    def full_moment(self):
        """The 2K (+1 with c) square bulk moment (expanded from K (+1) when tied)."""
        if self.tied:
            K = self.K
            idx = jnp.concatenate([jnp.arange(K), jnp.arange(K), jnp.arange(K, self.M.shape[-1])])
            return self.M[idx][:, idx]
        return self.M

    def scale(self, s) -> "TheoryState":
        """The state of the network s * (W, V): factors times s, moment times s^2 (biases b, c kept)."""
        M = self.M * s**2
        if self.c is not None:  # the output bias's row and column: times s, its corner kept
            M = M.at[-1, :].set(self.M[-1, :] * s).at[:, -1].set(self.M[:, -1] * s).at[-1, -1].set(self.M[-1, -1])
        return TheoryState(
            self.wt * s,
            None if self.vs is None else self.vs * s,
            M,
            self.b,
            self.activation,
            self.tied,
            self.D,
            self.c,
        )


def init_state(net: AutoEncoder, cov: Covariance, dtype=jnp.float64) -> TheoryState:
    """The exact factor-form state of a network (computed in ``dtype``, float64 by default)."""
    if not isinstance(net, AutoEncoder):
        raise TypeError(f"net: expected an AutoEncoder, got {type(net).__name__}")
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")
    if jnp.dtype(dtype) == jnp.float64:
        require_x64("aedyn.theory.init_state")
    if cov.dim != net.D:
        raise ValueError(f"cov: covariance of dimension {cov.dim} does not match the network's D = {net.D}")
    W = net.W.astype(dtype)
    dec = net.decoder.astype(dtype)
    c = None if net.c is None else net.c.astype(dtype)
    wt, vs, M, cs = network_factors(W, dec, cov.eigvecs.astype(dtype), cov.n_bulk, c)
    K = net.K
    if net.tied:
        keep = jnp.concatenate([jnp.arange(K), jnp.arange(2 * K, M.shape[0])])
        vs, M = None, M[keep][:, keep]
    b = None if net.b is None else net.b.astype(dtype)
    return TheoryState(wt, vs, M, b, net.activation, net.tied, net.D, cs)


def init_state_random(
    key: PRNGKeyArray,
    cov: Covariance,
    K: int,
    *,
    activation="erf",
    scale: float = INIT_SCALE,
    tied: bool = False,
    bias: float | None = None,
    dtype=jnp.float64,
) -> TheoryState:
    """A state drawn from the distribution of the order parameters of ``init_autoencoder``.

    Same law as ``init_state(init_autoencoder(...), cov)`` (entries N(0, scale^2), tied:
    N(0, scale^2 / D)), drawn at O(K D) cost without forming the network.
    """
    key = check_key(key)
    K = check_int(K, "K", lo=1)
    check_number(scale, "scale", lo=0.0)
    if jnp.dtype(dtype) == jnp.float64:
        require_x64("aedyn.theory.init_state_random")
    D, N, nb = cov.dim, cov.n_modes, cov.n_bulk
    if K > D:
        raise ValueError(f"K: K = {K} hidden units exceed the input dimension D = {D}")
    kw, kv, kb = jax.random.split(key, 3)
    sw = scale / jnp.sqrt(D) if tied else scale
    wt = sw * jax.random.normal(kw, (K, N), dtype)
    # Bulk moment: sum over nb orthonormal directions of Gaussian factors, a Wishart matrix.
    nz = K if tied else 2 * K
    Z = jax.random.normal(kb, (nz, nb), dtype)
    Zs = jnp.concatenate([Z[:K] * sw, Z[K:] * scale / jnp.sqrt(D)]) if not tied else Z * sw
    M = Zs @ Zs.T
    vs = None if tied else scale / jnp.sqrt(D) * jax.random.normal(kv, (K, N), dtype)
    b = None if bias is None else jnp.full((K,), bias, dtype)
    return TheoryState(wt, vs, M, b, get_activation(activation), tied, D)


def state_overlaps(state: TheoryState, rho, bulk) -> Overlaps:
    """Q, R, T, T0 and PC cosines of a state, for eigenvalues rho (N,) and bulk variance."""
    vs = state.decoder_factors
    M = state.full_moment()
    Q, R, T, T0 = order_parameters(state.wt, vs, M, rho, bulk, state.D)
    K = state.K
    P = min(K, state.wt.shape[1])
    wn = jnp.sqrt(jnp.sum(state.wt**2, 1) + jnp.diagonal(M)[:K])
    vn = jnp.sqrt(jnp.sum(vs**2, 1) + jnp.diagonal(M)[K : 2 * K])
    m_W = state.wt[:, :P] / jnp.where(wn > 0, wn, 1)[:, None]
    m_V = vs[:, :P] / jnp.where(vn > 0, vn, 1)[:, None]
    if state.c is None:
        C, c2 = jnp.zeros((K,), Q.dtype), jnp.zeros((), Q.dtype)
    else:
        C, c2 = bias_overlaps(vs, state.c, M)
    return Overlaps(Q, R, T, T0, m_W, m_V, C, c2)
