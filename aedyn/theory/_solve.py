"""Integrate the equations of motion with diffrax (docs/theory.md §3, §4).

:func:`solve` is pure and traceable with its default arguments: ``jax.jit``, ``jax.vmap`` (over
learning rates, weight decay, initial scale, the covariance's eigenvalues, the initial state),
``jax.grad``/``jax.jacrev``/``jax.jacfwd`` and ``shard_map`` all apply to it. The solver policy
(:mod:`aedyn.theory._policy`) runs inside the trace.

Gradients. diffrax differentiates a solve in reverse mode with ``RecursiveCheckpointAdjoint``
(a checkpointed loop with a custom VJP, which forward mode cannot enter) and in forward mode with
``ForwardMode`` (a plain loop, which reverse mode cannot transpose). The default ``adjoint=None``
gives both: the solve is a ``jax.custom_jvp`` whose tangent map is linear in the input tangent and
is built with ``jax.lax.custom_linear_solve`` (:func:`._linear.linear_map`; JAX's public primitive
for a linear map with a custom transpose, and a batching rule): applied, it is the ``ForwardMode``
JVP; transposed, it is the ``RecursiveCheckpointAdjoint`` VJP whose forward pass computed the
primal. So ``jax.grad`` costs what diffrax's reverse mode costs, and ``jax.jacfwd`` what its
forward mode costs. (Second derivatives are not supported; pass an explicit ``adjoint`` for those.)
"""

import dataclasses
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Real

from .._checks import check_int, check_number, check_times, is_concrete, require_x64
from .._data import Covariance
from .._defaults import ATOL, LR, MAX_STEPS, MERGE_RTOL, NODES, RTOL, log_times
from .._errors import SolveError
from .._model import AutoEncoder
from .._compat import lineax_shard_map_compat
from .._rules import LearningRatesLike, Scalar, check_weight_decay, learning_rates
from .._trajectory import Trajectory
from ._policy import (
    STIFF_PID,
    default_solver,
    explicit_adjoint,
    phases,
    regime,
    resolve_method,
    stiff_controller,
    warn_regime,
)
from ._linear import linear_map
from ._rhs import TheoryParams, rhs, theory_pmse
from ._state import (
    TheoryState,
    check_groups,
    explicit_modes,
    group_members,
    init_state,
    merge_layout,
    state_overlaps,
)


def theory_params(cov: Covariance, lr: LearningRatesLike = LR, weight_decay: Scalar = 0.0,
                  groups: Sequence[tuple[int, int]] = ()) -> TheoryParams:
    """The :class:`TheoryParams` of a covariance, learning rates and weight decay (float64), for a
    state whose explicit modes ``groups`` (``TheoryState.groups``) are merged: each group then
    evolves at its mean eigenvalue (its common one when the merge is exact)."""
    require_x64("aedyn.theory")
    dt = jnp.float64
    rho = cov.eigvals.astype(dt)
    rho_g, n_g = None, ()
    if groups:
        groups = check_groups(groups, cov.n_modes)
        n_g = tuple(b - a for a, b in groups)
        members, ids = group_members(groups)
        rho_g = jax.ops.segment_sum(rho[members], ids, len(groups)) / jnp.asarray(n_g, dt)
        rho = rho[explicit_modes(groups, cov.n_modes)]
    return TheoryParams(
        learning_rates(lr, dt), jnp.asarray(weight_decay, dt), rho, cov.bulk.astype(dt), cov.n_bulk, rho_g, n_g
    )


class _Plan(eqx.Module):
    """Everything static about a solve (hashable: the key of its compiled program)."""

    rule: str
    method: str
    solver: object  # a diffrax solver, or None for the two-phase default
    stiff: object  # the second-phase solver of the default policy, or None
    explicit_steps: int
    rtol: float
    atol: float
    max_steps: int
    nodes: int
    adjoint: object
    progress: bool


def _restart_point(state0, ys, ts):
    """``(k, state, t)``: the last saved time whose state is finite (k = -1: none; then state0, t = 0)."""
    leaves = jax.tree_util.tree_leaves(ys)
    finite = jnp.stack([jnp.all(jnp.isfinite(y.reshape(y.shape[0], -1)), axis=1) for y in leaves]).all(0)
    k = jnp.sum(jnp.cumprod(finite)) - 1
    kk = jnp.maximum(k, 0)
    state = jax.tree_util.tree_map(lambda y, y0: jnp.where(k >= 0, y[kk], y0), ys, state0)
    return k, state, jnp.where(k >= 0, ts[kk], jnp.zeros((), ts.dtype))


