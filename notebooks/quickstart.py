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
# # aedyn quick start: SGD and its exact theory
#
# Online SGD of a shallow autoencoder on a spiked model, and the exact ODE theory of its learning
# curve (Refinetti & Goldt, ICML 2022): the error descends in plateaus at the PCA errors of one,
# then two principal components, and the theory predicts the SGD curve from the same initial weights.
#
# **Run it anywhere.** The first cell installs aedyn where it is missing (on Colab: set
# `AEDYN_REPO_URL`, or edit `REPO_URL`, to the aedyn repository); in a checkout it installs nothing.
# `SMALL` (the default on a CPU) keeps the run short; on a GPU or TPU runtime the full size runs.
# Full size (`AEDYN_NOTEBOOK_SIZE=full`) on a 2-core CPU: 74 s, measured 2026-12-06.

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
import numpy as np

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
import aedyn  # noqa: E402

T0 = time.perf_counter()
BACKEND = jax.default_backend()
print(f"JAX {jax.__version__}, aedyn {aedyn.__version__}: {jax.device_count()} {BACKEND.upper()} device(s)")
SMALL = os.environ.get("AEDYN_NOTEBOOK_SIZE", "small" if BACKEND == "cpu" else "full") == "small"
print("size:", "small" if SMALL else "full")

# %% [markdown]
# ## The standard spiked example
#
# $x = c_1 a_1 + c_2 a_2 + \xi$ in $D = 500$ dimensions, spike strengths (3, 5), $K = 2$ erf
# units, $\eta = 0.1$, initial weights $\mathcal N(0, 0.1^2)$. Time $t$ counts SGD steps in units of $D$.

# %%
D, K = 500, 2
cov = aedyn.spiked_covariance(jax.random.key(0), D, strengths=(3.0, 5.0))
net = aedyn.init_autoencoder(jax.random.key(1), D, K, activation="erf", scale=0.1)
pca = np.asarray(cov.pca_errors(K))
print("pmse at initialisation:", float(aedyn.pmse(net, cov)))
print("PCA errors with 0, 1, 2 components:", np.round(pca, 4))

# %% [markdown]
# ## Simulation and theory from the same initial network
#
# Several SGD runs at once: `aedyn.simulate` is a pure JAX function, so `jax.vmap` over the data
# keys runs them in one call. The theory starts from the exact order parameters of the same network.

# %%
T_MAX = 30.0 if SMALL else 1000.0
SEEDS = 4 if SMALL else 16
ts = aedyn.log_times(T_MAX, 40)
keys = jax.random.split(jax.random.key(2), SEEDS)
runs = jax.jit(jax.vmap(lambda k: aedyn.simulate(net, cov, key=k, lr=0.1, ts=ts)))(keys)
sim_ts = np.asarray(runs.ts[0], np.float64)
th = aedyn.theory.solve(net, cov, lr=0.1, ts=sim_ts)
mean = np.asarray(runs.pmse, np.float64).mean(0)
rel = np.abs(mean - np.asarray(th.pmse)) / np.asarray(th.pmse)
print(f"pmse at t = {sim_ts[-1]:g}: SGD {mean[-1]:.4f} (mean of {SEEDS} runs), theory {float(th.pmse[-1]):.4f}")
print(f"largest relative gap between the mean SGD curve and the theory: {rel.max():.3f}")

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 4))
for p in np.asarray(runs.pmse):
    ax.loglog(sim_ts, p, color="C0", alpha=0.3, lw=0.8)
ax.loglog(sim_ts, mean, color="C0", label=f"SGD, {SEEDS} runs and their mean")
ax.loglog(th.ts, th.pmse, "--", color="C1", label="ODE theory")
for k in (1, 2):
    ax.axhline(pca[k], color="0.5", ls=":", lw=1)
    ax.text(sim_ts[0] * 1.2, pca[k] * 1.05, f"PCA, {k} comp.", fontsize=8, color="0.3")
ax.set_xlabel("t = steps / D")
ax.set_ylabel("pmse")
ax.legend()
plt.show()

# %% [markdown]
# The overlaps of the encoder vectors with the principal components (cosines) show which directions
# the units have learnt:

# %%
print("cos(w^k, u_j) at the last time (rows: units, columns: PCs), one SGD run:")
print(np.round(np.asarray(runs.overlaps.m_W[0, -1]), 3))
print("and the theory:")
print(np.round(np.asarray(th.overlaps.m_W[-1]), 3))

# %% [markdown]
# ## Gradients through the theory
#
# `theory.solve` is differentiable: how the error at the last time depends on the learning rate.

# %%
final = lambda lr: aedyn.theory.solve(net, cov, lr=lr, ts=sim_ts).pmse[-1]  # noqa: E731
g = jax.grad(final)(0.1)
h = 1e-4
fd = (final(0.1 + h) - final(0.1 - h)) / (2 * h)
print(f"d pmse(t={sim_ts[-1]:g}) / d eta: autodiff {float(g):.6g}, finite differences {float(fd):.6g}")
print(f"wall time: {time.perf_counter() - T0:.1f} s ({'small' if SMALL else 'full'} size, {BACKEND})")
