"""Vectorised, sharded, resumable sweeps: ``vmap`` of the theory solve and of the simulator."""

from ._sweeps import (
    PARAMETERS as PARAMETERS,
    SweepResult as SweepResult,
    initial_network as initial_network,
    seed_keys as seed_keys,
    sweep_simulation as sweep_simulation,
    sweep_theory as sweep_theory,
)
