"""aedyn: learning dynamics of shallow autoencoders, simulated and solved exactly in JAX.

Implements Refinetti & Goldt, "The dynamics of representation learning in shallow, non-linear
autoencoders" (ICML 2022); see THEORY.md for the conventions (time t = steps / D).
"""

import jax

# The theory runs in float64 (THEORY.md §4); simulations use the dtype of the network.
jax.config.update("jax_enable_x64", True)

from ._checks import DivergenceError, SolveError, log_times  # noqa: E402
from .activations import Activation, get_activation  # noqa: E402
from .data import Covariance, spiked_covariance  # noqa: E402
from .model import AutoEncoder, Overlaps, init_autoencoder, overlaps, pmse, pmse_mc  # noqa: E402
from .rules import LearningRates, learning_rates, sgd_step  # noqa: E402
from .simulate import simulate  # noqa: E402
from .trajectory import Trajectory  # noqa: E402
from . import analysis, validation  # noqa: E402
from . import theory  # noqa: E402
from . import fit, objectives, sweeps  # noqa: E402
from .sweeps import SweepResult, sweep_simulation, sweep_theory  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "analysis",
    "validation",
    "AutoEncoder",
    "Covariance",
    "DivergenceError",
    "LearningRates",
    "Overlaps",
    "SolveError",
    "Trajectory",
    "get_activation",
    "init_autoencoder",
    "learning_rates",
    "log_times",
    "overlaps",
    "pmse",
    "pmse_mc",
    "sgd_step",
    "theory",
    "simulate",
    "spiked_covariance",
    "fit",
    "objectives",
    "sweeps",
    "SweepResult",
    "sweep_simulation",
    "sweep_theory",
]