def _guard(x):
    """A non-finite start (possible only under a trace: concrete input is checked) takes no step:
    every save time becomes 0, the state stays non-finite and the solve reports failure."""
    state0, params, ts = x
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves((state0, params))]))
    return state0, params, jnp.where(finite, ts, jnp.zeros_like(ts))


def _run(plan: _Plan, adjoint, x, solver, y0, t0, max_steps, controller=None):
    _, params, ts = x
    term = diffrax.ODETerm(lambda t, y, args: rhs(t, y, args, rule=plan.rule, method=plan.method, nodes=plan.nodes))
    meter = diffrax.TqdmProgressMeter() if plan.progress else diffrax.NoProgressMeter()
    return diffrax.diffeqsolve(
        term, solver, t0=t0, t1=ts[-1], dt0=None, y0=y0, args=params,
        saveat=diffrax.SaveAt(ts=jnp.maximum(ts, t0)),
        stepsize_controller=controller or diffrax.PIDController(rtol=plan.rtol, atol=plan.atol),
        max_steps=max_steps, throw=False, adjoint=adjoint, progress_meter=meter,
    )


def _first_phase(plan: _Plan, adjoint, x):
    """(states at ts, result, steps) of the explicit phase (of the user's solver when given)."""
    state0, _, ts = x
    if plan.solver is None:
        adjoint = explicit_adjoint(adjoint, plan.explicit_steps)
    first = _run(plan, adjoint, x, plan.solver or default_solver(), state0, jnp.zeros((), ts.dtype),
                 plan.explicit_steps)
    return first.ys, first.result, first.stats["num_steps"]


def _second_phase(plan: _Plan, adjoint, x, ys, result, steps):
    """(states at ts, stats): where the explicit budget ran out (stiff), the implicit phase from the
    last state the first phase saved. Otherwise it starts at t1 and takes no step."""
    state0, _, ts = x
    implicit = jnp.zeros((), bool)
    if plan.stiff is not None:
        stiff = result == diffrax.RESULTS.max_steps_reached
        k, st, t_r = _restart_point(state0, ys, ts)
        last = jax.tree_util.tree_map(lambda y: y[-1], ys)
        y0 = jax.tree_util.tree_map(lambda a, b: jnp.where(stiff, a, b), st, last)
        second = _run(plan, adjoint, x, plan.stiff, y0, jnp.where(stiff, t_r, ts[-1]),
                      plan.max_steps - plan.explicit_steps, stiff_controller(plan.rtol, plan.atol))
        keep = (jnp.arange(ts.shape[0]) <= k) | ~stiff
        ys = jax.tree_util.tree_map(
            lambda a, b: jnp.where(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), ys, second.ys
        )
        result = diffrax.RESULTS.where(stiff, second.result, result)
        steps = steps + jnp.where(stiff, second.stats["num_steps"], 0)
        implicit = stiff
    stats = {
        "num_steps": jnp.asarray(steps, jnp.int32),
        "successful": result == diffrax.RESULTS.successful,
        "max_steps_reached": result == diffrax.RESULTS.max_steps_reached,
        "implicit": implicit,
    }
    return ys, stats


def _integrate(plan: _Plan, adjoint, x):
    """(states at ts, stats) of the solve of ``x = (state0, params, ts)`` with a given adjoint."""
    x = _guard(x)
    return _second_phase(plan, adjoint, x, *_first_phase(plan, adjoint, x))


def _both_modes(plan: _Plan, x):
    """The solve, differentiable in forward and reverse mode (see the module docstring)."""
    f_rev = jax.tree_util.Partial(_integrate, plan, diffrax.RecursiveCheckpointAdjoint())
    f_fwd = jax.tree_util.Partial(_integrate, plan, diffrax.ForwardMode())

    @jax.custom_jvp
    def solve_x(x):
        return f_rev(x)

    @solve_x.defjvp
    def solve_x_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        ys, vjp_fn, stats = jax.vjp(f_rev, x, has_aux=True)
        jvp = lambda dx: jax.jvp(lambda x: f_fwd(x)[0], (x,), (dx,))[1]  # the ForwardMode JVP
        dys = linear_map(jvp, lambda ct: vjp_fn(ct)[0], dx, ys)  # transposed: the checkpointed VJP
        zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, jax.dtypes.float0), stats)
        return (ys, stats), (dys, zeros)

    return solve_x(x)


