"""Rodas5, a Rosenbrock method, on the theory's Jacobian (docs/theory.md §4).

A Rosenbrock step linearises once and solves s linear systems with the one matrix
I - gamma h J(y0): no Newton iteration. Stage i (autonomous form; the theory's vector field does
not depend on t) is

    (I / (gamma h) - J) k_i = f(y0 + sum_{j<i} a_ij k_j) + sum_{j<i} (C_ij / h) k_j,

y1 = y0 + sum_{j<=5} a_6j k_j + k_6 + k_7 + k_8, and k_8 is the local error of the embedded
solution. Rodas5 (Di Marzo 1993, in Hairer and Wanner's Rodas family) is L-stable, stiffly accurate,
of order 5 with an order-4 embedding, and has an order-4 dense output. Its coefficients below are
those of the reference (as tabulated in OrdinaryDiffEq.jl's ``Rodas5Tableau``).

J is exact at y0: :func:`aedyn.theory._stiff.factor` for N-mode states (block-diagonal plus
low-rank, O(N Z^4) per factorisation, O(N Z^2) per solve), a dense LU of ``jax.jacfwd`` for states
of few modes (:func:`aedyn.theory._policy.structured_implicit`). Derivatives differentiate the stage
equations, not the factorisation (docs/theory.md §4, "Gradients"): a JVP rule whose tangent
recurrence reuses the step's factorisation, and its transpose for reverse mode, written out. Both
give the derivative of the discrete step exactly (to rounding).
"""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree, ScalarLike

from .._checks import check_int
from .._defaults import NODES
from ._linear import linear_map
from ._policy import METHODS, state_size, structured_implicit
from ._rhs import overlap_point
from ._stiff import factor, solve_factored

_GAMMA = 0.19
# a_ij of stages 2-6 (stages 7 and 8 add k_6, k_7 to stage 6's argument).
_A = (
    (),
    (2.0,),
    (3.040894194418781, 1.041747909077569),
    (2.576417536461461, 1.622083060776640, -0.9089668560264532),
    (2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405, 24.13215229196062),
)
_C = (
    (),
    (-10.31323885133993,),
    (-21.04823117650003, -7.234992135176716),
    (32.22751541853323, -4.943732386540191, 19.44922031041879),
    (-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146),
    (-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906, 318.3822534212147),
    (34.20013733472935, -14.15535402717690, 57.82335640988400, 25.83362985412365, 1.408950972071624,
     -6.551835421242162),
    (42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503, -31.58359187223370,
     -6.685968952921985, -5.810979938412932),
)
# Dense output: y(theta) = (1 - theta) y0 + theta (y1 + (1 - theta) (d_1 + theta (d_2 + theta d_3))),
# d_m = sum_i H[m][i] k_i.
_H = (
    (27.354592673333357, -6.925207756232857, 26.40037733258859, 0.5635230501052979, -4.699151156849391,
     -1.6008677469422725, -1.5306074446748028, -1.3929872940716344),
    (44.19024239501722, 1.3677947663381929e-13, 202.93261852171622, -35.5669339789154, -181.91095152160645,
     3.4116351403665033, 2.5793540257308067, 2.2435122582734066),
    (-44.0988150021747, -5.755396159656812e-13, -181.26175034586677, 56.99302194811676, 183.21182741427398,
     -7.480257918273637, -5.792426076169686, -5.32503859794143),
)


def _tableau():
    """(A, C, b) as 8 x 8, 8 x 8, (8,) float64 arrays for a uniform stage loop: stage i's argument is
    y0 + sum_j A[i, j] k_j (stages 7 and 8 add k_6 and k_7 to stage 6's), its right-hand side adds
    sum_j C[i, j] k_j / h, and y1 = y0 + sum_j b_j k_j."""
    A, C = np.zeros((8, 8)), np.zeros((8, 8))
    for i, row in enumerate(_A):
        A[i, : len(row)] = row
    A[6, :5], A[6, 5] = _A[5], 1.0
    A[7, :5], A[7, 5:7] = _A[5], 1.0
    for i, row in enumerate(_C):
        C[i, : len(row)] = row
    b = np.concatenate([_A[5], [1.0, 1.0, 1.0]])
    return A, C, b


