"""Implicit steps for N-mode states at O(N K^2) per step (docs/theory.md §4).

The Jacobian of the right-hand side has the structure

    J = blockdiag(L(rho_1), ..., L(rho_N), L_M, 0_b) + U V

With the coefficients frozen the flow is linear mode by mode (``L(rho_tau)``, Z x Z with Z = 2K, or
K tied) and in the bulk moment (``L_M``, Z^2 x Z^2); all other dependence goes through the
P = 3K^2 (+ K with bias) numbers p = (Q, R, T0, b): V = dp/dstate (P x n) and U = dflow/dp (n x P).
An implicit stage of diffrax's Kvaerno5 solves (I - gamma J) x = r; :class:`StructuredChord` (a
drop-in for diffrax's ``VeryChord`` root finder) factors the N blocks and applies the Woodbury
identity through a P x P capacitance matrix: O(N K^2 P) to factor once per step, O(N K (K + P)) per
chord iteration, instead of a dense factorisation of the (2KN)^2 Jacobian.
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
from ._rhs import TheoryParams, coefficients_at, flow, overlap_point
from ._state import TheoryState


def _split(s: TheoryState):
    """(modes (N, Z), moment (Z*Z,), bias (K,) or (0,)) of a state-shaped pytree."""
    z = s.wt if s.tied else jnp.concatenate([s.wt, s.vs], axis=0)
    b = jnp.zeros((0,), s.wt.dtype) if s.b is None else s.b
    return z.T, s.M.reshape(-1), b


def _join(like: TheoryState, z, m, b) -> TheoryState:
    K = like.K
    wt, vs = (z.T, None) if like.tied else (z.T[:K], z.T[K:])
    return TheoryState(wt, vs, m.reshape(like.M.shape), None if like.b is None else b,
                       like.activation, like.tied, like.D)


class _Factors(eqx.Module):
    """I - gamma J in block-diagonal + low-rank form: the inverses of the (small, well-conditioned:
    I minus gamma times a stable matrix) diagonal blocks, and the LU factors of the capacitance."""

    modes: Float[Array, "N Z Z"]
    moment: Float[Array, "Y Y"]
    V: Float[Array, "P n"]
    W: Float[Array, "n P"]  # (I - gamma B)^-1 gamma U
    cap: tuple[Float[Array, "P P"], Int[Array, " P"]]


def _inv_small(A: Float[Array, "N Z Z"]) -> Float[Array, "N Z Z"]:
    """Inverses of a batch of small matrices: Gauss-Jordan with partial pivoting, vectorised over N
    (on CPU much faster than LAPACK calls, batched or not: 1024 8 x 8 blocks ~20x, one 64 x 64 ~10x)."""
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

    return lax.fori_loop(0, Z, body, aug, unroll=Z <= 8)[:, :, Z:]


def _block_solve(f: _Factors, r: TheoryState) -> TheoryState:
    z, m, b = _split(r)
    z = jnp.sum(f.modes * z[:, None, :], axis=2)  # (broadcast products beat a batched dot on CPU)
    m = f.moment @ m
    return _join(r, z, m, b)  # the bias has no diagonal block: identity


def _flat(s: TheoryState):
    z, m, b = _split(s)
    return jnp.concatenate([z.reshape(-1), m, b])


def _unflat(like: TheoryState, x):
    z0, m0, b0 = _split(like)
    i, j = z0.size, z0.size + m0.size
    return _join(like, x[:i].reshape(z0.shape), x[i:j], x[j:])


def factor(state: TheoryState, params: TheoryParams, gamma: ScalarLike, *, rule: str, method: str,
           nodes: int = NODES) -> _Factors:
    """Factor I - gamma J(state) (J the Jacobian of :func:`rhs`) for :func:`solve_factored`."""
    p0 = overlap_point(state, params)
    coeffs = coefficients_at(p0, state, params, rule=rule, method=method, nodes=nodes)
    z0, m0, b0 = _split(state)
    N, Z = z0.shape
    zeros = lambda x: jnp.zeros_like(x)

    # Diagonal blocks: the flow at frozen coefficients applied to basis vectors (every mode at once).
    def on_modes(e):
        out = flow(_join(state, jnp.broadcast_to(e, z0.shape), zeros(m0), zeros(b0)), params, coeffs)
        return _split(out)[0]

    Bz = jax.vmap(on_modes, out_axes=2)(jnp.eye(Z, dtype=z0.dtype))  # (N, Z, Z)
    Bm = jax.vmap(lambda e: _split(flow(_join(state, zeros(z0), e, zeros(b0)), params, coeffs))[1],
                  out_axes=1)(jnp.eye(m0.size, dtype=m0.dtype))
    eye_z = jnp.eye(Z, dtype=z0.dtype)
    modes = _inv_small(eye_z[None] - gamma * Bz)
    if params.n_bulk == 0:  # no bulk: the moment is constant, its block the identity
        moment = jnp.eye(m0.size, dtype=m0.dtype)
    else:
        moment = _inv_small((jnp.eye(m0.size, dtype=m0.dtype) - gamma * Bm)[None])[0]

    # Low-rank coupling through p = (Q, R, T0, b).
    pf, unravel_p = ravel_pytree(p0)
    x0 = _flat(state)

    def state_to_p(x):
        return ravel_pytree(overlap_point(_unflat(state, x), params))[0]

    def p_to_flow(q):
        c = coefficients_at(unravel_p(q), state, params, rule=rule, method=method, nodes=nodes)
        return _flat(flow(state, params, c))

    V = jax.jacrev(state_to_p)(x0)  # (P, n)
    U = jax.jacfwd(p_to_flow)(pf)  # (n, P)
    nz = z0.size
    Wz = jnp.sum(modes[:, :, :, None] * (gamma * U[:nz].reshape(N, 1, Z, -1)), axis=2).reshape(nz, -1)
    Wm = moment @ (gamma * U[nz:nz + m0.size])
    W = jnp.concatenate([Wz, Wm, gamma * U[nz + m0.size:]])
    cap = jsl.lu_factor(jnp.eye(pf.size, dtype=pf.dtype) - V @ W)
    return _Factors(modes, moment, V, W, cap)


def solve_factored(f: _Factors, r: TheoryState) -> TheoryState:
    """x with (I - gamma J) x = r (Woodbury: block solve, then a P x P correction)."""
    y = _block_solve(f, r)
    yf = _flat(y)
    c = jsl.lu_solve(f.cap, f.V @ yf)
    return _unflat(r, yf + f.W @ c)


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
