"""The asymptotically exact theory (docs/theory.md): factor-form state, right-hand side, solve."""

from ._policy import (
    EXPLICIT_STEPS as EXPLICIT_STEPS,
    IMPLICIT_DENSE_RATIO as IMPLICIT_DENSE_RATIO,
    METHODS as METHODS,
    STIFF_PID as STIFF_PID,
    default_solver as default_solver,
    mode_groups as mode_groups,
    regime as regime,
    resolve_method as resolve_method,
    stiff_controller as stiff_controller,
    stiff_solver as stiff_solver,
    structured_implicit as structured_implicit,
    warn_regime as warn_regime,
)
from ._rhs import (
    TheoryParams as TheoryParams,
    coefficients as coefficients,
    coefficients_at as coefficients_at,
    flow as flow,
    rhs as rhs,
    theory_pmse as theory_pmse,
)
from ._rosenbrock import Rodas5 as Rodas5
from ._stiff import StructuredChord as StructuredChord
from ._solve import solve as solve, theory_params as theory_params
from ._state import (
    TheoryState as TheoryState,
    init_state as init_state,
    init_state_random as init_state_random,
    merge_modes as merge_modes,
    state_overlaps as state_overlaps,
)