def _outputs(plan: _Plan, params, ys, stats):
    e = jax.vmap(lambda s: theory_pmse(s, params, plan.nodes))(ys)
    ov = jax.vmap(lambda s: state_overlaps(s, params.rho, params.bulk, params.rho_g))(ys)
    stats["successful"] = stats["successful"] & jnp.all(jnp.isfinite(e))
    return ys, e, ov, stats


@eqx.filter_jit
def _solve_core(plan: _Plan, x):
    """(states, pmse, overlaps, stats): the compiled solve, cached by equinox on ``plan``."""
    if plan.adjoint is None:
        ys, stats = _both_modes(plan, x)
    else:
        ys, stats = _integrate(plan, plan.adjoint, x)
    return _outputs(plan, x[1], ys, stats)


@eqx.filter_jit
def _continue_core(plan: _Plan, x, ys, steps):
    """:func:`_solve_core` for a stiff solve whose explicit phase already ran (``ys``, ``steps``:
    what it saved and the steps it took, its budget spent): only the implicit phase (outside a
    trace; the same numbers as the two phases in one program, whose primal uses this adjoint)."""
    adjoint = plan.adjoint or diffrax.RecursiveCheckpointAdjoint()
    x = _guard(x)
    ys, stats = _second_phase(plan, adjoint, x, ys, diffrax.RESULTS.max_steps_reached, steps)
    return _outputs(plan, x[1], ys, stats)


def state_covariance(state: TheoryState, cov: Covariance) -> Covariance:
    """``cov``, or ``cov.merged()`` where the state is laid out on it (a state that a solve from a
    network returned: its largest group of equal eigenvalues became the bulk)."""
    if cov.n_bulk == 0:
        merged = cov.merged()
        if merged.n_bulk > 0 and state.wt.shape[-1] == merged.n_modes - sum(b - a for a, b in state.groups):
            return merged
    return cov


def _initial_state(init, cov: Covariance) -> TheoryState:
    if not isinstance(cov, Covariance):
        raise TypeError(f"cov: expected a Covariance, got {type(cov).__name__}")
    if isinstance(init, AutoEncoder):
        for name in ("W", "V", "b", "c"):
            x = getattr(init, name)
            if x is not None and is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
                raise ValueError(f"init: the network's {name} contains non-finite values (NaN or inf)")
        return init_state(init, cov)
    if isinstance(init, TheoryState):
        if init.D != cov.dim:
            raise ValueError(f"cov: dimension {cov.dim} does not match the state's D = {init.D}")
        try:
            groups = check_groups(init.groups, cov.n_modes, "init.groups")
        except ValueError as err:
            raise ValueError(f"cov: does not fit the state's merged groups: {err}") from None
        n_kept = cov.n_modes - sum(b - a for a, b in groups)
        if init.wt.shape[-1] != n_kept:
            merged = f" ({cov.n_modes - n_kept} merged in {len(groups)} groups)" if groups else ""
            raise ValueError(
                f"cov: the state has {init.wt.shape[-1]} explicit modes, the covariance {n_kept}{merged}"
            )
        if init.wt.dtype != jnp.float64:
            raise TypeError(f"init: the theory state must be float64, got {init.wt.dtype}")
        if is_concrete(init):
            for name in ("wt", "vs", "M", "b", "c"):
                x = getattr(init, name)
                if x is not None and not bool(np.all(np.isfinite(np.asarray(x)))):
                    raise ValueError(f"init: the state's {name} contains non-finite values")
        return init
    raise TypeError(f"init: expected an AutoEncoder or a TheoryState, got {type(init).__name__}")


def initial_layout(init: AutoEncoder | TheoryState, cov: Covariance,
                   merge_rtol: float = MERGE_RTOL) -> tuple[TheoryState, Covariance]:
    """(initial state, covariance) as :func:`solve` lays them out: from a network, the largest group
    of equal eigenvalues merged into the bulk (``cov.merged()``) and other runs of equal
    eigenvalues into group moments (``merge_rtol``); a :class:`TheoryState` as it is."""
    check_number(merge_rtol, "merge_rtol", lo=0.0)
    layout = None  # host eigenvalues of the explicit modes, for the merge of groups
    if isinstance(init, AutoEncoder) and isinstance(cov, Covariance):
        if is_concrete(cov.eigvals, cov.bulk):
            drop, _ = cov._merge_plan()
            layout = np.asarray(cov.eigvals, np.float64)
            layout = layout if drop is None else layout[~drop]
        cov = cov.merged()  # equal eigenvalues share one bulk moment (exact; docs/theory.md §6)
    elif isinstance(init, TheoryState) and isinstance(cov, Covariance):
        cov = state_covariance(init, cov)
    state0 = _initial_state(init, cov)
    if layout is not None:
        state0 = merge_layout(state0, layout, merge_rtol)
    return state0, cov


