"""Integrate the equations of motion with diffrax (THEORY.md §4)."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import SolveError, check_times, is_concrete, log_times
from ..data import Covariance
from ..model import AutoEncoder
from ..rules import learning_rates
from ..trajectory import Trajectory
from .rhs import TheoryParams, rhs, theory_pmse
from .state import TheoryState, init_state, state_overlaps

__all__ = ["solve", "solve_states", "theory_params", "default_solver", "stiff_solver", "restart_point"]

#: States up to this many numbers may fall back to the implicit solver (dense Jacobian is cheap).
IMPLICIT_MAX_SIZE = 1024
#: With the default solver, an explicit solve that needs more steps than this is stiff: it is
#: continued with :func:`stiff_solver` (see :func:`default_solver`).
EXPLICIT_STEPS = 4096


def theory_params(cov: Covariance, lr, weight_decay=0.0) -> TheoryParams:
    """The :class:`TheoryParams` of a covariance, learning rates and weight decay (float64)."""
    dt = jnp.float64
    return TheoryParams(
        learning_rates(lr, dt),
        jnp.asarray(weight_decay, dt),
        cov.eigvals.astype(dt),
        cov.bulk.astype(dt),
        cov.n_bulk,
    )


def _state_size(state: TheoryState) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(state))


def default_solver(state: TheoryState):
    """Tsit5, the first try of the default policy.

    The equations are not stiff while the network learns (escapes, plateaus), and there the
    explicit Tsit5 takes fewer steps than an implicit method at ~1/10 of the cost per step. Near
    convergence the fast spike directions relax at rates ~ eta rho_max / D while the bulk relaxes
    at eta sigma^2 / D (THEORY.md §4): long horizons (eta t >~ 500 in the standard example) are
    stiff. So with ``solver=None``, :func:`solve` and :func:`aedyn.sweeps.sweep_theory` first
    solve with Tsit5 limited to :data:`EXPLICIT_STEPS` steps; a solve that reaches that limit is
    continued with :func:`stiff_solver` from the last state Tsit5 saved (see
    :func:`restart_point`), so only the explicit steps after that state are repeated (small states only: for a state of more than
    :data:`IMPLICIT_MAX_SIZE` numbers, e.g. the full-spectrum form at large D, a dense Jacobian
    costs more than the extra explicit steps, and Tsit5 runs to ``max_steps``).
    """
    del state
    return diffrax.Tsit5()


def stiff_solver(state: TheoryState):
    """Kvaerno5 (L-stable ESDIRK) for small states, None for states too large for a dense Jacobian."""
    if _state_size(state) <= IMPLICIT_MAX_SIZE:
        return diffrax.Kvaerno5()
    return None


def solve_states(
    state0: TheoryState,
    params: TheoryParams,
    ts,
    *,
    rule: str = "vanilla",
    method: str = "gradient",
    solver=None,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    max_steps: int | None = 1_000_000,
    progress: bool = False,
    adjoint=None,
    nodes: int | None = None,
    t0=0.0,
):
    """The traceable solve: states at ``ts`` (leading axis) and the diffrax result code.

    jit-, vmap- and grad-compatible in ``state0`` and ``params``. ``solver=None`` is Tsit5 (no
    stiff fallback inside a trace: pass ``diffrax.Kvaerno5()`` for long, stiff horizons).
    ``t0`` (may be traced): the time of ``state0``; times in ``ts`` before it return ``state0``.
    """
    solver = solver if solver is not None else default_solver(state0)
    term = diffrax.ODETerm(lambda t, y, args: rhs(t, y, args, rule=rule, method=method, nodes=nodes))
    ts = jnp.asarray(ts, jnp.float64)
    kwargs = {}
    if progress:
        kwargs["progress_meter"] = diffrax.TqdmProgressMeter()
    if adjoint is not None:
        kwargs["adjoint"] = adjoint
    t0 = jnp.asarray(t0, jnp.float64)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=ts[-1],
        dt0=None,
        y0=state0,
        args=params,
        saveat=diffrax.SaveAt(ts=jnp.maximum(ts, t0)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
        **kwargs,
    )
    return sol.ys, sol.result, sol.stats["num_steps"]


def restart_point(state0: TheoryState, ys: TheoryState, ts):
    """Where to continue a solve that stopped early: ``(k, state, t)`` with ``k`` the index of
    the last time whose saved state is finite (-1: none), ``state`` that state (``state0`` if
    none) and ``t`` its time (0 if none). Traceable; ``ys`` has the times on its leading axis."""
    leaves = jax.tree_util.tree_leaves(ys)
    finite = jnp.stack([jnp.all(jnp.isfinite(y.reshape(y.shape[0], -1)), axis=1) for y in leaves]).all(0)
    k = jnp.sum(jnp.cumprod(finite)) - 1
    kk = jnp.maximum(k, 0)
    state = jax.tree_util.tree_map(lambda y, y0: jnp.where(k >= 0, y[kk], y0), ys, state0)
    return k, state, jnp.where(k >= 0, jnp.asarray(ts, jnp.float64)[kk], 0.0)


def _observables(states, params):
    e = jax.vmap(lambda s: theory_pmse(s, params))(states)
    ov = jax.vmap(lambda s: state_overlaps(s, params.rho, params.bulk))(states)
    return e, ov


@eqx.filter_jit
def _solve_jit(state0, params, ts, rule, method, solver, rtol, atol, max_steps, progress, nodes, t0=0.0):
    ys, result, nsteps = solve_states(
        state0, params, ts, rule=rule, method=method, solver=solver, rtol=rtol, atol=atol,
        max_steps=max_steps, progress=progress, nodes=nodes, t0=t0,
    )
    e, ov = _observables(ys, params)
    return ys, e, ov, result, nsteps


def solve(
    init: AutoEncoder | TheoryState,
    cov: Covariance,
    *,
    lr,
    ts=None,
    rule: str = "vanilla",
    weight_decay: float = 0.0,
    init_scale=1.0,
    method: str = "auto",
    solver=None,
    rtol: float = 1e-7,
    atol: float = 1e-10,
    max_steps: int = 1_000_000,
    progress: bool = False,
    nodes: int | None = None,
    throw: bool = True,
) -> Trajectory:
    """Solve the theory from a network's exact order parameters (or a :class:`TheoryState`).

    Args:
        init: the initial network (its exact factors are used) or a theory state.
        cov: the input covariance; a spiked model (few eigenpairs + isotropic bulk) is solved in
            the reduced spikes+bulk form whose cost does not grow with D.
        lr: eta for all weights, or a mapping with keys "W", "V", "b".
        ts: increasing times (default: 100 log-spaced times from 0.01 to 100); t = steps / D.
        rule: "vanilla" or "truncated".
        weight_decay: kappa, per unit of t.
        init_scale: multiplies the initial weights (so the solve is differentiable in it).
        method: "stein" (hand-written, closed-form kernels), "gradient" (autodiff of the
            population error; every activation, bias, tied) or "auto" (stein where it applies).
        solver: a diffrax solver (default: Tsit5, continued with Kvaerno5 if stiff; see
            :func:`default_solver`).
        rtol, atol: step-size control tolerances.
        throw: raise :class:`SolveError` if the solve fails (else NaNs and ``config["result"]``).
    """
    if isinstance(init, AutoEncoder):
        state0 = init_state(init, cov)
    elif isinstance(init, TheoryState):
        state0 = init
        if state0.D != cov.dim:
            raise ValueError(f"cov: dimension {cov.dim} does not match the state's D = {state0.D}")
        if state0.wt.shape[1] != cov.n_modes:
            raise ValueError(
                f"cov: the state has {state0.wt.shape[1]} explicit modes, the covariance {cov.n_modes}"
            )
    else:
        raise TypeError(f"init: expected an AutoEncoder or a TheoryState, got {type(init).__name__}")
    if rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    if is_concrete(weight_decay) and (not np.isfinite(weight_decay) or weight_decay < 0):
        raise ValueError(f"weight_decay: expected kappa >= 0, got {weight_decay}")
    if method == "auto":
        ok = state0.activation.closed_form and not state0.tied and state0.b is None
        method = "stein" if ok else "gradient"
    if method not in ("stein", "gradient"):
        raise ValueError(f"method: expected 'auto', 'stein' or 'gradient', got {method!r}")
    ts = check_times(log_times(100.0) if ts is None else ts)
    params = theory_params(cov, lr, weight_decay)
    state0 = state0.scale(jnp.asarray(init_scale, jnp.float64))
    note = None
    if solver is None:
        used = default_solver(state0)
        stiff = stiff_solver(state0)
        first_max = max_steps if stiff is None else min(EXPLICIT_STEPS, max_steps)
        ys, e, ov, result, nsteps = _solve_jit(
            state0, params, jnp.asarray(ts), rule, method, used, rtol, atol, first_max, progress, nodes
        )
        if stiff is not None and first_max < max_steps and result == diffrax.RESULTS.max_steps_reached:
            # THEORY.md §4: stiff near convergence; continue implicitly from the last saved state.
            k, st, t_r = restart_point(state0, ys, ts)
            note = (f"Tsit5 reached {first_max} steps (stiff) after t = {float(t_r):.6g}: continued from there "
                    f"with {type(stiff).__name__}")
            used = stiff
            ys2, e2, ov2, result, n2 = _solve_jit(
                st, params, jnp.asarray(ts), rule, method, used, rtol, atol, max_steps - first_max, progress,
                nodes, t_r,
            )
            first = jnp.arange(len(ts)) <= k
            pick = lambda a, b: jnp.where(first.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
            ys, e, ov = (jax.tree_util.tree_map(pick, x1, x2) for x1, x2 in ((ys, ys2), (e, e2), (ov, ov2)))
            nsteps = nsteps + n2
    else:
        used = solver
        ys, e, ov, result, nsteps = _solve_jit(
            state0, params, jnp.asarray(ts), rule, method, solver, rtol, atol, max_steps, progress, nodes
        )
    ok = result == diffrax.RESULTS.successful
    e = np.asarray(e)
    config = {
        "kind": "theory",
        "D": state0.D,
        "K": state0.K,
        "modes": int(state0.wt.shape[1]),
        "bulk_directions": cov.n_bulk,
        "activation": state0.activation.name,
        "rule": rule,
        "tied": state0.tied,
        "bias": state0.b is not None,
        "lr": {k: float(getattr(params.lr, k)) for k in ("W", "V", "b")},
        "weight_decay": float(weight_decay),
        "init_scale": float(init_scale),
        "method": method,
        "solver": type(used).__name__,
        "rtol": rtol,
        "atol": atol,
        "num_steps": int(nsteps),
        "result": "successful" if ok else str(result),
    }
    if note is not None:
        config["solver_note"] = note
    if not ok or not np.all(np.isfinite(e)):
        bad = np.where(~np.isfinite(e))[0]
        where = f" (non-finite from t = {ts[bad[0]]:.4g})" if bad.size else ""
        msg = (
            f"solve: the ODE solve failed{where}: diffrax result {result}, after {int(nsteps)} steps. "
            "Try a larger max_steps, looser tolerances or an implicit solver (diffrax.Kvaerno5)."
        )
        if throw:
            raise SolveError(msg)
        config["error"] = msg
    return Trajectory(
        ts=jnp.asarray(ts),
        pmse=jnp.asarray(e),
        overlaps=ov,
        net=None,
        state=jax.tree_util.tree_map(lambda y: y[-1], ys),
        pca=cov.pca_errors(state0.K),
        config=config,
    )
