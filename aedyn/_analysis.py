"""The long-time picture: plateaus, escape times, fixed points and the comparison with PCA.

Because the first-order theory is the gradient flow of the population error (docs/theory.md §3,
"Structure"), its fixed points are the stationary points of pmse and its long-time limits the
local minima reached downhill. This module finds them by minimising the closed-form pmse over the
factors (optimistix BFGS), and reads plateaus and escape times off a trajectory.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._data import Covariance
from .theory import TheoryState, theory_params, theory_pmse
from .theory._solve import state_covariance

@dataclasses.dataclass(frozen=True)
class Plateau:
    """A stretch of a learning curve where pmse changes by less than ``flatness`` per decade of t."""

    t_start: float
    t_end: float
    level: float


def find_plateaus(ts, pmse, *, flatness: float = 0.02, min_decades: float = 0.5) -> list[Plateau]:
    """Plateaus of a pmse curve sampled at log-spaced times ``ts`` (t > 0).

    A plateau is a maximal run of intervals where |d log pmse / d log10 t| < ``flatness`` that
    spans at least ``min_decades`` decades of t.
    """
    ts = np.asarray(ts, np.float64)
    e = np.asarray(pmse, np.float64)
    keep = ts > 0
    ts, e = ts[keep], e[keep]
    if ts.size < 3:
        raise ValueError("ts: need at least three positive times to find plateaus")
    lt = np.log10(ts)
    slope = np.abs(np.diff(np.log(e)) / np.diff(lt))
    flat = slope < flatness
    out = []
    i = 0
    while i < flat.size:
        if not flat[i]:
            i += 1
            continue
        j = i
        while j < flat.size and flat[j]:
            j += 1
        if lt[j] - lt[i] >= min_decades:
            out.append(Plateau(float(ts[i]), float(ts[j]), float(np.mean(e[i : j + 1]))))
        i = j
    return out


def escape_times(ts, pmse, levels) -> np.ndarray:
    """For k = 1..len(levels)-1, the first time pmse falls below the midpoint of levels[k-1] and
    levels[k] (e.g. successive PCA errors): the escape from plateau k-1. NaN if never."""
    ts = np.asarray(ts, np.float64)
    e = np.asarray(pmse, np.float64)
    levels = np.asarray(levels, np.float64)
    out = np.full(levels.size - 1, np.nan)
    for k in range(1, levels.size):
        below = np.nonzero(e < 0.5 * (levels[k - 1] + levels[k]))[0]
        if below.size:
            out[k - 1] = ts[below[0]]
    return out


def pca_gap(traj) -> float:
    """Relative distance of the last pmse above the K-component PCA error."""
    pca = np.asarray(traj.pca)
    return float((np.asarray(traj.pmse)[-1] - pca[-1]) / pca[-1])


def _unpack(y, template: TheoryState) -> TheoryState:
    wt, vs, C, b, c, Cg = y
    M = C @ C.T
    Mg = None if Cg is None else Cg @ jnp.swapaxes(Cg, 1, 2)
    return TheoryState(wt, vs, M, b, template.activation, template.tied, template.D, c, Mg, template.groups)


def _minimise(y0, template, params, *, rtol, atol, max_steps):
    def loss(y, _):
        return theory_pmse(_unpack(y, template), params)

    sol = optx.minimise(
        loss, optx.BFGS(rtol=rtol, atol=atol), y0, max_steps=max_steps, throw=False
    )
    state = _unpack(sol.value, template)
    return float(theory_pmse(state, params)), state, bool(sol.result == optx.RESULTS.successful)


def long_time_limit(
    state: TheoryState, cov: Covariance, *, rtol=1e-10, atol=1e-12, max_steps=10_000
) -> tuple[float, TheoryState, bool]:
    """The local minimum of pmse reached downhill from ``state`` (a stable fixed point of the
    vanilla flow): (pmse, state, converged). For untied sigmoidal networks the infimum lies at
    infinite decoder norm, and the value returned approaches it from above."""
    params = theory_params(state_covariance(state, cov), 1.0, groups=state.groups)
    z = state.moment_sum()
    # M = C C^T keeps the bulk (and group) moments PSD; jittered Cholesky factors start them.
    n = state.M.shape[0]
    jitter = 1e-12 * jnp.eye(n, dtype=state.M.dtype) * (1 + jnp.trace(z))
    C = jnp.linalg.cholesky(state.M + jitter)
    Cg = None if state.Mg is None else jnp.linalg.cholesky(state.Mg + jitter[None])
    y0 = (state.wt, state.vs, C, state.b, state.c, Cg)
    return _minimise(y0, state, params, rtol=rtol, atol=atol, max_steps=max_steps)


def plateau_levels(
    state: TheoryState,
    cov: Covariance,
    *,
    key=None,
    restarts: int = 4,
    rtol=1e-10,
    atol=1e-12,
    max_steps=10_000,
) -> np.ndarray:
    """Plateau levels k = 0..min(K, N): the minimum of pmse over networks whose weights lie in
    the span of the k leading eigenvectors (the saddle at which k components are learned).

    For linear networks these are the PCA errors; sigmoidal untied networks approach them from
    above only at infinite decoder norm; tied ones stay above them. Each level is the best of
    ``restarts`` BFGS runs from random O(1) factors. An output bias is left out (the levels are
    those of the network without c).
    """
    params = theory_params(state_covariance(state, cov), 1.0, groups=state.groups)
    key = jax.random.key(0) if key is None else key
    K, N = state.wt.shape
    levels = [float(theory_pmse(state.scale(0.0), params))]
    for k in range(1, min(K, N) + 1):
        tmpl = state

        def loss(y, _, k=k, tmpl=tmpl):
            wt, vs, b = y
            pad = ((0, 0), (0, N - k))
            s = TheoryState(
                jnp.pad(wt, pad),
                None if vs is None else jnp.pad(vs, pad),
                jnp.zeros_like(tmpl.M),
                b,
                tmpl.activation,
                tmpl.tied,
                tmpl.D,
                Mg=None if tmpl.Mg is None else jnp.zeros_like(tmpl.Mg),
                groups=tmpl.groups,
            )
            return theory_pmse(s, params)

        best = np.inf
        for _ in range(restarts):
            k1, k2, key = jax.random.split(key, 3)
            wt0 = jax.random.normal(k1, (K, k), state.wt.dtype)
            vs0 = None if state.tied else jax.random.normal(k2, (K, k), state.wt.dtype)
            b0 = None if state.b is None else jnp.zeros_like(state.b)
            sol = optx.minimise(
                loss, optx.BFGS(rtol=rtol, atol=atol), (wt0, vs0, b0), max_steps=max_steps, throw=False
            )
            value = float(loss(sol.value, None))
            # pmse >= 0 always: a negative or non-finite value is a numerical breakdown of an
            # excursion to extreme parameters, not a minimum.
            if np.isfinite(value) and value >= 0:
                best = min(best, value)
        levels.append(best if np.isfinite(best) else np.nan)
    return np.asarray(levels)


def relu_fraction(beta, *, output_bias: bool = True) -> np.ndarray | float:
    """f(beta): the fraction of its component's variance that one unit v relu(s + beta) explains at
    best (s the standardised pre-activation, beta its bias in units of the pre-activation's standard
    deviation; docs/theory.md, "Output bias"). With a trained output bias c,
    f = Phi(beta)^2 / Var(relu(s + beta)) (0.733 at beta = 0, -> 1 as beta -> infinity); with an
    encoder bias only, f = Phi(beta)^2 / E[relu(s + beta)^2] (at most 1/2, at beta = 0)."""
    from scipy.stats import norm

    beta = np.asarray(beta, np.float64)
    Phi, phi = norm.cdf(beta), norm.pdf(beta)
    second = (1 + beta**2) * Phi + beta * phi  # E[relu(s + beta)^2]
    f = Phi**2 / (second - (beta * Phi + phi) ** 2) if output_bias else Phi**2 / second
    return float(f) if f.ndim == 0 else f


def relu_level(cov: Covariance, K: int, *, output_bias: bool = False) -> float:
    """The level of the one-unit analysis for K relu units (docs/theory.md, "Output bias").

    Without an output bias (no bias, or an encoder bias only) a unit on one component explains at
    most half of its variance, and a pair (relu(s) - relu(-s) = s) a whole one: the level is PCA(0)
    minus the K largest of (rho_1/2, rho_1/2, rho_2/2, rho_2/2, ...) / (2D) (for K = 2: PCA(1)).
    Networks started from small weights and zero biases stay above it; it is not a bound for every
    network (units mixing components with large encoder biases can pass it: measured, K = 2,
    spikes (3, 5), D = 400, eta = 0.5, from b = 1: pmse 4.36 at t = 200 against PCA(1) = 4.98).
    With a trained output bias f(beta) -> 1 and the level is PCA(K), approached as the biases grow.
    """
    pca = np.asarray(cov.pca_errors(min(K, cov.dim)), np.float64)
    if output_bias:
        return float(pca[-1])
    spec = np.asarray(cov.spectrum(), np.float64)[: (K + 1) // 2 + 1]
    halves = np.sort(np.repeat(spec / 2, 2))[::-1][:K]
    return float(pca[0] - halves.sum() / (2 * cov.dim))
