"""The right-hand side of the equations of motion (docs/theory.md §3, §6).

Every mode's factor z_tau = (wt_tau, vs_tau) follows a linear equation whose matrix depends on
the mode only through rho_tau:

    d wt_tau/dt = -eta_W (rho_tau/D) (A_Q wt_tau + A_RT vs_tau)       - kappa wt_tau
    d vs_tau/dt = -eta_V ((rho_tau/D) A_R wt_tau + A_T vs_tau)         - kappa vs_tau

and the bulk moment obeys dM/dt = L M + M L^T with the same matrix L(rho_bulk). The K x K
coefficient matrices come two ways that agree to rounding:

* ``"gradient"``: automatic differentiation of the closed-form population error
  pmse(Q, R, T0, b) (docs/theory.md §3, "Structure": the theory is its gradient flow). A_Q is the
  symmetrised d pmse / dQ, A_R = d pmse / dR, A_RT its transpose, A_T the symmetrised
  d pmse / dT0. For the truncated rule row k comes from the error of units 1..k only.
  Works for every activation, bias, tied weights.
* ``"stein"``: the hand-written Stein form with closed-form kernels (linear, erf, relu; untied,
  no bias), the fast path: A_Q = T0*P - diag(R_kk K3_k - sum_a T0_ka S_ka), A_RT = A_R = -diag(K1),
  A_T = G (lower-triangular parts for the truncated rule).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._defaults import NODES
from .._kernels import gram, mean_slope, stein_kernels
from .._order import order_parameters, pmse_from_overlaps
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


def _gradient_coefficients(Q, R, T0, b, state, params, rule, nodes):
    K = state.K
    act = state.activation
    trace = params.trace

    def error(Q, R, T0, b, mask):
        # pmse of the network restricted to the units with mask 1 (docs/theory.md §2).
        K1 = mean_slope(act, Q, b, nodes)
        G = gram(act, Q, b, nodes)
        return (
            trace / (2 * state.D)
            - jnp.sum(mask * jnp.diagonal(R) * K1)
            + 0.5 * jnp.sum(mask[:, None] * mask[None, :] * T0 * G)
        )

    bb = jnp.zeros((K,), Q.dtype) if b is None else b
    grad = jax.grad(lambda Q, R, T0, bb, m: error(Q, R, T0, None if b is None else bb, m), argnums=(0, 1, 2, 3))
    if rule == "vanilla":
        dQ, dR, dT0, db = grad(Q, R, T0, bb, jnp.ones((K,), Q.dtype))
        return dQ + dQ.T, dR.T, dR, dT0 + dT0.T, db
    # Truncated: unit k follows the gradient of the error of units 1..k w.r.t. its own parameters,
    # i.e. row k of each derivative of the k-th restricted error.
    masks = (jnp.arange(K)[None, :] <= jnp.arange(K)[:, None]).astype(Q.dtype)
    dQ, dR, dT0, db = jax.vmap(lambda m: grad(Q, R, T0, bb, m))(masks)
    rows = jnp.arange(K)
    AQ = (dQ + jnp.swapaxes(dQ, 1, 2))[rows, rows]
    ART = dR[rows, :, rows]
    AR = dR[rows, rows]
    AT = (dT0 + jnp.swapaxes(dT0, 1, 2))[rows, rows]
    return AQ, ART, AR, AT, db[rows, rows]


def _stein_coefficients(Q, R, T0, state, rule):
    if state.tied or state.b is not None:
        raise ValueError("method: the Stein form covers untied networks without bias; use method='gradient'")
    K1, K3, G, P, S = stein_kernels(state.activation, Q)
    K = state.K
    mask = jnp.tril(jnp.ones((K, K), Q.dtype)) if rule == "truncated" else jnp.ones((K, K), Q.dtype)
    c = jnp.diagonal(R) * K3 - jnp.sum(mask * T0 * S, axis=1)
    AQ = mask * T0 * P - jnp.diag(c)
    AR = -jnp.diag(K1)
    return AQ, AR, AR, mask * G, None


def coefficients_at(p, state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """The coefficients of :func:`coefficients` as a function of ``p = (Q, R, T0, b)`` (``state``
    only supplies the static structure): the whole dependence of the flow on the state's overlaps."""
    if rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    Q, R, T0, b = p
    if method == "stein":
        return _stein_coefficients(Q, R, T0, state, rule)
    if method == "gradient":
        return _gradient_coefficients(Q, R, T0, b, state, params, rule, nodes)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def overlap_point(state: TheoryState, params: TheoryParams):
    """``p = (Q, R, T0, b)``: everything the coefficients depend on (b is None without bias)."""
    Q, R, _, T0 = overlaps_of(state, params)
    return Q, R, T0, state.b


def coefficients(state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """The K x K matrices (A_Q, A_RT, A_R, A_T) and the bias gradient of the mode equations."""
    return coefficients_at(overlap_point(state, params), state, params, rule=rule, method=method, nodes=nodes)


def rhs(t, state: TheoryState, params: TheoryParams, *, rule="vanilla", method="gradient", nodes=NODES):
    """d state / dt (per unit of t = steps / D); a pure function for ``diffrax.ODETerm``."""
    return flow(state, params, coefficients(state, params, rule=rule, method=method, nodes=nodes))


def flow(state: TheoryState, params: TheoryParams, coeffs) -> TheoryState:
    """d state / dt for given coefficients: linear in the factors and the moment, mode by mode."""
    AQ, ART, AR, AT, db = coeffs
    D = state.D
    eW, eV, eb = params.lr.W, params.lr.V, params.lr.b
    kappa = params.weight_decay
    r = (params.rho / D)[None, :]  # (1, N)
    rb = params.bulk / D
    wt = state.wt
    if state.tied:
        # vs = wt: both uses of w^k contribute (docs/theory.md §1, "tied").
        A = AQ + ART + AR
        dwt = -eW * (r * (A @ wt) + AT @ wt) - kappa * wt
        L = -eW * (rb * A + AT) - kappa * jnp.eye(state.K, dtype=wt.dtype)
        dvs = None
    else:
        vs = state.vs
        dwt = -eW * r * (AQ @ wt + ART @ vs) - kappa * wt
        dvs = -eV * (r * (AR @ wt) + AT @ vs) - kappa * vs
        L = jnp.block([[-eW * rb * AQ, -eW * rb * ART], [-eV * rb * AR, -eV * AT]])
        L = L - kappa * jnp.eye(2 * state.K, dtype=wt.dtype)
    M = state.M
    dM = L @ M + M @ L.T
    dM = jnp.where(params.n_bulk > 0, dM, jnp.zeros_like(dM))
    dbias = None if state.b is None else -eb * db
    return TheoryState(dwt, dvs, dM, dbias, state.activation, state.tied, state.D)


def theory_pmse(state: TheoryState, params: TheoryParams, nodes=NODES) -> Float[Array, ""]:
    """The exact population error of a state."""
    Q, R, _, T0 = overlaps_of(state, params)
    return pmse_from_overlaps(state.activation, params.trace, state.D, Q, R, T0, state.b, nodes)
