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
of at most :data:`IMPLICIT_MAX_SIZE` numbers. Gradients go through the whole step, the
factorisation included, so reverse and forward mode differentiate the discrete solution exactly.
"""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import PyTree, ScalarLike

from .._checks import check_int
from .._defaults import NODES
from ._policy import IMPLICIT_MAX_SIZE, METHODS, state_size
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
        th = (t0 - self.t0) / (self.t1 - self.t0)
        return jax.tree_util.tree_map(
            lambda a, b, d: (1 - th) * a + th * (b + (1 - th) * (d[0] + th * (d[1] + th * d[2]))),
            self.y0, self.y1, self.k,
        )


class Rodas5(diffrax.AbstractAdaptiveSolver):
    """Rodas5 (an L-stable Rosenbrock method of order 5, embedded order 4, order-4 dense output)
    for the theory's vector field: ``diffeqsolve(ODETerm(rhs), Rodas5(...), ..., args=params)`` with
    ``rhs`` :func:`aedyn.theory.rhs` at the same ``rule``, ``method``, ``nodes``. One exact
    factorisation of I - gamma h J per step (structured for states of more than
    :data:`IMPLICIT_MAX_SIZE` numbers, dense otherwise), eight linear solves and eight evaluations
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

    def _solver(self, terms, t0, y0, args, gh):
        """v -> (I / gh - J(y0))^-1 v."""
        if state_size(y0) > IMPLICIT_MAX_SIZE:
            f = factor(y0, args, gh, rule=self.rule, method=self.method, nodes=self.nodes)
            return lambda v: jax.tree_util.tree_map(lambda x: gh * x, solve_factored(f, v))
        flat, unravel = ravel_pytree(y0)
        jac = jax.jacfwd(lambda x: ravel_pytree(terms.vf(t0, unravel(x), args))[0])(flat)
        lu = jsl.lu_factor(jnp.eye(flat.size, dtype=flat.dtype) - gh * jac)
        return lambda v: unravel(gh * jsl.lu_solve(lu, ravel_pytree(v)[0]))

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        h = t1 - t0
        solve = self._solver(terms, t0, y0, args, _GAMMA * h)
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
        A, C = jnp.asarray(_A8, dtype), jnp.asarray(_C8, dtype) / h

        def stage(i, ks):  # one loop body for the eight stages: one copy of f and the solve to compile
            u = jax.tree_util.tree_map(jnp.add, y0, _dot(A[i], ks))
            du = jax.tree_util.tree_map(jnp.add, terms.vf(t0, u, args), _dot(C[i], ks))
            return jax.tree_util.tree_map(lambda k, x: k.at[i].set(x), ks, solve(du))

        ks = jax.lax.fori_loop(0, 8, stage, jax.tree_util.tree_map(lambda y: jnp.zeros((8,) + y.shape, y.dtype), y0))
        y1 = jax.tree_util.tree_map(jnp.add, y0, _dot(jnp.asarray(_B8, dtype), ks))
        y_error = jax.tree_util.tree_map(lambda k: k[7], ks)
        d = _dot(jnp.asarray(_H8, dtype), ks)  # (3, ...) per leaf
        return y1, y_error, dict(y0=y0, y1=y1, k=d), None, diffrax.RESULTS.successful