def solve(
    init: AutoEncoder | TheoryState,
    cov: Covariance,
    *,
    lr: LearningRatesLike = LR,
    ts: Sequence[float] | Real[ArrayLike, " n"] | None = None,
    rule: str = "vanilla",
    weight_decay: Scalar = 0.0,
    init_scale: Scalar = 1.0,
    method: str = "auto",
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
    max_steps: int = MAX_STEPS,
    adjoint: diffrax.AbstractAdjoint | None = None,
    progress: bool = False,
    nodes: int = NODES,
    throw: bool = True,
    merge_rtol: float = MERGE_RTOL,
) -> Trajectory:
    """Solve the theory from a network's exact order parameters (or a :class:`TheoryState`).

    Pure and traceable (jit, vmap, grad, jacfwd, shard_map) in every array argument. Needs float64
    (``jax.config.update("jax_enable_x64", True)``).

    Args:
        init: the initial network (its exact factors are used) or a theory state.
        cov: the input covariance; a spiked model (few eigenpairs + isotropic bulk) is solved in
            the reduced spikes+bulk form whose cost does not grow with D. From a network, the
            largest group of equal eigenvalues is merged into the bulk first (``cov.merged()``,
            exact), and every other run of equal eigenvalues into one group moment
            (:func:`aedyn.theory.merge_modes`, ``merge_rtol``). Other N-mode states that turn
            stiff continue with :class:`aedyn.theory.Rodas5` on a structured Jacobian (O(N K^2)
            per solve).
        lr: eta for all weights, or a mapping with keys "W", "V", "b", "c".
        ts: (n,) increasing times t = steps / D (default: 100 log-spaced times from 0.01 to 100).
        rule: "vanilla" or "truncated".
        weight_decay: kappa, per unit of t.
        init_scale: multiplies the initial weights (so the solve is differentiable in it).
        method: "stein" (hand-written, closed-form kernels), "gradient" (autodiff of the
            population error; every activation, bias, output bias, tied) or "auto" (stein where it applies).
        solver: a diffrax solver; default None: the policy of :mod:`aedyn.theory` (Tsit5, the stiff
            remainder with the Rosenbrock method :class:`aedyn.theory.Rodas5`;
            ``stats["implicit"]`` says where).
        rtol: relative tolerance of the step-size control.
        atol: absolute tolerance of the step-size control.
        max_steps: the step budget (both phases together).
        adjoint: a diffrax adjoint; default None supports both ``jax.grad`` and ``jax.jacfwd``.
        progress: a diffrax progress bar.
        nodes: Gauss-Hermite nodes for activations without closed-form kernels.
        throw: raise if the solve fails (:class:`SolveError` outside a trace, an
            ``equinox.error_if`` error inside one); else NaNs and ``stats["successful"]`` False.
        merge_rtol: from a network, explicit modes whose eigenvalues agree within this relative
            tolerance share one group moment (docs/theory.md §6). The default MERGE_RTOL merges
            equal eigenvalues only (exact); a larger value bins the spectrum, an **approximation**
            (each bin evolves at its mean eigenvalue; measured error in docs/theory.md §6). A
            :class:`TheoryState` keeps its own layout (``merge_modes`` merges one).

    Returns:
        A :class:`Trajectory`: ``ts``, ``pmse`` (n,), ``overlaps`` (n, ...), the final ``state``,
        ``pca`` (K + 1,), ``params`` (learning rates, weight decay, initial scale), ``stats``
        (``num_steps``, ``successful``, ``max_steps_reached``, ``implicit``, and ``regime``: 0
        inside the theory's regime, 1 past the learning rate where SGD departs from it by 5%, 2
        where SGD diverges — with a :class:`aedyn.RegimeWarning` outside a trace) and ``config``.
    """
    state0, cov = initial_layout(init, cov, merge_rtol)
    require_x64("aedyn.theory.solve")
    if not isinstance(rule, str) or rule not in ("vanilla", "truncated"):
        raise ValueError(f"rule: the theory covers 'vanilla' and 'truncated', got {rule!r}")
    check_weight_decay(weight_decay, state0.D)
    check_number(init_scale, "init_scale", lo=0.0)
    check_number(rtol, "rtol", lo=0.0, lo_open=True)
    check_number(atol, "atol", lo=0.0, lo_open=True)
    max_steps = check_int(max_steps, "max_steps", lo=1)
    nodes = check_int(nodes, "nodes", lo=2)
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"solver: expected a diffrax solver such as diffrax.Kvaerno5(), got {solver!r}")
    if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(f"adjoint: expected a diffrax adjoint, got {adjoint!r}")
    method = resolve_method(method, state0.activation, state0.tied, state0.b is not None or state0.c is not None)
    if ts is None:
        ts = log_times()
    if is_concrete(ts):
        ts = check_times(ts)
    ts = jnp.asarray(ts, jnp.float64)
    if ts.ndim != 1:
        raise ValueError(f"ts: expected a 1-D array of times, got shape {ts.shape}")
    params = theory_params(cov, lr, weight_decay, state0.groups)
    code = regime(params.lr, state0.D)
    warn_regime(code, state0.D, "solve")
    state0 = state0.scale(jnp.asarray(init_scale, jnp.float64))
    stiff, explicit = phases(solver, max_steps, rule=rule, method=method, nodes=nodes)
    plan = _Plan(rule, method, solver, stiff, explicit, float(rtol), float(atol), max_steps, nodes, adjoint,
                 bool(progress))
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        lineax_shard_map_compat()  # implicit solves under shard_map (lineax#185)
    x = (state0, params, ts)
    concrete = is_concrete(x)
    if concrete and plan.stiff is not None:
        # Outside a trace, the explicit phase alone first (compiles in half the time); only a stiff
        # solve compiles and runs the implicit phase, from where the first one stopped. Same
        # numbers as under a trace.
        ys, e, ov, stats = _solve_core(dataclasses.replace(plan, stiff=None), x)
        if bool(stats["max_steps_reached"]):
            ys, e, ov, stats = _continue_core(plan, x, ys, stats["num_steps"])
    else:
        ys, e, ov, stats = _solve_core(plan, x)
    if throw and concrete and not bool(stats["successful"]):
        bad = np.where(~np.isfinite(np.asarray(e)))[0]
        where = f" (non-finite from t = {float(ts[bad[0]]):.4g})" if bad.size else ""
        reason = "max_steps reached" if bool(stats["max_steps_reached"]) else "the solver failed"
        raise SolveError(
            f"solve: the ODE solve failed{where}: {reason} after {int(stats['num_steps'])} steps. Try a larger "
            "max_steps, looser tolerances or an implicit solver (solver=aedyn.theory.Rodas5())."
        )
    if throw and not concrete:
        e = eqx.error_if(e, ~stats["successful"], "solve: the ODE solve failed (max_steps reached or non-finite "
                         "state); pass throw=False to get NaNs and stats['successful'] instead")
    stats["regime"] = code
    K = state0.K
    info = {
        "kind": "theory", "D": state0.D, "K": K, "modes": int(state0.wt.shape[-1]), "bulk_directions": cov.n_bulk,
        "groups": [list(g) for g in state0.groups], "merge_rtol": float(merge_rtol),
        "activation": state0.activation.name, "rule": rule, "tied": state0.tied, "bias": state0.b is not None,
        "output_bias": state0.c is not None,
        "method": method, "solver": type(solver or default_solver()).__name__,
        "stiff_solver": None if plan.stiff is None else type(plan.stiff).__name__,
        "stiff_pid": None if plan.stiff is None else list(STIFF_PID),
        "explicit_steps": plan.explicit_steps, "rtol": float(rtol), "atol": float(atol), "max_steps": max_steps,
    }
    hyper = {"lr_W": params.lr.W, "lr_V": params.lr.V, "lr_b": params.lr.b, "lr_c": params.lr.c,
             "weight_decay": params.weight_decay,
             "init_scale": jnp.asarray(init_scale, jnp.float64)}
    return Trajectory(
        ts=ts, pmse=e, overlaps=ov, state=jax.tree_util.tree_map(lambda y: y[-1], ys), pca=cov.pca_errors(K),
        params=hyper, stats=stats, info=tuple(info.items()),
    )
