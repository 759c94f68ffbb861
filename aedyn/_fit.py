"""Fit hyperparameters and spectra through the theory, with optax.

* :func:`fit_curve` — recover the learning rate(s) and the initial scale (or any parameters)
  from an observed pmse curve (a seed-averaged SGD curve, a training log).
* :func:`fit_spectrum` — infer the spike eigenvalues rho from a learning curve.
* :func:`optimise_time_to_target` — choose eta_W, eta_V, weight decay and initial scale that
  reach a target error soonest, within bounds (e.g. eta <= eta_max to stay in the first-order
  regime) and a fixed time budget.

All optimise in log-parameters: a parameter with bounds (lo, hi) is
``exp(log lo + (log hi - log lo) * sigmoid(u))``, an unbounded one ``exp(u)``. Every fit returns
a :class:`FitResult` with the loss and gradient-norm history, the stop reason and whether the
stop criterion (gradient norm or relative loss change) was met; ``progress=True`` shows a tqdm
bar with the current loss.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import check_int, check_number
from ._data import Covariance
from ._objectives import curve_distance, make_curve, time_to_level


@dataclasses.dataclass
class FitResult:
    """Outcome of a fit.

    Attributes:
        params: fitted parameters (natural units, numpy).
        loss: final loss.
        history: ``loss``, ``grad_norm`` (in the optimised log-coordinates) and ``params`` per step.
        steps: optimisation steps taken.
        converged: whether the stop criterion was met (else ``max_steps`` was reached).
        reason: why the optimisation stopped.
    """

    params: dict
    loss: float
    history: dict
    steps: int
    converged: bool
    reason: str

    def summary(self) -> str:
        ps = ", ".join(f"{k}={np.array2string(np.asarray(v), precision=5)}" for k, v in self.params.items())
        return (f"{'converged' if self.converged else 'not converged'} after {self.steps} steps ({self.reason}); "
                f"loss {self.loss:.4e}; {ps}")


def _to_natural(u: Mapping, bounds: Mapping):
    out = {}
    for k, x in u.items():
        b = bounds.get(k)
        if b is None:
            out[k] = jnp.exp(x)
        else:
            lo, hi = np.log(b[0]), np.log(b[1])
            out[k] = jnp.exp(lo + (hi - lo) * jax.nn.sigmoid(x))
    return out


def _to_unconstrained(theta: Mapping, bounds: Mapping):
    out = {}
    for k, v in theta.items():
        try:
            v = np.asarray(v, np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{k}: expected a number or an array of numbers, got {v!r}") from err
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"{k}: log-parametrised values must be finite and > 0, got {v}")
        b = bounds.get(k)
        if b is None:
            out[k] = jnp.asarray(np.log(v))
        else:
            if not (len(b) == 2 and np.isfinite(b[0]) and np.isfinite(b[1]) and 0 < b[0] < b[1]):
                raise ValueError(f"bounds[{k}]: expected (lo, hi) with 0 < lo < hi, got {b}")
            lo, hi = np.log(b[0]), np.log(b[1])
            s = np.clip((np.log(v) - lo) / (hi - lo), 1e-6, 1 - 1e-6)
            out[k] = jnp.asarray(np.log(s / (1 - s)))
    return out


def minimise(
    loss: Callable[[dict], jax.Array],
    theta0: Mapping,
    *,
    bounds: Mapping | None = None,
    optimizer: str | optax.GradientTransformation = "lbfgs",
    max_steps: int = 100,
    gtol: float = 1e-7,
    rtol: float = 1e-10,
    patience: int = 3,
    progress: bool = False,
) -> FitResult:
    """Minimise ``loss(theta)`` over positive parameters, optimising their logarithms.

    Args:
        loss: scalar function of a dict of parameters (natural units), differentiable.
        theta0: starting values (> 0).
        bounds: optional (lo, hi) per parameter.
        optimizer: "lbfgs" (optax L-BFGS with zoom line search, default), "adam", or any optax
            transformation.
        max_steps: at most this many steps.
        gtol: stop when the gradient norm (log-coordinates) is below this, ...
        rtol: ... or when the loss improved by less than ``rtol`` (relative) ...
        patience: ... for ``patience`` consecutive steps.
        progress: tqdm progress bar.
    """
    if not isinstance(theta0, Mapping) or not theta0:
        raise TypeError(f"theta0: expected a non-empty mapping of parameter names to values, got {theta0!r}")
    bounds = dict(bounds or {})
    unknown = set(bounds) - set(theta0)
    if unknown:
        raise ValueError(f"bounds: parameters {sorted(unknown)} are not in theta0 ({sorted(theta0)})")
    if not (optimizer in ("lbfgs", "adam") or isinstance(optimizer, optax.GradientTransformation)):
        raise ValueError(f"optimizer: expected 'lbfgs', 'adam' or an optax.GradientTransformation, got {optimizer!r}")
    max_steps = check_int(max_steps, "max_steps", lo=1)
    patience = check_int(patience, "patience", lo=1)
    check_number(gtol, "gtol", lo=0.0)
    check_number(rtol, "rtol", lo=0.0)
    u0 = _to_unconstrained(theta0, bounds)
    f = lambda u: loss(_to_natural(u, bounds))  # noqa: E731
    if optimizer == "lbfgs":
        opt = optax.lbfgs()
        vg = optax.value_and_grad_from_state(f)

        @jax.jit
        def step(u, state):
            value, grad = vg(u, state=state)
            updates, state = opt.update(grad, state, u, value=value, grad=grad, value_fn=f)
            return optax.apply_updates(u, updates), state, value, optax.tree.norm(grad)
    else:
        opt = optax.adam(optax.exponential_decay(0.05, max_steps, 0.02)) if optimizer == "adam" else optimizer

        @jax.jit
        def step(u, state):
            value, grad = jax.value_and_grad(f)(u)
            updates, state = opt.update(grad, state, u)
            return optax.apply_updates(u, updates), state, value, optax.tree.norm(grad)

    state = opt.init(u0)
    u = u0
    hist = {"loss": [], "grad_norm": [], "params": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_steps, desc="fit", unit="step")
    best = (np.inf, u0)
    converged, reason, stall = False, f"max_steps={max_steps} reached", 0
    n = 0
    for n in range(1, max_steps + 1):
        # optax's L-BFGS mixes int32 and int64 counters: trace it with standard promotion even
        # when the caller runs JAX with strict promotion.
        with jax.numpy_dtype_promotion("standard"):
            u_new, state, value, gnorm = step(u, state)
        value, gnorm = float(value), float(gnorm)
        hist["loss"].append(value)
        hist["grad_norm"].append(gnorm)
        hist["params"].append({k: np.asarray(v) for k, v in _to_natural(u, bounds).items()})
        if value < best[0]:
            best = (value, u)
        if bar is not None:
            bar.set_postfix(loss=f"{value:.4e}", grad=f"{gnorm:.2e}")
            bar.update(1)
        if not np.isfinite(value):
            reason = "non-finite loss"
            break
        if gnorm < gtol:
            converged, reason = True, f"gradient norm {gnorm:.2e} < gtol={gtol:g}"
            break
        if len(hist["loss"]) > 1:
            prev = hist["loss"][-2]
            stall = stall + 1 if abs(prev - value) <= rtol * max(abs(prev), 1e-300) else 0
            if stall >= patience:
                converged, reason = True, f"relative loss change < rtol={rtol:g} for {patience} steps"
                break
        u = u_new
    if bar is not None:
        bar.close()
    value, u_best = best
    params = {k: np.asarray(v) for k, v in _to_natural(u_best, bounds).items()}
    return FitResult(params, float(value), hist, n, converged, reason)


def fit_curve(
    ts,
    observed,
    cov: Covariance,
    *,
    K: int = 2,
    seeds: Sequence[int] = (0,),
    init: Mapping | None = None,
    fixed: Mapping | None = None,
    bounds: Mapping | None = None,
    log: bool = True,
    curve_kw: Mapping | None = None,
    **minimise_kw,
) -> FitResult:
    """Fit theory parameters to an observed pmse curve (by default eta and the initial scale).

    The model is the theory's curve averaged over the initial networks of ``seeds`` (the same
    seeds as the observed SGD runs; for a training log of unknown initialisation, use several
    seeds as a typical initial condition). ``init``: the parameters to fit and their starting
    values (default ``{"lr": 0.1, "init_scale": 0.1}``); ``fixed``: other parameters.
    """
    init = dict(init or {"lr": 0.1, "init_scale": 0.1})
    curve = make_curve(cov, K=K, seeds=seeds, ts=ts, base=fixed, **(curve_kw or {}))
    obs = np.asarray(observed, np.float64)
    if obs.shape != np.shape(ts):
        raise ValueError(f"observed: expected one value per time, shape {np.shape(ts)}, got {obs.shape}")
    if not np.all(np.isfinite(obs)) or np.any(obs <= 0):
        raise ValueError("observed: the curve must be finite and positive (did a run diverge?)")
    return minimise(lambda th: curve_distance(curve(th), obs, log=log), init, bounds=bounds, **minimise_kw)


def fit_spectrum(
    ts,
    observed,
    cov: Covariance,
    *,
    rho0=None,
    K: int = 2,
    seeds: Sequence[int] = (0,),
    fixed: Mapping | None = None,
    **kw,
) -> FitResult:
    """Infer the explicit eigenvalues rho (e.g. the spikes) from a learning curve, the learning
    rate and initial scale being known (``fixed``). ``cov`` supplies the eigenvectors and the
    bulk; ``rho0`` the starting guess (default: ``cov.eigvals``)."""
    rho0 = np.asarray(cov.eigvals if rho0 is None else rho0, np.float64)
    return fit_curve(ts, observed, cov, K=K, seeds=seeds, init={"rho": rho0}, fixed=fixed, **kw)


def optimise_time_to_target(
    cov: Covariance,
    target: float,
    *,
    budget: float,
    K: int = 2,
    seeds: Sequence[int] = (0,),
    init: Mapping | None = None,
    bounds: Mapping | None = None,
    n_times: int = 200,
    curve_kw: Mapping | None = None,
    **minimise_kw,
) -> FitResult:
    """Choose eta_W, eta_V, weight decay and initial scale that minimise the time at which the
    theory's pmse first reaches ``target``, on a log grid up to ``budget`` (a target not reached
    within the budget is penalised, see :func:`aedyn.objectives.time_to_level`).

    ``bounds`` default: eta_W, eta_V in [1e-3, 0.5] (the first-order regime at D ~ 500),
    init_scale in [1e-3, 0.5], weight_decay in [1e-6, 0.1]. The loss is log(time).
    """
    init = dict(init or {"lr_W": 0.1, "lr_V": 0.1, "init_scale": 0.1, "weight_decay": 1e-4})
    bounds = dict(bounds or {"lr_W": (1e-3, 0.5), "lr_V": (1e-3, 0.5), "init_scale": (1e-3, 0.5),
                             "weight_decay": (1e-6, 0.1)})
    ts = np.geomspace(1e-2, budget, n_times)
    curve = make_curve(cov, K=K, seeds=seeds, ts=ts, **(curve_kw or {}))
    return minimise(lambda th: jnp.log(time_to_level(ts, curve(th), target)), init, bounds=bounds, **minimise_kw)
