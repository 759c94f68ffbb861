"""The exceptions and warnings aedyn raises."""


class DivergenceError(RuntimeError):
    """A simulation diverged; ``step``/``t`` say where, ``trajectory`` holds what came before."""

    def __init__(self, message, *, step=None, t=None, trajectory=None):
        super().__init__(message)
        self.step = step
        self.t = t
        self.trajectory = trajectory


class SolveError(RuntimeError):
    """A theory solve failed (the ODE solver did not succeed, or the state became non-finite)."""


class RegimeWarning(UserWarning):
    """A run is outside the regime where the first-order theory describes SGD."""
