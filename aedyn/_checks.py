"""Input validation helpers: raise early, naming the argument and what was expected."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["is_concrete", "check_times", "DivergenceError", "SolveError"]


class DivergenceError(RuntimeError):
    """A simulation diverged; ``step``/``t`` say where, ``trajectory`` holds what came before."""

    def __init__(self, message, *, step=None, t=None, trajectory=None):
        super().__init__(message)
        self.step = step
        self.t = t
        self.trajectory = trajectory


class SolveError(RuntimeError):
    """A theory solve failed (diffrax result not successful, or non-finite state)."""


def is_concrete(*xs) -> bool:
    """True when none of ``xs`` is a tracer (so values can be checked on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def check_times(ts, name: str = "ts") -> np.ndarray:
    """A 1-D array of non-negative, strictly increasing, finite times."""
    t = np.asarray(ts, np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"{name}: expected a non-empty 1-D array of times, got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"{name}: times must be finite and >= 0")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{name}: times must be strictly increasing")
    return t


def log_times(t_max: float, n: int = 100, t_min: float = 1e-2) -> np.ndarray:
    """n log-spaced times from t_min to t_max (THEORY.md §4: the dynamics span decades)."""
    if t_max <= t_min:
        raise ValueError(f"t_max: expected t_max > t_min = {t_min}, got {t_max}")
    return np.geomspace(t_min, t_max, n)
