"""Scalars of the theory's learning curve and their gradients (through the diffrax solve)."""

from ._objectives import (
    curve_distance as curve_distance,
    final_pmse as final_pmse,
    finite_difference as finite_difference,
    log_time_area as log_time_area,
    make_curve as make_curve,
    time_to_level as time_to_level,
    value_and_grad as value_and_grad,
)
