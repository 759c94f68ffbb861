"""The one place for aedyn's defaults (every entry point reads them from here).

Units: time t = steps / D (docs/theory.md, "Model and scalings").
"""

import numpy as np

#: Learning rate eta (eta_W = eta_V = eta_b) of the standard example.
LR = 0.1
#: Initial weight scale: entries N(0, INIT_SCALE^2) (tied: N(0, INIT_SCALE^2 / D)).
INIT_SCALE = 0.1
#: Default recording grid: N_TIMES log-spaced times from T_MIN to T_MAX (the dynamics span decades).
T_MIN, T_MAX, N_TIMES = 1e-2, 100.0, 100
#: Step-size control of the theory's ODE solve (relative and absolute tolerance) and its step budget.
RTOL, ATOL, MAX_STEPS = 1e-7, 1e-10, 1_000_000
#: Eigenvalues within MERGE_RTOL times the largest count as equal: merged exactly into one bulk
#: moment by ``Covariance.merged`` (and so by ``aedyn.theory.solve``; docs/theory.md §6).
MERGE_RTOL = 1e-10
#: Samples drawn per random-number call of the simulator.
BLOCK = 128
#: Gauss-Hermite nodes per dimension for the kernels of activations without closed forms.
NODES = 96


def log_times(t_max: float = T_MAX, n: int = N_TIMES, t_min: float = T_MIN) -> np.ndarray:
    """n log-spaced times from t_min to t_max (t = steps / D)."""
    t_max, t_min = float(t_max), float(t_min)
    if not (np.isfinite(t_min) and t_min > 0):
        raise ValueError(f"t_min: expected a positive, finite first time, got {t_min}")
    if not (np.isfinite(t_max) and t_max > t_min):
        raise ValueError(f"t_max: expected a finite t_max > t_min = {t_min}, got {t_max}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer number of times >= 2, got {n!r}")
    return np.geomspace(t_min, t_max, int(n))

#: Where online SGD leaves the first-order theory, in units of eta / D (docs/finite_size.md,
#: spiked model, erf): a typical run departs from the theory by 5% past ETA_DEPART_PER_D * D, and
#: SGD runs diverge past ETA_DIVERGE_PER_D * D (measured between 0.5 D and D).
ETA_DEPART_PER_D = 1.2e-3
ETA_DIVERGE_PER_D = 0.5
