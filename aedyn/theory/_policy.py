"""The theory's solver policy and method choice, in one place (used by ``solve``, and so by
sweeps, objectives and fits, which are transforms of it).

The equations are not stiff while the network learns (escapes, plateaus): there the explicit
Tsit5 takes fewer steps than an implicit method at ~1/10 of the cost per step. Near convergence
the fast spike directions relax at rates ~ eta rho_max / D while the bulk relaxes at
eta sigma^2 / D (docs/theory.md §4): long horizons are stiff. So the default solve runs in two
phases inside one trace: Tsit5 for at most :func:`explicit_budget` steps, then, only where that
budget ran out, Kvaerno5 from the last state Tsit5 saved (an empty second phase otherwise). Under
``vmap`` the members that finished in the first phase cost nothing in the second.
"""

import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, check_number, is_concrete
from .._defaults import ATOL, CHORD_TOL, ETA_DEPART_PER_D, ETA_DIVERGE_PER_D, MERGE_RTOL, NODES, RTOL
from .._errors import RegimeWarning
from ._state import TheoryState

#: Steps the explicit first phase may take before a solve counts as stiff.
EXPLICIT_STEPS = 4096
#: The same for states on the structured implicit path (more than :data:`IMPLICIT_MAX_SIZE`
#: numbers). There a stiff stretch that Tsit5 crosses in thousands of stability-limited steps takes
#: Kvaerno5 tens. Measured (benchmarks/RESULTS.md, 2026-12-07; best of two after compilation, 41
#: log-spaced times): on the spiked (3, 5) spectrum at D = 1024 (1024 modes, K = 4) and a D = 500
#: kernel spectrum (500 modes, K = 2), eta 0.1 and 1, eight horizons from t = 300 to 1e5, a budget
#: of 2048 was as fast or faster in every case (all eight: 21.3 s; 4096: 24.6 s; 1024: 22.1 s).
#: Switching as soon as Tsit5's steps are stability-limited (a stiffness detector) was slower:
#: Kvaerno5 then takes hundreds of accuracy-limited steps at ~25 times the cost of Tsit5's.
STRUCTURED_EXPLICIT_STEPS = 2048
#: States up to this many numbers factor a dense Jacobian in the implicit phase; larger ones a
#: structured one (block-diagonal over modes plus a low-rank coupling). Measured (jitted solve
#: after compilation, 2-core CPU, benchmarks/RESULTS.md 2026-12-06 fourth session): at 80 numbers
#: (spikes+bulk, K = 4) the two paths cost the same within 0.8-1.4x; at 200 the structured one is
#: 7x faster, at 416 28x. Small states stay dense: there batched solves equal separate ones to
#: 1e-12 (the structured chord's looser tolerance moves them by ~1e-10).
IMPLICIT_MAX_SIZE = 128

METHODS = ("stein", "gradient")


def resolve_method(method: str, activation, tied: bool, bias: bool) -> str:
    """``"auto"``: the hand-written Stein form where it applies (closed-form kernels: linear, erf,
    relu; untied; no encoder or output bias), else the autodiff ``"gradient"`` form. ``bias``: whether
    the network has an encoder or an output bias."""
    if method == "auto":
        return "stein" if (activation.closed_form and not tied and not bias) else "gradient"
    if method not in METHODS:
        raise ValueError(f"method: expected 'auto', 'stein' or 'gradient', got {method!r}")
    if method == "stein" and (tied or bias or not activation.closed_form):
        raise ValueError(
            "method: the Stein form covers untied networks without bias and with a closed-form "
            "activation (linear, erf, relu); use method='gradient' (or 'auto')"
        )
    return method


def mode_groups(eigvals, K: int, Z: int, rtol: float) -> tuple[tuple[int, int], ...]:
    """The runs ``(start, stop)`` of explicit modes to merge into group moments (docs/theory.md §6).

    A run extends while ``rho_start - rho_i <= rtol * rho_start + MERGE_RTOL * rho_max`` (eigvals
    descending): at ``rtol = MERGE_RTOL`` only equal eigenvalues merge (exact); a larger ``rtol``
    bins the spectrum (an approximation: each bin evolves at its mean eigenvalue). The leading
    min(K, N) modes stay explicit (the overlaps report their cosines), and a run is merged only
    when it is longer than Z, the size of its moment's side, where merging saves numbers."""
    rho = np.asarray(eigvals, np.float64)
    if rho.ndim != 1 or not np.all(np.isfinite(rho)):
        raise ValueError(f"eigvals: expected a 1-D array of finite eigenvalues, got shape {rho.shape}")
    K, Z = check_int(K, "K", lo=1), check_int(Z, "Z", lo=1)
    check_number(rtol, "rtol", lo=0.0)
    N = len(rho)
    if N == 0:
        return ()
    floor = MERGE_RTOL * max(float(np.max(np.abs(rho))), 1e-300)
    out, start = [], min(K, N)
    while start < N:
        stop = start + 1
        while stop < N and rho[start] - rho[stop] <= rtol * abs(rho[start]) + floor:
            stop += 1
        if stop - start > Z:
            out.append((start, stop))
        start = stop
    return tuple(out)


def state_size(state) -> int:
    """Numbers in a state (its leaves' sizes)."""
    return sum(x.size for x in jax.tree_util.tree_leaves(state))


