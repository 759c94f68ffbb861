"""aedyn: learning dynamics of shallow autoencoders, simulated and solved exactly in JAX.

Implements Refinetti & Goldt, "The dynamics of representation learning in shallow, non-linear
autoencoders" (ICML 2022); docs/theory.md states the conventions (time t = steps / D).

Importing aedyn changes no JAX setting. The theory runs in float64: enable it once with
``jax.config.update("jax_enable_x64", True)``; simulations run in float32 or float64.
"""

import importlib.metadata

from . import analysis as analysis
from . import datasets as datasets
from . import fit as fit
from . import objectives as objectives
from . import sweeps as sweeps
from . import theory as theory
from . import validation as validation
from ._activations import Activation as Activation, get_activation as get_activation
from ._data import Covariance as Covariance, spiked_covariance as spiked_covariance
from ._dataset import Dataset as Dataset
from ._defaults import log_times as log_times
from ._errors import DivergenceError as DivergenceError, RegimeWarning as RegimeWarning, SolveError as SolveError
from ._model import (
    AutoEncoder as AutoEncoder,
    Overlaps as Overlaps,
    init_autoencoder as init_autoencoder,
    overlaps as overlaps,
    pmse as pmse,
    pmse_mc as pmse_mc,
)
from ._rules import LearningRates as LearningRates, learning_rates as learning_rates, sgd_step as sgd_step
from ._simulate import simulate as simulate
from ._sweeps import SweepResult as SweepResult, sweep_simulation as sweep_simulation, sweep_theory as sweep_theory
from ._trajectory import Trajectory as Trajectory

try:
    __version__ = importlib.metadata.version("aedyn")
except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "unknown"

__all__ = [
    "Activation",
    "AutoEncoder",
    "Covariance",
    "Dataset",
    "DivergenceError",
    "LearningRates",
    "Overlaps",
    "RegimeWarning",
    "SolveError",
    "SweepResult",
    "Trajectory",
    "analysis",
    "datasets",
    "fit",
    "get_activation",
    "init_autoencoder",
    "learning_rates",
    "log_times",
    "objectives",
    "overlaps",
    "pmse",
    "pmse_mc",
    "sgd_step",
    "simulate",
    "spiked_covariance",
    "sweep_simulation",
    "sweep_theory",
    "sweeps",
    "theory",
    "validation",
]
