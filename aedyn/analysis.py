"""The long-time picture: plateaus, escape times, fixed points, comparison with PCA."""

from ._analysis import (
    Plateau as Plateau,
    escape_times as escape_times,
    find_plateaus as find_plateaus,
    long_time_limit as long_time_limit,
    pca_gap as pca_gap,
    plateau_levels as plateau_levels,
    relu_fraction as relu_fraction,
    relu_level as relu_level,
)
