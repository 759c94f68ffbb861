# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Differentiable theory: gradients, fits, optimal settings
#
# The ODE theory is a differentiable JAX function of the learning rates, the initial scale, the
# weight decay and the spectrum: `jax.grad` of a learning curve, a fit of $\eta$ and the initial
# scale $\sigma_0$ to an SGD curve, and the settings that reach a target error soonest.
#
# **Run it anywhere.** The first cell installs aedyn where it is missing (on Colab: set
# `AEDYN_REPO_URL`, or edit `REPO_URL`, to the aedyn repository); in a checkout it installs nothing.
# `SMALL` (the default on a CPU) keeps the run short; on a GPU or TPU runtime the full size runs.
# Full size (`AEDYN_NOTEBOOK_SIZE=full`) on a 2-core CPU: 402 s, measured 2026-12-06.

# %%
import importlib.util
import os
import subprocess
import sys

REPO_URL = os.environ.get("AEDYN_REPO_URL", "https://github.com/<owner>/aedyn")
if importlib.util.find_spec("aedyn") is None:  # Colab or a fresh environment
    spec = "-e .." if os.path.exists("../pyproject.toml") else f"aedyn @ git+{REPO_URL}"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *spec.split()])

# %%
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
import aedyn  # noqa: E402

T0 = time.perf_counter()
BACKEND = jax.default_backend()
print(f"JAX {jax.__version__}, aedyn {aedyn.__version__}: {jax.device_count()} {BACKEND.upper()} device(s)")
SMALL = os.environ.get("AEDYN_NOTEBOOK_SIZE", "small" if BACKEND == "cpu" else "full") == "small"
print("size:", "small" if SMALL else "full")

# %% [markdown]
# ## Gradients of a learning curve
#
# The spiked model with spike strengths (2, 1) in $D = 500$ dimensions, $K = 2$ erf units.
# `objectives.make_curve` turns the theory, averaged over the initial networks of some seeds, into
# a map $\theta \mapsto$ pmse(ts); any scalar of it can be differentiated, in reverse or forward
# mode, and checked against finite differences.

# %%
import diffrax  # noqa: E402

from aedyn import fit, objectives, sweeps  # noqa: E402

# The default solver policy (Tsit5, then Rodas5 past 128 steps) compiles both phases into every
# gradient. The small run stays at eta t <= 150, far from stiff: Tsit5 alone compiles one phase and
# gives the same numbers to the solver tolerance (the full run keeps the default policy).
SOLVER = diffrax.Tsit5() if SMALL else None
D, K = 500, 2
cov = aedyn.spiked_covariance(jax.random.key(1), D, [2.0, 1.0])
ts = aedyn.log_times(30.0 if SMALL else 100.0, 30)
curve = objectives.make_curve(cov, K=K, seeds=(0, 1), ts=ts, solver=SOLVER)
area = lambda theta: objectives.log_time_area(ts, curve(theta))  # noqa: E731
theta = {"lr": 0.1, "init_scale": 0.1, "weight_decay": 0.0, "rho": cov.eigvals}
value, grads = objectives.value_and_grad(area, theta)
_, fwd = objectives.value_and_grad(area, {"lr": 0.1, "init_scale": 0.1}, mode="forward")
fd = objectives.finite_difference(area, {"lr": 0.1, "init_scale": 0.1})
print("area under the curve (against log t):", float(value))
for k in ("lr", "init_scale"):
    print(f"d area / d {k}: reverse {float(grads[k]):.6g}, forward {float(fwd[k]):.6g}, "
          f"finite differences {float(fd[k]):.6g}")
print("d area / d rho (the two spike eigenvalues):", np.asarray(grads["rho"]))

# %% [markdown]
# ## Fitting the learning rate and the initial scale to SGD
#
# SGD runs at $\eta = 0.4$, initial scale 0.1 (four seeds, one vectorised sweep); the theory
# averaged over the same four initial networks is fitted to their mean curve (L-BFGS in
# log-parameters), starting from $\eta = 0.2$, $\sigma_0 = 0.2$.

# %%
ts_sgd = aedyn.log_times(20.0 if SMALL else 100.0, 15)
sgd = sweeps.sweep_simulation(cov, K=K, grid=dict(seed=[0, 1, 2, 3]), base=dict(lr=0.4, init_scale=0.1),
                              ts=ts_sgd, dtype=jnp.float64)
obs = sgd.mean("seed")
res = fit.fit_curve(sgd.ts, obs, cov, K=K, seeds=(0, 1, 2, 3), init={"lr": 0.2, "init_scale": 0.2},
                    curve_kw={"solver": SOLVER})
print(f"fitted eta = {float(res.params['lr']):.4f} (true 0.4), initial scale = "
      f"{float(res.params['init_scale']):.4f} (true 0.1); converged: {res.converged}, {res.steps} steps")

# %%
import matplotlib.pyplot as plt  # noqa: E402

fitted = objectives.make_curve(cov, K=K, seeds=(0, 1, 2, 3), ts=sgd.ts, solver=SOLVER)(
    {"lr": float(res.params["lr"]), "init_scale": float(res.params["init_scale"])})
fig, ax = plt.subplots(figsize=(6, 4))
ax.loglog(sgd.ts, obs, "o", ms=4, label="SGD, mean of 4 runs")
ax.loglog(sgd.ts, fitted, "-", label="theory, fitted eta and initial scale")
ax.set_xlabel("t = steps / D")
ax.set_ylabel("pmse")
ax.legend()
plt.show()

# %% [markdown]
# ## The settings that reach a target error soonest
#
# The time at which the theory's curve first reaches a target error is a smooth function of
# $\eta_W$, $\eta_V$, the initial scale and the weight decay; minimise it within bounds that keep
# SGD in the theory's regime ($\eta \le 0.5$ at $D = 500$, see the finite-size study).

# %%
target = 0.7
best = fit.optimise_time_to_target(cov, target, budget=300.0, K=K, seeds=(0, 1), max_steps=10 if SMALL else 40,
                                   curve_kw={"solver": SOLVER})
default_curve = objectives.make_curve(cov, K=K, seeds=(0, 1), ts=np.geomspace(1e-2, 300.0, 200), solver=SOLVER)
t_default = float(objectives.time_to_level(np.geomspace(1e-2, 300.0, 200), default_curve({}), target))
print("optimised settings:", {k: round(float(v), 4) for k, v in best.params.items()})
print(f"time to pmse {target}: optimised {float(np.exp(best.loss)):.3g}, defaults (eta 0.1, scale 0.1) {t_default:.3g}")
print(f"wall time: {time.perf_counter() - T0:.1f} s ({'small' if SMALL else 'full'} size, {BACKEND})")