_A8, _C8, _B8 = _tableau()
_H8 = np.asarray(_H)


def _dot(coefs, ks):
    """sum_i coefs[i] ks[i] over a stacked pytree ks (leading axis: stages)."""
    return jax.tree_util.tree_map(lambda k: jnp.tensordot(coefs, k, 1), ks)


def _structured(y0, args) -> bool:
    """Whether a step from ``y0`` factors the Jacobian in structured form (else densely)."""
    return structured_implicit(state_size(y0), state_size(jax.eval_shape(overlap_point, y0, args)))


class _RodasInterpolation(diffrax.AbstractLocalInterpolation):
    """Rodas5's order-4 dense output on [t0, t1] (coefficients ``k``: (3, ...) per leaf)."""

    t0: ScalarLike
    t1: ScalarLike
    y0: PyTree
    y1: PyTree
    k: PyTree

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return jax.tree_util.tree_map(jnp.subtract, self.evaluate(t1), self.evaluate(t0))
        # theta in [0, 1]; 0 on a step of length 0 (a finished member of a vmapped solve), where
        # a division by zero would make its masked-out derivatives NaN
        still = self.t1 == self.t0
        th = jnp.where(still, 0.0, (t0 - self.t0) / jnp.where(still, 1.0, self.t1 - self.t0))
        return jax.tree_util.tree_map(
            lambda a, b, d: (1 - th) * a + th * (b + (1 - th) * (d[0] + th * (d[1] + th * d[2]))),
            self.y0, self.y1, self.k,
        )


class Rodas5(diffrax.AbstractAdaptiveSolver):
    """Rodas5 (an L-stable Rosenbrock method of order 5, embedded order 4, order-4 dense output)
    for the theory's vector field: ``diffeqsolve(ODETerm(rhs), Rodas5(...), ..., args=params)`` with
    ``rhs`` :func:`aedyn.theory.rhs` at the same ``rule``, ``method``, ``nodes``. One exact
    factorisation of I - gamma h J per step (structured or dense:
    :func:`aedyn.theory._policy.structured_implicit`), eight linear solves and eight evaluations
    of the right-hand side."""

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., _RodasInterpolation]] = _RodasInterpolation

    rule: str = "vanilla"
    method: str = "stein"
    nodes: int = NODES

    def __check_init__(self):
        if not isinstance(self.rule, str) or self.rule not in ("vanilla", "truncated"):
            raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {self.rule!r}")
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        check_int(self.nodes, "nodes", lo=2)

    def order(self, terms):
        return 5

    def init(self, terms, t0, t1, y0, args):
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def _solver(self, vf, y0, args, gh):
        """v -> (I / gh - J(y0))^-1 v (linear in v), J the Jacobian of ``vf(y, args)`` at y0."""
        if _structured(y0, args):
            f = factor(y0, args, gh, rule=self.rule, method=self.method, nodes=self.nodes)
            return lambda v: jax.tree_util.tree_map(lambda x: gh * x, solve_factored(f, v))
        flat, unravel = ravel_pytree(y0)
        jac = jax.jacfwd(lambda x: ravel_pytree(vf(unravel(x), args))[0])(flat)
        lu = jsl.lu_factor(jnp.eye(flat.size, dtype=flat.dtype) - gh * jac)
        return lambda v: unravel(gh * jsl.lu_solve(lu, ravel_pytree(v)[0]))

    def _stage_loop(self, vf, solve, y0, args, h, *, arguments=False):
        """The eight stages k_i, stacked (leading axis 8), and with ``arguments`` their arguments
        u_i = y0 + sum_j a_ij k_j. One loop body: one copy of the right-hand side and the solve to
        compile."""
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
        A, C = jnp.asarray(_A8, dtype), jnp.asarray(_C8, dtype) / h

        def stage(i, carry):
            ks, us = carry
            u = jax.tree_util.tree_map(jnp.add, y0, _dot(A[i], ks))
            du = jax.tree_util.tree_map(jnp.add, vf(u, args), _dot(C[i], ks))
            put = lambda stack, x: jax.tree_util.tree_map(lambda s, v: s.at[i].set(v), stack, x)
            return put(ks, solve(du)), (put(us, u) if arguments else us)

        zeros = jax.tree_util.tree_map(lambda y: jnp.zeros((8,) + y.shape, y.dtype), y0)
        ks, us = jax.lax.fori_loop(0, 8, stage, (zeros, zeros if arguments else None))
        return (ks, us) if arguments else ks

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        h = t1 - t0
        # A step of length 0 (what a finished member of a vmapped solve takes) leaves y0 as it is;
        # its stages are computed at h = 1, so that their (discarded) derivatives stay finite.
        still = h == 0
        ks = _stages(terms, t0, y0, args, jnp.where(still, jnp.ones_like(h), h), solver=self)
        ks = jax.tree_util.tree_map(lambda k: jnp.where(still, jnp.zeros_like(k), k), ks)
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
        y1 = jax.tree_util.tree_map(jnp.add, y0, _dot(jnp.asarray(_B8, dtype), ks))
        y_error = jax.tree_util.tree_map(lambda k: k[7], ks)
        d = _dot(jnp.asarray(_H8, dtype), ks)  # (3, ...) per leaf
        return y1, y_error, dict(y0=y0, y1=y1, k=d), None, diffrax.RESULTS.successful


