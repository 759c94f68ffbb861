"""Fits of hyperparameters and spectra through the theory, with optax."""

from ._fit import (
    FitResult as FitResult,
    fit_curve as fit_curve,
    fit_spectrum as fit_spectrum,
    minimise as minimise,
    optimise_time_to_target as optimise_time_to_target,
)
