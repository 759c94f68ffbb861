"""Implicit steps for N-mode states at O(N K^2) per step (docs/theory.md §4).

With the coefficients frozen, the flow is linear mode by mode: dz_tau/dt = B_tau z_tau with
B_tau = L0 + (rho_tau / D) L1 (Z x Z, :func:`generator`), and dM/dt = L M + M L^T for the bulk
moment. All other dependence goes through the P numbers p = (Q, R, T0, b, C, c2), which are entries
of two Z x Z moments of the factors (:func:`moments`). So the Jacobian of the right-hand side is

    J = blockdiag(B_1, ..., B_N, B_M, 0_b) + U V,

V = dp/dstate (P x n: the linearised moments) and U = dflow/dp (n x P: the derivatives of L0, L1
and the bias drift along p, applied to each mode's factors). :func:`factor` and
:func:`solve_factored` solve (I - gamma J) x = r: they invert the N small blocks and apply the
Woodbury identity through a P x P capacitance matrix. :class:`aedyn.theory.Rodas5` (the default
implicit phase) uses them for its stages; :class:`StructuredChord` (a drop-in for diffrax's
``VeryChord`` root finder) for the implicit stages of diffrax's Kvaerno5. U and V are never
formed: both act through Z x Z products per mode, so a factorisation costs O(N Z^4) (the
capacitance from one GEMM over the modes), a solve O(N Z^2), and the stored factors O(N Z^2)
memory, instead of a dense factorisation of the (N Z)^2 Jacobian.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, Scalar, ScalarLike

from .._defaults import NODES
from ._rhs import (
    TheoryParams,
    coefficients_at,
    generator,
    moment_flow,
    moment_rates,
    moment_stack,
    modes,
    moments,
    overlap_point,
    point_from_moments,
    split_modes,
)
from ._state import TheoryState


def _pieces(s: TheoryState):
    """(z (Z, N), Ms (1 + G, Z, Z): the bulk moment then the G group moments, b (K,) or (0,)) of a
    state-shaped pytree."""
    b = jnp.zeros((0,), s.wt.dtype) if s.b is None else s.b
    return modes(s), moment_stack(s), b


def _join(like: TheoryState, z, Ms, b) -> TheoryState:
    wt, vs, cs = split_modes(like, z)
    Mg = None if like.Mg is None else Ms[1:]
    return TheoryState(wt, vs, Ms[0], None if like.b is None else b, like.activation, like.tied, like.D, cs,
                       Mg, like.groups)


def _inv_small(A: Float[Array, "N Z Z"]) -> Float[Array, "N Z Z"]:
    """Inverses of a batch of small matrices: Gauss-Jordan with partial pivoting, vectorised over N
    (on CPU, for 1024 blocks of 8 x 8, as fast as a batched LU and applied ~6x faster than its
    batched triangular solves)."""
    N, Z, _ = A.shape
    aug = jnp.concatenate([A, jnp.broadcast_to(jnp.eye(Z, dtype=A.dtype), A.shape)], axis=-1)
    rows = jnp.arange(Z)

    def body(k, aug):
        col = jnp.where(rows[None, :] >= k, jnp.abs(aug[:, :, k]), -1.0)
        p = jnp.argmax(col, axis=1)
        row_k = aug[:, k]
        row_p = jnp.take_along_axis(aug, p[:, None, None], axis=1)[:, 0]
        aug = jnp.where(rows[None, :, None] == p[:, None, None], row_k[:, None, :], aug)
        row_p = row_p / row_p[:, k][:, None]
        aug = jnp.where(rows[None, :, None] == k, row_p[:, None, :], aug)
        f = jnp.where(rows[None, :] == k, 0.0, aug[:, :, k])
        return aug - f[:, :, None] * row_p[:, None, :]

    return lax.fori_loop(0, Z, body, aug, unroll=Z <= 12)[:, :, Z:]


class _Factors(eqx.Module):
    """I - gamma J in block-diagonal + low-rank form: the inverses of the (small, well-conditioned:
    I minus gamma times a stable matrix) diagonal blocks, what U and V need (the factors and moment
    at the linearisation point, dL0/dp, dL1/dp, d(bias drift)/dp) and the LU of the capacitance."""

    modes: Float[Array, "N Z Z"]
    moment: tuple[Float[Array, "G1 Y Y"], Int[Array, "G1 Y"]]  # LU factors, one per moment
    z: Float[Array, "Z N"]
    Ms: Float[Array, "G1 Z Z"]
    dL0: Float[Array, "P Z Z"]
    dL1: Float[Array, "P Z Z"]
    dbias: Float[Array, "P K"]
    gamma: Scalar
    params: TheoryParams
    cap: tuple[Float[Array, "P P"], Int[Array, " P"]]  # LU of I - V W, W = (I - gamma B)^-1 gamma U


def _moment_solve(moment, Ms):
    return jax.vmap(lambda lu, piv, M: jsl.lu_solve((lu, piv), M.reshape(-1)).reshape(M.shape))(*moment, Ms)


def _block_solve(f: _Factors, z, Ms, b):
    """(I - gamma B)^-1 applied to a state's pieces (the bias has no diagonal block: identity)."""
    z = jnp.sum(f.modes * z.T[:, None, :], axis=2).T  # (broadcast products beat a batched dot on CPU)
    return z, _moment_solve(f.moment, Ms), b