def explicit_budget(state: TheoryState) -> int:
    """Steps the default policy's explicit phase may take on ``state`` before the solve counts as
    stiff: :data:`EXPLICIT_STEPS`, or :data:`STRUCTURED_EXPLICIT_STEPS` for states that the
    implicit phase factors in structured form (more than :data:`IMPLICIT_MAX_SIZE` numbers)."""
    if not isinstance(state, TheoryState):
        raise TypeError(f"state: expected an aedyn.theory.TheoryState, got {type(state).__name__}")
    return STRUCTURED_EXPLICIT_STEPS if state_size(state) > IMPLICIT_MAX_SIZE else EXPLICIT_STEPS


def default_solver(state=None):
    """Tsit5: the first phase of the default policy."""
    del state
    return diffrax.Tsit5()


def stiff_solver(state, *, rule: str = "vanilla", method: str = "stein", nodes: int = NODES,
                 rtol: float = RTOL, atol: float = ATOL, chord_tol: float = CHORD_TOL):
    """Kvaerno5 (L-stable ESDIRK). States of at most :data:`IMPLICIT_MAX_SIZE` numbers factor its
    dense Jacobian (diffrax's default root finder); larger (N-mode) states use
    :class:`aedyn.theory.StructuredChord`, which factors the Jacobian as N per-mode blocks plus a
    low-rank coupling through the overlaps (O(N K^2) per step; docs/theory.md §4). ``rule``,
    ``method``, ``nodes``: those of the solve's right-hand side; ``rtol``, ``atol``: its tolerances.
    The structured chord iteration stops at ``chord_tol`` times ``rtol`` and ``atol``
    (``CHORD_TOL`` in aedyn/_defaults.py); the dense one at ``rtol`` and ``atol`` (diffrax's default)."""
    from ._stiff import StructuredChord  # _stiff imports _rhs, which imports this module

    if not isinstance(state, TheoryState):
        raise TypeError(f"state: expected an aedyn.theory.TheoryState, got {type(state).__name__}")
    if not isinstance(rule, str) or rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    nodes = check_int(nodes, "nodes", lo=2)
    for name, x in (("rtol", rtol), ("atol", atol), ("chord_tol", chord_tol)):
        check_number(x, name, lo=0.0, lo_open=True)
    if state_size(state) <= IMPLICIT_MAX_SIZE:
        return diffrax.Kvaerno5()
    rtol, atol = float(rtol) * float(chord_tol), float(atol) * float(chord_tol)
    chord = StructuredChord(rtol=rtol, atol=atol, rule=rule, method=method, nodes=int(nodes))
    return diffrax.Kvaerno5(root_finder=chord)


#: (pcoeff, icoeff) of the implicit phase's step-size controller: a PI controller, one of diffrax's
#: suggestions for mildly stiff problems. Its error estimate does not vary smoothly there (a step
#: too long for the chord iteration is rejected), and diffrax's default I controller (0, 1) had
#: about half of the implicit steps rejected. Measured (benchmarks/RESULTS.md, 2026-12-06 fifth
#: session; spiked (3, 5), D = 1024, K = 4, erf): implicit steps 2264 -> 1127 (reduced form,
#: eta = 1, t <= 1e5), 1682 -> 1120 (1024 modes, same), 941 -> 290 (1024 modes, eta = 0.1), the
#: error to a tight reference unchanged.
STIFF_PID = (0.4, 0.3)


def stiff_controller(rtol: float = RTOL, atol: float = ATOL) -> diffrax.PIDController:
    """The step-size controller of the default policy's implicit phase: diffrax's PIDController at
    the solve's ``rtol``, ``atol`` with the PI coefficients :data:`STIFF_PID` (the explicit phase
    and a solver passed by the user keep diffrax's default I controller)."""
    check_number(rtol, "rtol", lo=0.0, lo_open=True)
    check_number(atol, "atol", lo=0.0, lo_open=True)
    pcoeff, icoeff = STIFF_PID
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=pcoeff, icoeff=icoeff)


def regime(lr, D: int):
    """Where the learning rates put SGD relative to the first-order theory (traceable):
    0 inside its regime; 1 past eta = ETA_DEPART_PER_D * D, where SGD was measured to depart from
    the theory by 5%; 2 past eta = ETA_DIVERGE_PER_D * D, where SGD diverges (docs/finite_size.md).
    ``lr``: a LearningRates; the largest of eta_W, eta_V, eta_b, eta_c counts."""
    eta = jnp.maximum(jnp.maximum(jnp.maximum(lr.W, lr.V), lr.b), lr.c)
    return (eta > ETA_DEPART_PER_D * D).astype(jnp.int32) + (eta > ETA_DIVERGE_PER_D * D).astype(jnp.int32)


def warn_regime(code, D: int, what: str) -> None:
    """A :class:`RegimeWarning` for concrete regime codes past 0 (none under a trace)."""
    if not is_concrete(code):
        return
    code = np.asarray(code)
    n1, n2 = int(np.sum(code == 1)), int(np.sum(code == 2))
    if n2:
        warnings.warn(
            f"{what}: {n2} learning rate(s) above {ETA_DIVERGE_PER_D} D = {ETA_DIVERGE_PER_D * D:.4g}, where online "
            "SGD diverges (docs/finite_size.md): the theory's curve describes no SGD run there",
            RegimeWarning, stacklevel=3,
        )
    if n1:
        warnings.warn(
            f"{what}: {n1} learning rate(s) above {ETA_DEPART_PER_D} D = {ETA_DEPART_PER_D * D:.4g}, where SGD "
            "departs from the first-order theory by more than 5% (docs/finite_size.md)",
            RegimeWarning, stacklevel=3,
        )