def _outer(c, x):
    """c (8,) times x: (8, *x.shape)."""
    return c.reshape((-1,) + (1,) * x.ndim) * x[None]


def _tangent(tangent, primal):
    """A tangent with the zeros that ``filter_custom_jvp`` passes as ``None`` made explicit."""
    return jax.tree_util.tree_map(lambda p, t: jnp.zeros_like(p) if t is None else t, primal, tangent)


@eqx.filter_custom_jvp
def _stages(terms, t0, y0, args, h, *, solver: Rodas5):
    """Rodas5's stages k (8, ...) at y0 with step h. Differentiable in y0, args and h by the JVP
    rule below, which differentiates the stage equations instead of the factorisation: forward and
    reverse mode give the derivative of the discrete step exactly (to rounding), without the
    derivative of the LU factors."""
    vf = lambda y, a: terms.vf(t0, y, a)
    return solver._stage_loop(vf, solver._solver(vf, y0, args, _GAMMA * h), y0, args, h)


@_stages.def_jvp
def _stages_jvp(primals, tangents, *, solver: Rodas5):
    # Stage i solves (I / (gamma h) - J) k_i = r_i with r_i = f(u_i) + sum_j C_ij k_j / h, so
    #   (I / (gamma h) - J) dk_i = dr_i + (dJ) k_i + k_i dh / (gamma h^2),
    #   dr_i = f'(u_i) du_i + (df/dargs) dargs + sum_j C_ij (dk_j / h - k_j dh / h^2),
    #   du_i = dy0 + sum_j a_ij dk_j.
    # (dJ) k_i, a second derivative of f along k_i and (dy0, dargs), does not depend on the dk_j.
    # The tangent map (dy0, dargs, dh) -> dk is linear; its transpose (reverse mode) is written
    # out below and attached with linear_map (lax.custom_linear_solve).
    # The vector field is autonomous (the theory's is): t0 and the term's own arrays have no effect.
    terms, t0, y0, args, h = primals
    _, _, dy0, dargs, dh = tangents
    vf = lambda y, a: terms.vf(t0, y, a)
    gh = _GAMMA * h
    solve = solver._solver(vf, y0, args, gh)
    ks, us = solver._stage_loop(vf, solve, y0, args, h, arguments=True)
    # derivatives in the inexact arrays p of args (the others are held fixed): f(y, p)
    p, static = eqx.partition(args, eqx.is_inexact_array)
    f = lambda y, p: terms.vf(t0, y, eqx.combine(p, static))
    x = (_tangent(dy0, y0), _tangent(eqx.filter(dargs, eqx.is_inexact_array), p),
         jnp.zeros_like(h) if dh is None else dh)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
    A, C = jnp.asarray(_A8, dtype), jnp.asarray(_C8, dtype)
    Ck = jax.tree_util.tree_map(lambda k: jnp.tensordot(C, k, 1), ks)  # sum_j C_ij k_j
    at = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)

    def Jk(y, p, k):  # J(y, p) k
        return jax.jvp(lambda x: f(x, p), (y,), (k,))[1]

    def tangent(x):
        dy0, dp, dh = x
        known = jax.tree_util.tree_map(  # the terms known before the loop
            lambda w, k, ck: w + k * (dh / (gh * h)) - ck * (dh / h**2),
            jax.vmap(lambda k: jax.jvp(lambda y, p: Jk(y, p, k), (y0, p), (dy0, dp))[1])(ks), ks, Ck,
        )

        def stage(i, dks):
            du = jax.tree_util.tree_map(jnp.add, dy0, _dot(A[i], dks))
            df = jax.jvp(f, (at(us, i), p), (du, dp))[1]
            dr = jax.tree_util.tree_map(lambda a, b, c: a + b / h + c[i], df, _dot(C[i], dks), known)
            return jax.tree_util.tree_map(lambda s, v: s.at[i].set(v), dks, solve(dr))

        return jax.lax.fori_loop(0, 8, stage, jax.tree_util.tree_map(jnp.zeros_like, ks))

    solve_t = jax.linear_transpose(solve, y0)

    def cotangent(kbar):
        # Backwards through the stages: rbar_i = S^T kbar_i (S = (I / (gamma h) - J)^-1), then
        # f'(u_i)^T rbar_i flows to y0 and to the earlier stages through a_ij, rbar_i to them
        # through C_ij / h; (dJ)^T: one reverse pass of sum_i <rbar_i, J(y0, p) k_i>.
        def stage(j, carry):
            i = 7 - j
            kbar, rbar, ybar, pbar = carry
            r = solve_t(at(kbar, i))[0]
            ubar, pb = jax.vjp(f, at(us, i), p)[1](r)
            # stage i read the earlier k_j through its argument (a_ij) and right-hand side (C_ij / h)
            kbar = jax.tree_util.tree_map(lambda kb, ub, rb: kb + _outer(A[i], ub) + _outer(C[i] / h, rb), kbar, ubar, r)
            rbar = jax.tree_util.tree_map(lambda s, v: s.at[i].set(v), rbar, r)
            return kbar, rbar, jax.tree_util.tree_map(jnp.add, ybar, ubar), jax.tree_util.tree_map(jnp.add, pbar, pb)

        zero = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)
        _, rbar, ybar, pbar = jax.lax.fori_loop(0, 8, stage, (kbar, zero(ks), zero(y0), zero(p)))
        jk = lambda y, p: jax.vmap(lambda k: Jk(y, p, k))(ks)
        yb, pb = jax.vjp(jk, y0, p)[1](rbar)
        hbar = sum(jnp.vdot(r, k / (gh * h) - ck / h**2) for r, k, ck in zip(
            jax.tree_util.tree_leaves(rbar), jax.tree_util.tree_leaves(ks), jax.tree_util.tree_leaves(Ck)))
        add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)
        return add(ybar, yb), add(pbar, pb), hbar

    return ks, linear_map(tangent, cotangent, x, ks)