def _linear_point(f: _Factors, state: TheoryState, A, Ar, Ms, b):
    """The change of p (flattened, (P,)) for the moment changes S = A + A^T + sum_m M_m and
    S_r = Ar + Ar^T + sum_m (variance_m / D) M_m."""
    rates, _ = moment_rates(f.params, state.D)
    S = A + A.T + jnp.sum(Ms, axis=0)
    Sr = Ar + Ar.T + jnp.tensordot(rates, Ms, 1)
    return ravel_pytree(point_from_moments(S, Sr, b if state.b is not None else None, state))[0]


def _apply_V(f: _Factors, state: TheoryState, z, Ms, b):
    """V x: the change of p along a state-shaped direction (z, Ms, b), flattened to (P,)."""
    r = (f.params.rho / state.D)[None, :]
    return _linear_point(f, state, f.z @ z.T, (f.z * r) @ z.T, Ms, b)


def _apply_U(f: _Factors, state: TheoryState, c):
    """U c as state pieces: dflow/dp along the direction c (P,) of p."""
    params = f.params
    L0 = jnp.tensordot(c, f.dL0, 1)
    L1 = jnp.tensordot(c, f.dL1, 1)
    z = L0 @ f.z + (params.rho / state.D)[None, :] * (L1 @ f.z)
    return z, moment_flow(L0, L1, f.Ms, *moment_rates(params, state.D)), c @ f.dbias


def factor(state: TheoryState, params: TheoryParams, gamma: ScalarLike, *, rule: str, method: str,
           nodes: int = NODES) -> _Factors:
    """Factor I - gamma J(state) (J the Jacobian of :func:`rhs`) for :func:`solve_factored`."""
    pf, unravel_p = ravel_pytree(overlap_point(state, params))
    P = pf.size
    z, Ms, _ = _pieces(state)
    Z, N = z.shape
    r = params.rho / state.D
    rates, active = moment_rates(params, state.D)

    def drift(q):  # (L0, L1, bias drift) as functions of p: all that the flow takes from p
        coeffs = coefficients_at(unravel_p(q), state, params, rule=rule, method=method, nodes=nodes)
        L0, L1 = generator(state, params, coeffs)
        db = jnp.zeros((0,), q.dtype) if state.b is None else -params.lr.b * coeffs[4]
        return L0, L1, db

    L0, L1, _ = drift(pf)
    dL0, dL1, dbias = (jnp.moveaxis(x, -1, 0) for x in jax.jacfwd(drift)(pf))

    eye = jnp.eye(Z, dtype=z.dtype)
    inv = _inv_small(eye[None] - gamma * (L0[None] + r[:, None, None] * L1[None]))
    # vec(L M + M L^T) = (L kron I + I kron L) vec(M), row-major, for each moment (L = L0 + rate
    # L1); an inactive moment (no bulk direction) is constant.
    Ls = L0[None] + rates[:, None, None] * L1[None]
    Bm = jnp.where(active[:, None, None], jax.vmap(lambda L: jnp.kron(L, eye) + jnp.kron(eye, L))(Ls), 0.0)
    moment = jax.vmap(jsl.lu_factor)(jnp.eye(Z * Z, dtype=z.dtype)[None] - gamma * Bm)
    f = _Factors(inv, moment, z, Ms, dL0, dL1, dbias, jnp.asarray(gamma, z.dtype), params,
                 jsl.lu_factor(jnp.eye(P, dtype=z.dtype)))  # capacitance: set below

    # Capacitance I - V W (W = (I - gamma B)^-1 gamma U), all P columns at once. Column j of W on
    # the modes is w_tau = gamma inv_tau (dL0_j + r_tau dL1_j) z_tau, and V reads it through
    # A_j = sum_tau z_tau w_tau^T and Ar_j = sum_tau r_tau z_tau w_tau^T. Both are contractions of
    # T_k = sum_tau r_tau^k (z_tau z_tau^T) (x) inv_tau (k = 0, 1, 2; Z^4 numbers each) with dL0 and
    # dL1: one GEMM over the N modes instead of (P, Z, N) intermediates.
    X = (z[:, None, :] * z[None, :, :]).reshape(Z * Z, N)
    T = jnp.concatenate([X, X * r[None, :], X * (r**2)[None, :]]) @ inv.reshape(N, Z * Z)
    T = T.reshape(3, Z, Z, Z, Z)  # [k, a, c, b, d]: sum_tau r_tau^k z_tau[a] z_tau[c] inv_tau[b, d]
    A = gamma * (jnp.einsum("acbd,jdc->jab", T[0], dL0) + jnp.einsum("acbd,jdc->jab", T[1], dL1))
    Ar = gamma * (jnp.einsum("acbd,jdc->jab", T[1], dL0) + jnp.einsum("acbd,jdc->jab", T[2], dL1))
    UM = jax.vmap(lambda a, b: moment_flow(gamma * a, gamma * b, Ms, rates, active))(dL0, dL1)  # (P, G1, Z, Z)
    WM = jax.vmap(lambda lu, piv, U: jsl.lu_solve((lu, piv), U.reshape(P, -1).T).T.reshape(U.shape),
                  in_axes=(0, 0, 1), out_axes=1)(*moment, UM)  # per moment, all P columns in one solve
    VW = jax.vmap(lambda A, Ar, M, b: _linear_point(f, state, A, Ar, M, b), out_axes=1)(A, Ar, WM, gamma * dbias)
    cap = jsl.lu_factor(jnp.eye(P, dtype=z.dtype) - VW)
    return eqx.tree_at(lambda f: f.cap, f, cap)


