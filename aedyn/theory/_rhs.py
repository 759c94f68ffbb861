"""The right-hand side of the equations of motion (docs/theory.md §3, §6).

Every mode's factor z_tau = (wt_tau, vs_tau) follows a linear equation whose matrix depends on
the mode only through rho_tau:

    d wt_tau/dt = -eta_W (rho_tau/D) (A_Q wt_tau + A_RT vs_tau)       - kappa wt_tau
    d vs_tau/dt = -eta_V ((rho_tau/D) A_R wt_tau + A_T vs_tau)         - kappa vs_tau

and the bulk moment obeys dM/dt = L M + M L^T with the same matrix L(rho_bulk). A trained output
bias c (factors cs_tau = c . u_tau / sqrt(D)) adds, with A_C = d pmse / dC (C_k = v^k . c / D),

    d vs_tau/dt += -eta_V A_C cs_tau,      d cs_tau/dt = -eta_c (A_C . vs_tau + cs_tau)

(the gradient flow of pmse in cs; its fixed point c = -sum_k v^k E[g(lambda^k)]). The K x K
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
from .._order import bias_overlaps, order_parameters, pmse_from_overlaps
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
    """

    lr: LearningRates
    weight_decay: Float[Array, "*batch"]
    rho: Float[Array, "*batch N"]
    bulk: Float[Array, "*batch"]
    n_bulk: int = eqx.field(static=True)

    @property
    def trace(self):
        return jnp.sum(self.rho) + self.bulk * self.n_bulk


def overlaps_of(state: TheoryState, params: TheoryParams):
    """(Q, R, T, T0) of a state."""
    return order_parameters(state.wt, state.decoder_factors, state.full_moment(), params.rho, params.bulk, state.D)


def bias_overlaps_of(state: TheoryState):
    """(C, c2) of a state with an output bias (C_k = v^k . c / D, c2 = |c|^2 / D), else (None, None)."""
    if state.c is None:
        return None, None
    return bias_overlaps(state.decoder_factors, state.c, state.full_moment())


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


def overlap_point(state: TheoryState, params: TheoryParams):
    """``p = (Q, R, T0, b, C, c2)``: everything the coefficients depend on (b is None without
    bias, C and c2 None without output bias)."""
    Q, R, _, T0 = overlaps_of(state, params)
    C, c2 = bias_overlaps_of(state)
    return Q, R, T0, state.b, C, c2


def coefficients(state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """The K x K matrices (A_Q, A_RT, A_R, A_T), the bias gradient d pmse / db (K,) and, with an
    output bias, A_C = d pmse / dC for the units and for c (each (K,); else None)."""
    return coefficients_at(overlap_point(state, params), state, params, rule=rule, method=method, nodes=nodes)


def rhs(t, state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """d state / dt (per unit of t = steps / D); a pure function for ``diffrax.ODETerm``."""
    return flow(state, params, coefficients(state, params, rule=rule, method=method, nodes=nodes))


def flow(state: TheoryState, params: TheoryParams, coeffs) -> TheoryState:
    """d state / dt for given coefficients: linear in the factors and the moment, mode by mode."""
    AQ, ART, AR, AT, db, AC, ACc = coeffs
    D = state.D
    eW, eV, eb, ec = params.lr.W, params.lr.V, params.lr.b, params.lr.c
    kappa = params.weight_decay
    r = (params.rho / D)[None, :]  # (1, N)
    rb = params.bulk / D
    wt = state.wt
    cs = state.c
    K = state.K
    dcs = None
    if state.tied:
        # vs = wt: both uses of w^k contribute (docs/theory.md §1, "tied").
        A = AQ + ART + AR
        dwt = -eW * (r * (A @ wt) + AT @ wt) - kappa * wt
        L = -eW * (rb * A + AT) - kappa * jnp.eye(K, dtype=wt.dtype)
        dvs = None
        dec = wt
    else:
        vs = state.vs
        dwt = -eW * r * (AQ @ wt + ART @ vs) - kappa * wt
        dvs = -eV * (r * (AR @ wt) + AT @ vs) - kappa * vs
        L = jnp.block([[-eW * rb * AQ, -eW * rb * ART], [-eV * rb * AR, -eV * AT]])
        L = L - kappa * jnp.eye(2 * K, dtype=wt.dtype)
        dec = vs
    if cs is not None:
        # Output bias: the decoder's extra term and c's own equation; one more row in L.
        n = L.shape[0]
        rate = eW if state.tied else eV
        if state.tied:
            dwt = dwt - rate * AC[:, None] * cs[None, :]
        else:
            dvs = dvs - rate * AC[:, None] * cs[None, :]
        dcs = -ec * (ACc @ dec + cs)
        col = jnp.zeros((n, 1), wt.dtype).at[n - K : n, 0].set(-rate * AC)
        row = jnp.zeros((1, n), wt.dtype).at[0, n - K : n].set(-ec * ACc)
        L = jnp.block([[L, col], [row, -ec * jnp.ones((1, 1), wt.dtype)]])
    M = state.M
    dM = L @ M + M @ L.T
    dM = jnp.where(params.n_bulk > 0, dM, jnp.zeros_like(dM))
    dbias = None if state.b is None else -eb * db
    return TheoryState(dwt, dvs, dM, dbias, state.activation, state.tied, state.D, dcs)


def theory_pmse(state: TheoryState, params: TheoryParams, nodes=NODES) -> Float[Array, ""]:
    """The exact population error of a state."""
    Q, R, _, T0 = overlaps_of(state, params)
    C, c2 = bias_overlaps_of(state)
    return pmse_from_overlaps(state.activation, params.trace, state.D, Q, R, T0, state.b, nodes, C=C, c2=c2)
