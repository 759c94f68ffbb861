"""The asymptotically exact theory: factor-form state, right-hand side, diffrax solve."""

from .rhs import METHODS, TheoryParams, coefficients, rhs, theory_pmse
from .solve import default_solver, solve, solve_states, theory_params
from .state import TheoryState, init_state, init_state_random, state_overlaps

__all__ = [
    "METHODS",
    "TheoryParams",
    "TheoryState",
    "coefficients",
    "default_solver",
    "init_state",
    "init_state_random",
    "rhs",
    "solve",
    "solve_states",
    "state_overlaps",
    "theory_params",
    "theory_pmse",
]
