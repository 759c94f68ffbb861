"""The theory's solver policy and method choice, in one place (used by ``solve``, and so by
sweeps, objectives and fits, which are transforms of it).

The equations are not stiff at the start (the explicit Tsit5 is cheapest there), but near
convergence the fast spike directions relax at rates ~ eta rho_max / D while the bulk relaxes at
eta sigma^2 / D (docs/theory.md §4): long horizons are stiff. So the default solve runs in two
phases inside one trace: Tsit5 for at most :data:`EXPLICIT_STEPS` steps, then, only where that
budget ran out, the Rosenbrock method :class:`aedyn.theory.Rodas5` from the last state Tsit5 saved
(an empty second phase otherwise). Under ``vmap`` the members that finished in the first phase
cost nothing in the second.
"""

import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int, check_number, is_concrete
from .._defaults import ATOL, ETA_DEPART_PER_D, ETA_DIVERGE_PER_D, MERGE_RTOL, NODES, RTOL
from .._errors import RegimeWarning

#: Steps the explicit first phase may take before the solve continues with the implicit method.
#: Tsit5 starts cheaply, but once the network has learnt (or an escape is fast) its steps are
#: stability-limited, where Rodas5 takes tens of steps for Tsit5's thousands at ~10 (dense) to ~15
#: (structured) times the cost per step. Measured (benchmarks/RESULTS.md, 2026-12-07 eighth
#: session; best of two after compilation, 41 log-spaced times, one process per budget): on the
#: spiked (3, 5) spectrum at D = 1024 (1024 modes and merged, K = 4), the D = 500 kernel spectrum
#: of tests/test_stiff.py (500 modes, K = 2) and the standard example (D = 500, K = 2), eta 0.1
#: and 1, horizons t = 10 to 1e5: a budget of 128 was the fastest in total (t = 300 to 1e5,
#: 32 solves: 5.4 s; 256: 5.8 s; 512: 6.6 s; the former 2048 structured / 4096 dense: 12.1 s;
#: t = 10 and 100: 0.69 s; 32: 0.90 s; former: 1.60 s).
EXPLICIT_STEPS = 128
#: The implicit phase factors a dense Jacobian for states of at most this many numbers per overlap
#: (per entry of the P order parameters, 3 K^2 for an untied network without bias, through which the
#: structured form's low-rank coupling runs), larger ones a structured one (block-diagonal over
#: modes plus a rank-P coupling). Dense costs O(n) evaluations of the right-hand side and an
#: O(n^3) factorisation for n numbers; structured a fixed O(P) part plus O(N Z^4). Measured with
#: Rodas5 (benchmarks/RESULTS.md, 2026-12-07 eleventh session; jitted solve after compilation,
#: 2-core CPU): dense faster up to n / P = 2 at K = 2, 4, 6, 8 (1.2-2x), the two equal at
#: n / P = 4.7 for K = 2, structured faster from n / P = 5 (1.3-2.1x at K = 2, 4x at K = 4).
IMPLICIT_DENSE_RATIO = 4

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


def default_solver(state=None):
    """Tsit5: the first phase of the default policy."""
    del state
    return diffrax.Tsit5()


def explicit_adjoint(adjoint, steps: int):
    """The explicit phase's adjoint: diffrax's default ``RecursiveCheckpointAdjoint()`` with a
    checkpoint at each of the phase's ``steps`` (at most :data:`EXPLICIT_STEPS` states kept), any
    other adjoint as given. diffrax's default, ~sqrt(2 steps) checkpoints (15 for 128 steps),
    recomputes steps in reverse mode. Measured (benchmarks/RESULTS.md, 2026-12-07 tenth session;
    six rounds in one process): value-and-grad of the 1024-mode spiked solve to t = 1e3 at eta 0.1
    -1% to 10% faster (median 6%), of bench_merge's 100-mode merged solve 1-6%. The memory it adds,
    128 states, is a tenth of the implicit phase's default checkpoints (~1400 states)."""
    if type(adjoint) is diffrax.RecursiveCheckpointAdjoint and adjoint.checkpoints is None:
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=steps)
    return adjoint


def structured_implicit(size: int, overlaps: int) -> bool:
    """Whether the implicit phase factors the Jacobian of a state of ``size`` numbers, whose flow
    depends on ``overlaps`` order parameters, in structured form (else densely): for more than
    :data:`IMPLICIT_DENSE_RATIO` numbers per overlap."""
    size, overlaps = check_int(size, "size", lo=1), check_int(overlaps, "overlaps", lo=1)
    return size > IMPLICIT_DENSE_RATIO * overlaps


def stiff_solver(*, rule: str = "vanilla", method: str = "stein", nodes: int = NODES):
    """The implicit phase's solver: :class:`aedyn.theory.Rodas5`, a Rosenbrock method of order 5
    that factors the exact Jacobian once per step (densely for states of few modes, in structured
    form, O(N K^2) per solve, for N-mode states: :func:`structured_implicit`; docs/theory.md §4).
    ``rule``, ``method``, ``nodes``: those of the solve's right-hand side."""
    from ._rosenbrock import Rodas5  # _rosenbrock imports _stiff and _rhs, which import this module

    return Rodas5(rule=rule, method=method, nodes=nodes)


def phases(solver, max_steps: int, *, rule: str, method: str, nodes: int = NODES):
    """``(stiff, explicit_steps)`` of a solve: with ``solver=None`` and more than
    :data:`EXPLICIT_STEPS` steps allowed, the implicit phase's solver and the explicit budget; else
    ``(None, max_steps)`` (one phase). The one place ``solve`` and ``sweep_theory`` take it from."""
    if solver is not None or max_steps <= EXPLICIT_STEPS:
        return None, max_steps
    return stiff_solver(rule=rule, method=method, nodes=nodes), EXPLICIT_STEPS


#: (pcoeff, icoeff) of the implicit phase's step-size controller: diffrax's I controller. Measured
#: (benchmarks/RESULTS.md, 2026-12-07 eighth session; Rodas5 on the spiked (3, 5) spectrum at
#: D = 1024, K = 4, from the state at t = 200 to t = 1e3 and 1e5, eta 0.1 and 1, rtol 1e-7): 31-226
#: steps with no rejection; the PI coefficients (0.4, 0.3), which Kvaerno5 needed, took 1.5 times
#: as many for a smaller error than asked, (0.2, 0.7) 1.1 times as many.
STIFF_PID = (0.0, 1.0)


def stiff_controller(rtol: float = RTOL, atol: float = ATOL) -> diffrax.PIDController:
    """The step-size controller of the default policy's implicit phase: diffrax's PIDController at
    the solve's ``rtol``, ``atol`` with the coefficients :data:`STIFF_PID`."""
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