def solve_factored(f: _Factors, r: TheoryState) -> TheoryState:
    """x with (I - gamma J) x = r (Woodbury: block solve, then a rank-P correction)."""
    y = _block_solve(f, *_pieces(r))
    c = jsl.lu_solve(f.cap, _apply_V(f, r, *y))
    w = _block_solve(f, *_apply_U(f, r, f.gamma * c))
    return _join(r, *(a + b for a, b in zip(y, w)))


class _ChordState(eqx.Module):
    factors: _Factors
    diff: Any
    diffsize: Scalar
    diffsize_prev: Scalar
    result: optx.RESULTS
    step: Scalar


class StructuredChord(diffrax.VeryChord):
    """diffrax's ``VeryChord`` (one linearisation per step) with the structured factorisation of
    this module in place of a dense one. A root finder for ``diffrax.Kvaerno5(root_finder=...)``
    on the theory's vector field only."""

    rule: str = "vanilla"
    method: str = "stein"
    nodes: int = NODES

    def init(self, fn: Callable, y, args, options, f_struct, aux_struct, tags) -> _ChordState:
        try:
            return options["init_state"]
        except KeyError:
            pass
        # diffrax's implicit relation: f - vf(ti, yi_partial + diagonal * f * dt) (runge_kutta.py).
        _, diagonal, _, prod, ti, yi_partial, params, control = args
        gamma = diagonal * control
        ystar = jax.tree_util.tree_map(lambda a, b: a + diagonal * b, yi_partial, prod(y, control))
        ystar, params, gamma = lax.stop_gradient((ystar, params, gamma))
        f = factor(ystar, params, gamma, rule=self.rule, method=self.method, nodes=self.nodes)
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(y))
        return _ChordState(
            factors=f,
            diff=jax.tree_util.tree_map(lambda x: jnp.full(x.shape, jnp.inf, x.dtype), y),
            diffsize=jnp.array(jnp.inf, dtype),
            diffsize_prev=jnp.array(1.0, dtype),
            result=optx.RESULTS.successful,
            step=jnp.array(0),
        )

    def step(self, fn: Callable, y, args, options, state: _ChordState, tags):
        del options, tags
        fx, aux = fn(y, args)
        diff = solve_factored(lax.stop_gradient(state.factors), fx)
        new_y = jax.tree_util.tree_map(lambda a, b: a - b, y, diff)
        scale = jax.tree_util.tree_map(lambda a: self.atol + self.rtol * jnp.abs(a), new_y)
        diffsize = self.norm(jax.tree_util.tree_map(lambda d, s: d / s, diff, scale))
        ok = jnp.isfinite(diffsize)
        new_state = _ChordState(
            factors=state.factors, diff=diff, diffsize=diffsize, diffsize_prev=state.diffsize,
            result=optx.RESULTS.where(ok, optx.RESULTS.successful, optx.RESULTS.singular),
            step=state.step + 1,
        )
        return new_y, new_state, aux
