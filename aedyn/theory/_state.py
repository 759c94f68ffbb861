"""The theory's state in factor form (docs/theory.md §4, §6).

For each of the N explicit eigenmodes u_tau of the covariance the state holds the projections
wt_tau = W u_tau and vs_tau = V u_tau / sqrt(D) (both O(1) along a spike); the D - N bulk
directions of equal variance enter through their exact second moment M = sum_bulk z z^T of
z = (wt, vs), a 2K x 2K matrix (K x K for tied weights, where vs = wt). Every density of the paper
(q, r, t) and every overlap (Q, R, T, T0) derives from these factors, so they stay PSD. A trained
output bias c adds the factors cs_tau = c . u_tau / sqrt(D) and one row and column to M.

Groups of explicit modes with equal eigenvalues can be merged the same way (docs/theory.md §6): a
group's modes enter only through their second moment M_g = sum_group z z^T, so a spectrum with
repeated values costs by its number of distinct values. ``TheoryState.groups`` lists the merged
runs of the covariance's explicit modes; ``Mg`` holds their moments.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._activations import Activation, get_activation
from .._checks import check_int, check_key, check_number, is_concrete, require_x64
from .._data import Covariance
from .._defaults import INIT_SCALE, MERGE_RTOL
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
        Mg: (G, Z, Z) second moments of the merged groups of modes, or ``None`` (no group).
        groups: the merged runs ``(start, stop)`` of the covariance's explicit modes (indices into
            ``cov.eigvals``; static). The N columns of ``wt``, ``vs``, ``c`` are the other modes,
            in order.
    """

    wt: Float[Array, "*batch K N"]
    vs: Float[Array, "*batch K N"] | None
    M: Float[Array, "*batch Z Z"]
    b: Float[Array, "*batch K"] | None
    activation: Activation = eqx.field(static=True)
    tied: bool = eqx.field(static=True)
    D: int = eqx.field(static=True)
    c: Float[Array, "*batch N"] | None = None
    Mg: Float[Array, "*batch G Z Z"] | None = None
    groups: tuple[tuple[int, int], ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        shape = getattr(self.Mg, "shape", None)
        G = 0 if self.Mg is None else (shape[-3] if shape is not None and len(shape) >= 3 else None)
        if G is not None and G != len(self.groups):
            raise ValueError(f"Mg: {G} group moments for {len(self.groups)} groups {self.groups}")

    @property
    def K(self) -> int:
        return self.wt.shape[0]

    @property
    def decoder_factors(self):
        return self.wt if self.tied else self.vs

    def _expand(self, M):
        if self.tied:
            K = self.K
            idx = jnp.concatenate([jnp.arange(K), jnp.arange(K), jnp.arange(K, M.shape[-1])])
            return M[..., idx, :][..., :, idx]
        return M

    def full_moment(self):
        """The 2K (+1 with c) square bulk moment (expanded from K (+1) when tied)."""
        return self._expand(self.M)

    def moment_sum(self):
        """The bulk moment plus the merged groups' moments, expanded as :meth:`full_moment`: the
        second moment of the factors over all directions that are not explicit columns."""
        M = self.M if self.Mg is None else self.M + jnp.sum(self.Mg, axis=-3)
        return self._expand(M)

    def scale(self, s) -> "TheoryState":
        """The state of the network s * (W, V): factors times s, moments times s^2 (biases b, c kept)."""

        def moment(M):
            out = M * s**2
            if self.c is not None:  # the output bias's row and column: times s, its corner kept
                out = out.at[..., -1, :].set(M[..., -1, :] * s).at[..., :, -1].set(M[..., :, -1] * s)
                out = out.at[..., -1, -1].set(M[..., -1, -1])
            return out

        return TheoryState(
            self.wt * s,
            None if self.vs is None else self.vs * s,
            moment(self.M),
            self.b,
            self.activation,
            self.tied,
            self.D,
            self.c,
            None if self.Mg is None else moment(self.Mg),
            self.groups,
        )


def check_groups(groups, N: int, name: str = "groups") -> tuple[tuple[int, int], ...]:
    """Runs ``(start, stop)`` of explicit modes: increasing, disjoint, within 0..N, each of two or more."""
    try:
        out = tuple((int(a), int(b)) for a, b in groups)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a sequence of (start, stop) index pairs, got {groups!r}") from err
    last = 0
    for a, b in out:
        if not (last <= a and a + 2 <= b <= N):
            raise ValueError(
                f"{name}: runs must be increasing, disjoint, of two or more modes and within the N = {N} "
                f"explicit modes, got {out}"
            )
        last = b
    return out


def explicit_modes(groups, N: int) -> np.ndarray:
    """Indices of the covariance's explicit modes that a state with ``groups`` keeps as columns."""
    keep = np.ones(N, bool)
    for a, b in groups:
        keep[a:b] = False
    return np.nonzero(keep)[0]


def group_members(groups) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the merged modes, the group of each): static index arrays for segment sums."""
    members = np.concatenate([np.arange(a, b) for a, b in groups]) if groups else np.zeros(0, int)
    ids = np.concatenate([np.full(b - a, g) for g, (a, b) in enumerate(groups)]) if groups else np.zeros(0, int)
    return members, ids


def merge_modes(state: TheoryState, cov: Covariance, *, rtol: float = MERGE_RTOL) -> TheoryState:
    """The same state with runs of explicit modes of equal eigenvalue merged into group moments
    M_g = sum_group z z^T (exact: docs/theory.md §6), chosen by :func:`aedyn.theory.mode_groups`.

    ``rtol`` > MERGE_RTOL bins nearby eigenvalues too: an approximation (each bin then evolves at
    its mean eigenvalue, the trace is kept); docs/theory.md §6 states its measured error. A state
    that already has groups is returned unchanged."""
    if not isinstance(state, TheoryState):
        raise TypeError(f"state: expected an aedyn.theory.TheoryState, got {type(state).__name__}")
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")
    check_number(rtol, "rtol", lo=0.0)
    if state.groups:
        return state
    if state.wt.shape[-1] != cov.n_modes:
        raise ValueError(f"cov: the state has {state.wt.shape[-1]} explicit modes, the covariance {cov.n_modes}")
    if not is_concrete(cov.eigvals):
        return state  # the layout is static: it needs concrete eigenvalues
    return merge_layout(state, np.asarray(cov.eigvals), rtol)


def merge_layout(state: TheoryState, eigvals: np.ndarray, rtol: float) -> TheoryState:
    """:func:`merge_modes` for host eigenvalues ``eigvals`` (N,) of the state's explicit modes (a
    covariance built under a trace has traced eigenvalues, but its layout is known on the host)."""
    from ._policy import mode_groups

    groups = mode_groups(eigvals, state.K, state.M.shape[-1], float(rtol))
    return _grouped(state, groups)


def _grouped(state: TheoryState, groups) -> TheoryState:
    if not groups:
        return state
    from ._rhs import modes, split_modes

    z = modes(state)
    keep = explicit_modes(groups, z.shape[-1])
    members, ids = group_members(groups)
    zm = z[:, members]
    Mg = jax.ops.segment_sum(zm.T[:, :, None] * zm.T[:, None, :], ids, len(groups))
    wt, vs, cs = split_modes(state, z[:, keep])
    return TheoryState(wt, vs, state.M, state.b, state.activation, state.tied, state.D, cs, Mg, tuple(groups))


def init_state(net: AutoEncoder, cov: Covariance, dtype=jnp.float64, *, merge_rtol: float | None = None) -> TheoryState:
    """The exact factor-form state of a network (computed in ``dtype``, float64 by default).

    ``merge_rtol``: None keeps every explicit mode; a number merges runs of equal eigenvalues
    (:func:`merge_modes`; MERGE_RTOL: exact)."""
    if not isinstance(net, AutoEncoder):
        raise TypeError(f"net: expected an AutoEncoder, got {type(net).__name__}")
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")
    if merge_rtol is not None:
        check_number(merge_rtol, "merge_rtol", lo=0.0)
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
    state = TheoryState(wt, vs, M, b, net.activation, net.tied, net.D, cs)
    return state if merge_rtol is None else merge_modes(state, cov, rtol=merge_rtol)


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


def state_overlaps(state: TheoryState, rho, bulk, rho_g=None) -> Overlaps:
    """Q, R, T, T0 and PC cosines of a state, for eigenvalues rho (N,), bulk variance and, with
    merged groups, their eigenvalues rho_g (G,)."""
    vs = state.decoder_factors
    M = state.full_moment()
    Q, R, T, T0 = order_parameters(state.wt, vs, M, rho, bulk, state.D)
    K = state.K
    Mall = state.moment_sum()
    if state.Mg is not None:  # the groups' share: (rho_g / D) M_g in Q, R, T; M_g in T0
        if rho_g is None:
            raise ValueError(f"rho_g: the state merges {len(state.groups)} groups of modes; pass their eigenvalues")
        Mr = state._expand(jnp.tensordot(rho_g / state.D, state.Mg, 1))
        Q = Q + Mr[:K, :K]
        R = R + Mr[K : 2 * K, :K]
        T = T + Mr[K : 2 * K, K : 2 * K]
        T0 = T0 + (Mall - M)[K : 2 * K, K : 2 * K]
    P = min(K, state.wt.shape[1])
    wn = jnp.sqrt(jnp.sum(state.wt**2, 1) + jnp.diagonal(Mall)[:K])
    vn = jnp.sqrt(jnp.sum(vs**2, 1) + jnp.diagonal(Mall)[K : 2 * K])
    m_W = state.wt[:, :P] / jnp.where(wn > 0, wn, 1)[:, None]
    m_V = vs[:, :P] / jnp.where(vn > 0, vn, 1)[:, None]
    if state.c is None:
        C, c2 = jnp.zeros((K,), Q.dtype), jnp.zeros((), Q.dtype)
    else:
        C, c2 = bias_overlaps(vs, state.c, Mall)
    return Overlaps(Q, R, T, T0, m_W, m_V, C, c2)
