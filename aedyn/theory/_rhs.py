"""The right-hand side of the equations of motion (docs/theory.md §3, §6).

Every mode's factor z_tau = (wt_tau, vs_tau) follows a linear equation whose matrix depends on
the mode only through rho_tau:

    d wt_tau/dt = -eta_W (rho_tau/D) (A_Q wt_tau + A_RT vs_tau)       - kappa wt_tau
    d vs_tau/dt = -eta_V ((rho_tau/D) A_R wt_tau + A_T vs_tau)         - kappa vs_tau

and the bulk moment obeys dM/dt = L M + M L^T with the same matrix L(rho_bulk) (each merged group
of equal eigenvalues likewise, dM_g/dt = L_g M_g + M_g L_g^T with L_g = L(rho_g)). A trained output
bias c (factors cs_tau = c . u_tau / sqrt(D)) adds, with A_C = d pmse / dC (C_k = v^k . c / D),

    d vs_tau/dt += -eta_V A_C cs_tau,      d cs_tau/dt = -eta_c (A_C . vs_tau + cs_tau)

(the gradient flow of pmse in cs; its fixed point c = -sum_k v^k E[g(lambda^k)]). Stacked as
z_tau = (wt_tau, vs_tau[, cs_tau]) these read dz_tau/dt = (L0 + (rho_tau/D) L1) z_tau with two Z x Z
generators (:func:`generator`), and L = L0 + (bulk/D) L1 for the moment. The K x K
coefficient matrices come two ways that agree to rounding:

* ``"gradient"``: automatic differentiation of the closed-form population error
  pmse(Q, R, T0, b, C, c2) (docs/theory.md §3, "Structure": the theory is its gradient flow). A_Q is the
  symmetrised d pmse / dQ, A_R = d pmse / dR, A_RT its transpose, A_T the symmetrised
  d pmse / dT0. For the truncated rule row k comes from the error of units 1..k only.
  Works for every activation, bias, output bias, tied weights.
* ``"stein"``: the hand-written Stein form with closed-form kernels (linear, erf, relu; untied,
  no bias, no output bias), the fast path: A_Q = T0*P - diag(R_kk K3_k - sum_a T0_ka S_ka), A_RT = A_R = -diag(K1),
  A_T = G (lower-triangular parts for the truncated rule).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._defaults import NODES
from .._kernels import gram, mean_slope, mean_value, stein_kernels
from .._order import pmse_from_overlaps
from .._rules import LearningRates
from ._policy import METHODS
from ._state import TheoryState



class TheoryParams(eqx.Module):
    """Arrays the solution depends on (all differentiable, all vmappable).

    Attributes:
        lr: learning rates eta_W, eta_V, eta_b.
        weight_decay: kappa, per unit of t.
        rho: (N,) explicit eigenvalues of the input covariance.
        bulk: () variance of each of the ``n_bulk`` bulk directions.
        n_bulk: number of bulk directions (static).
        rho_g: (G,) eigenvalue of each merged group of modes (the state's ``Mg``), or ``None``.
        n_g: (G,) number of modes in each group (static).
    """

    lr: LearningRates
    weight_decay: Float[Array, "*batch"]
    rho: Float[Array, "*batch N"]
    bulk: Float[Array, "*batch"]
    n_bulk: int = eqx.field(static=True)
    rho_g: Float[Array, "*batch G"] | None = None
    n_g: tuple[int, ...] = eqx.field(static=True, default=())

    @property
    def trace(self):
        tr = jnp.sum(self.rho, axis=-1) + self.bulk * self.n_bulk
        if self.rho_g is not None:
            tr = tr + jnp.sum(self.rho_g * jnp.asarray(self.n_g, self.rho_g.dtype), axis=-1)
        return tr


def _gradient_coefficients(Q, R, T0, b, C, c2, state, params, rule, nodes):
    K = state.K
    act = state.activation
    trace = params.trace
    has_c = C is not None

    def error(Q, R, T0, b, C, mask):
        # pmse of the network restricted to the units with mask 1 (docs/theory.md §2); the output
        # bias stays in every restricted network.
        K1 = mean_slope(act, Q, b, nodes)
        G = gram(act, Q, b, nodes)
        e = (
            trace / (2 * state.D)
            - jnp.sum(mask * jnp.diagonal(R) * K1)
            + 0.5 * jnp.sum(mask[:, None] * mask[None, :] * T0 * G)
        )
        if has_c:
            e = e + jnp.sum(mask * C * mean_value(act, Q, b, nodes)) + 0.5 * c2
        return e

    bb = jnp.zeros((K,), Q.dtype) if b is None else b
    CC = jnp.zeros((K,), Q.dtype) if C is None else C
    grad = jax.grad(
        lambda Q, R, T0, bb, CC, m: error(Q, R, T0, None if b is None else bb, CC if has_c else None, m),
        argnums=(0, 1, 2, 3, 4),
    )
    if rule == "vanilla":
        dQ, dR, dT0, db, dC = grad(Q, R, T0, bb, CC, jnp.ones((K,), Q.dtype))
        AC = dC if has_c else None
        return dQ + dQ.T, dR.T, dR, dT0 + dT0.T, db, AC, AC
    # Truncated: unit k follows the gradient of the error of units 1..k w.r.t. its own parameters,
    # i.e. row k of each derivative of the k-th restricted error; c follows the whole error (k = K).
    masks = (jnp.arange(K)[None, :] <= jnp.arange(K)[:, None]).astype(Q.dtype)
    dQ, dR, dT0, db, dC = jax.vmap(lambda m: grad(Q, R, T0, bb, CC, m))(masks)
    rows = jnp.arange(K)
    AQ = (dQ + jnp.swapaxes(dQ, 1, 2))[rows, rows]
    ART = dR[rows, :, rows]
    AR = dR[rows, rows]
    AT = (dT0 + jnp.swapaxes(dT0, 1, 2))[rows, rows]
    AC, ACc = (dC[rows, rows], dC[-1]) if has_c else (None, None)
    return AQ, ART, AR, AT, db[rows, rows], AC, ACc


def _stein_coefficients(Q, R, T0, state, rule):
    if state.tied or state.b is not None or state.c is not None:
        raise ValueError(
            "method: the Stein form covers untied networks without bias or output bias; use method='gradient'"
        )
    K1, K3, G, P, S = stein_kernels(state.activation, Q)
    K = state.K
    mask = jnp.tril(jnp.ones((K, K), Q.dtype)) if rule == "truncated" else jnp.ones((K, K), Q.dtype)
    c = jnp.diagonal(R) * K3 - jnp.sum(mask * T0 * S, axis=1)
    AQ = mask * T0 * P - jnp.diag(c)
    AR = -jnp.diag(K1)
    return AQ, AR, AR, mask * G, None, None, None


def coefficients_at(p, state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """The coefficients of :func:`coefficients` as a function of ``p = (Q, R, T0, b, C, c2)``
    (``state`` only supplies the static structure): the whole dependence of the flow on the
    state's overlaps."""
    if rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    Q, R, T0, b, C, c2 = p
    if method == "stein":
        return _stein_coefficients(Q, R, T0, state, rule)
    if method == "gradient":
        return _gradient_coefficients(Q, R, T0, b, C, c2, state, params, rule, nodes)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def modes(state: TheoryState) -> Float[Array, "Z N"]:
    """The factors of every explicit mode stacked as columns z_tau = (wt_tau, vs_tau[, cs_tau])
    (vs omitted when tied): the layout of the bulk moment M."""
    parts = [state.wt] + ([] if state.tied else [state.vs]) + ([] if state.c is None else [state.c[None]])
    return jnp.concatenate(parts, axis=0)


def moments(state: TheoryState, params: TheoryParams):
    """(S, S_r): the second moment of the factors over all D directions, S = sum_tau z z^T + M
    (+ sum_g M_g), and the same weighted by the variances, S_r = sum_tau (rho_tau / D) z z^T +
    (bulk / D) M (+ sum_g (rho_g / D) M_g). Every overlap is an entry of one of them
    (docs/theory.md §4, §6)."""
    z = modes(state)
    S = z @ z.T + state.M
    Sr = (z * (params.rho / state.D)[None, :]) @ z.T + (params.bulk / state.D) * state.M
    if state.Mg is not None:
        S = S + jnp.sum(state.Mg, axis=-3)
        Sr = Sr + jnp.tensordot(params.rho_g / state.D, state.Mg, 1)
    return S, Sr


def point_from_moments(S, Sr, b, state: TheoryState):
    """``p = (Q, R, T0, b, C, c2)`` read off the moments of :func:`moments` (linear in S, S_r, b)."""
    K = state.K
    Q = Sr[:K, :K]
    if state.tied:
        R, T0, v = Q, S[:K, :K], slice(0, K)
    else:
        R, T0, v = Sr[K : 2 * K, :K], S[K : 2 * K, K : 2 * K], slice(K, 2 * K)
    C, c2 = (None, None) if state.c is None else (S[v, -1], S[-1, -1])
    return Q, R, T0, b, C, c2


def overlap_point(state: TheoryState, params: TheoryParams):
    """``p = (Q, R, T0, b, C, c2)``: everything the coefficients depend on (b is None without
    bias, C and c2 None without output bias)."""
    S, Sr = moments(state, params)
    return point_from_moments(S, Sr, state.b, state)


def coefficients(state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """The K x K matrices (A_Q, A_RT, A_R, A_T), the bias gradient d pmse / db (K,) and, with an
    output bias, A_C = d pmse / dC for the units and for c (each (K,); else None)."""
    return coefficients_at(overlap_point(state, params), state, params, rule=rule, method=method, nodes=nodes)


def rhs(t, state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """d state / dt (per unit of t = steps / D); a pure function for ``diffrax.ODETerm``."""
    return flow(state, params, coefficients(state, params, rule=rule, method=method, nodes=nodes))


def generator(state: TheoryState, params: TheoryParams, coeffs):
    """(L0, L1), each Z x Z: with the coefficients given, every mode's factors obey
    dz_tau/dt = (L0 + (rho_tau / D) L1) z_tau, and the bulk moment dM/dt = L M + M L^T with
    L = L0 + (bulk / D) L1 (Z = 2K untied, K tied, +1 with an output bias)."""
    AQ, ART, AR, AT, _, AC, ACc = coeffs
    eW, eV, ec = params.lr.W, params.lr.V, params.lr.c
    K = state.K
    if state.tied:
        # vs = wt: both uses of w^k contribute (docs/theory.md §1, "tied").
        L1 = -eW * (AQ + ART + AR)
        L0 = -eW * AT
    else:
        zero = jnp.zeros((K, K), AQ.dtype)
        L1 = jnp.block([[-eW * AQ, -eW * ART], [-eV * AR, zero]])
        L0 = jnp.block([[zero, zero], [zero, -eV * AT]])
    n = L0.shape[0]
    L0 = L0 - params.weight_decay * jnp.eye(n, dtype=L0.dtype)
    if state.c is not None:
        # Output bias: the decoder's extra term -eta A_C cs and c's own equation, one more row.
        rate = eW if state.tied else eV
        col = jnp.zeros((n, 1), L0.dtype).at[n - K : n, 0].set(-rate * AC)
        row = jnp.zeros((1, n), L0.dtype).at[0, n - K : n].set(-ec * ACc)
        L0 = jnp.block([[L0, col], [row, -ec * jnp.ones((1, 1), L0.dtype)]])
        L1 = jnp.pad(L1, ((0, 1), (0, 1)))
    return L0, L1


def split_modes(like: TheoryState, z):
    """(wt, vs, cs) of stacked factors z (Z, ...) in the layout of :func:`modes` (None where absent)."""
    K = like.K
    wt = z[:K]
    vs = None if like.tied else z[K : 2 * K]
    cs = None if like.c is None else z[-1]
    return wt, vs, cs


def moment_stack(state: TheoryState) -> Float[Array, "G1 Z Z"]:
    """The bulk moment, then the G merged groups' moments: (1 + G, Z, Z)."""
    return state.M[None] if state.Mg is None else jnp.concatenate([state.M[None], state.Mg])


def moment_rates(params: TheoryParams, D: int):
    """(rates (1 + G,): variance / D of the bulk and of each group, active (1 + G,): whether each
    moment moves; the bulk's does not when there is no bulk direction)."""
    rb = jnp.reshape(params.bulk / D, (1,))
    if params.rho_g is None:
        return rb, jnp.asarray([params.n_bulk > 0])
    return jnp.concatenate([rb, params.rho_g / D]), jnp.asarray([params.n_bulk > 0] + [True] * len(params.n_g))


def moment_flow(L0, L1, Ms, rates, active):
    """dM/dt = L M + M L^T for every moment of a stack, L = L0 + rate L1 (zero where inactive)
    (docs/theory.md §4, §6)."""
    Ls = L0[None] + rates[:, None, None] * L1[None]
    return jnp.where(active[:, None, None], Ls @ Ms + Ms @ jnp.swapaxes(Ls, 1, 2), jnp.zeros_like(Ms))


def flow(state: TheoryState, params: TheoryParams, coeffs) -> TheoryState:
    """d state / dt for given coefficients: linear in the factors and the moments, mode by mode."""
    L0, L1 = generator(state, params, coeffs)
    z = modes(state)
    dz = L0 @ z + (params.rho / state.D)[None, :] * (L1 @ z)
    dMs = moment_flow(L0, L1, moment_stack(state), *moment_rates(params, state.D))
    dwt, dvs, dcs = split_modes(state, dz)
    dbias = None if state.b is None else -params.lr.b * coeffs[4]
    dMg = None if state.Mg is None else dMs[1:]
    return TheoryState(dwt, dvs, dMs[0], dbias, state.activation, state.tied, state.D, dcs, dMg, state.groups)


def theory_pmse(state: TheoryState, params: TheoryParams, nodes=NODES) -> Float[Array, ""]:
    """The exact population error of a state."""
    Q, R, T0, b, C, c2 = overlap_point(state, params)
    return pmse_from_overlaps(state.activation, params.trace, state.D, Q, R, T0, b, nodes, C=C, c2=c2)
