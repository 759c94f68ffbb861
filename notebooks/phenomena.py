# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The paper's phenomena: tied vs untied, ReLU and its biases, truncated vs vanilla
#
# Refinetti & Goldt (ICML 2022) use the exact theory to explain what a shallow autoencoder learns.
# This notebook reproduces their claims with the theory and with SGD on the same axes:
#
# 1. **tied vs untied** sigmoidal (erf) autoencoders: tied weights stay far above the PCA error, at
#    the level the analysis predicts; untied ones approach it slowly;
# 2. **ReLU**: one unit explains only half a component, so K = M units stay above PCA(M) with or
#    without an encoder bias; paired units (K = 2M) reach it, and so do K = M units that train an
#    output bias as well;
# 3. **truncated vs vanilla** SGD: the truncated (Sanger-like) rule finds the individual principal
#    components, vanilla SGD only their span.
#
# **Run it anywhere.** The first cell installs aedyn where it is missing (on Colab: set
# `AEDYN_REPO_URL`, or edit `REPO_URL`, to the aedyn repository); in a checkout it installs nothing.
# `SMALL` (the default on a CPU) runs fewer and shorter SGD runs; on a GPU or TPU runtime the full size runs.
# Full size (`AEDYN_NOTEBOOK_SIZE=full`) on a 2-core CPU: 324 s, measured 2026-12-06.

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

import diffrax
import jax
import matplotlib.pyplot as plt
import numpy as np

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
import aedyn  # noqa: E402

T0 = time.perf_counter()
BACKEND = jax.default_backend()
print(f"JAX {jax.__version__}, aedyn {aedyn.__version__}: {jax.device_count()} {BACKEND.upper()} device(s)")
SMALL = os.environ.get("AEDYN_NOTEBOOK_SIZE", "small" if BACKEND == "cpu" else "full") == "small"
print("size:", "small" if SMALL else "full")

# %% [markdown]
# ## The spiked model and the SGD runs
#
# Two spikes of strengths (3, 5) on an isotropic bulk in $D = 500$ dimensions (`aedyn.spiked_covariance`);
# $\eta = 0.1$; time $t$ counts SGD steps in units of $D$. The theory runs
# to $t = 10^4$ (a fraction of a second per solve); SGD, several seeds from the same initial network
# in one `vmap`-ed call, to $t = 200$ (`SMALL`) or $t = 2000$.

# %%
D, LR = 500, 0.1
cov = aedyn.spiked_covariance(jax.random.key(1), D, strengths=(3.0, 5.0))
pca = np.asarray(cov.pca_errors(4))
rho = np.asarray(cov.eigvals)
print("PCA errors with 0, 1, 2 components:", np.round(pca[:3], 4))
TS = aedyn.log_times(1e4, 60)
T_SGD = 200.0 if SMALL else 2000.0
SEEDS = 3 if SMALL else 10
ts_sgd = aedyn.log_times(T_SGD, 30)


def sgd(net, rule="vanilla"):
    """SEEDS SGD runs from ``net`` (float32), one call: (ts, pmse (SEEDS, n), trajectories)."""
    keys = jax.random.split(jax.random.key(2), SEEDS)
    runs = jax.jit(jax.vmap(lambda k: aedyn.simulate(net, cov, key=k, lr=LR, ts=ts_sgd, rule=rule)))(keys)
    return np.asarray(runs.ts[0], np.float64), np.asarray(runs.pmse, np.float64), runs


def theory(net, rule="vanilla"):
    return aedyn.theory.solve(net, cov, lr=LR, ts=TS, rule=rule)


def draw_pca(ax, levels=(1, 2)):
    for k in levels:
        ax.axhline(pca[k], color="0.5", ls=":", lw=1)
        ax.text(TS[1], pca[k] * 1.06, f"PCA({k})", fontsize=8, color="0.3")


# %% [markdown]
# ## 1. Tied vs untied erf autoencoders
#
# With tied weights ($V = W$) an erf network cannot scale its reconstruction independently of its
# encoder: the error stays at the minimum of the pmse over networks in the span of the leading
# components, computed by `aedyn.analysis.plateau_levels` (far above PCA). Untied, the encoder
# shrinks into the linear part of erf while the decoder grows, and the error creeps towards PCA(2).

# %%
tied = aedyn.init_autoencoder(jax.random.key(7), D, 2, activation="erf", tied=True, scale=1.0)
untied = aedyn.init_autoencoder(jax.random.key(7), D, 2, activation="erf", scale=0.1)
th_tied, th_untied = theory(tied), theory(untied)
predicted = aedyn.analysis.plateau_levels(aedyn.theory.init_state(tied, cov), cov)[-1]
t_s, e_tied, _ = sgd(tied)
_, e_untied, _ = sgd(untied)
print(f"tied erf: theory at t = 1e4: {float(th_tied.pmse[-1]):.4f}; predicted level: {predicted:.4f}; "
      f"SGD at t = {T_SGD:g}: {e_tied[:, -1].mean():.4f}")
gap_untied = (float(th_untied.pmse[-1]) - pca[2]) / pca[2]
print(f"untied erf: theory at t = 1e4: {float(th_untied.pmse[-1]):.4f}, PCA(2) = {pca[2]:.4f}: "
      f"relative gap to PCA(2): {gap_untied:.4f}")
print(f"tied level / PCA(2): {predicted / pca[2]:.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for label, th, e, c in (("tied", th_tied, e_tied, "C3"), ("untied", th_untied, e_untied, "C0")):
    ax.loglog(th.ts, th.pmse, color=c, label=f"{label}: theory")
    ax.loglog(t_s, e.mean(0), "o", ms=3, color=c, label=f"{label}: SGD ({SEEDS} seeds)")
ax.axhline(predicted, color="C3", ls="--", lw=1)
ax.text(TS[1], predicted * 1.06, "tied: predicted level", fontsize=8, color="C3")
draw_pca(ax)
ax.set_xlabel("t = steps / D")
ax.set_ylabel("pmse")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. ReLU autoencoders and the bias
#
# For zero-mean Gaussian inputs a single ReLU unit reconstructs half of its component's variance:
# one unit ends at PCA(0) $- \rho_1 / (4D)$ (half of $\rho_1 / (2D)$, the first component's share).
# So K = 2 units stay far above PCA(2), and a trained *encoder* bias does not help (it returns to 0:
# for zero-mean inputs the half-component at $\beta = 0$ is the best a unit can do, docs/theory.md).
# Paired units, K = 4 = 2M, can build $x = \mathrm{relu}(x) - \mathrm{relu}(-x)$ and reach PCA(2).

# %%
relu = {
    "K = 1": aedyn.init_autoencoder(jax.random.key(2), D, 1, activation="relu"),
    "K = 2": aedyn.init_autoencoder(jax.random.key(2), D, 2, activation="relu"),
    "K = 2, encoder bias": aedyn.init_autoencoder(jax.random.key(2), D, 2, activation="relu", bias=0.0),
    "K = 4 (paired)": aedyn.init_autoencoder(jax.random.key(2), D, 4, activation="relu"),
}
# Explicit solver: to t = 1e4 these take ~2e4 cheap steps, and the default policy's implicit phase
# would add ~10-30 s of compilation per network on a CPU (the biased one most).
th_relu = {name: aedyn.theory.solve(net, cov, lr=LR, ts=TS, solver=diffrax.Tsit5())
           for name, net in relu.items()}
for name, th in th_relu.items():
    print(f"relu {name}: theory at t = 1e4: {float(th.pmse[-1]):.4f}")
half = pca[0] - rho[0] / (4 * D)
print(f"one unit: half a component predicts {half:.4f}; theory {float(th_relu['K = 1'].pmse[-1]):.4f}")
print(f"encoder bias at t = 1e4 (theory): {np.round(np.asarray(th_relu['K = 2, encoder bias'].state.b), 4)}")
t_r, e_relu2, _ = sgd(relu["K = 2"])
print(f"relu K = 2 SGD at t = {T_SGD:g}: {e_relu2[:, -1].mean():.4f} (PCA(2) = {pca[2]:.4f})")
paired_gap = (float(th_relu["K = 4 (paired)"].pmse[-1]) - pca[2]) / pca[2]
print(f"paired units: relative gap to PCA(2): {paired_gap:.4f}")

# %% [markdown]
# With a trained **output bias** $c$ as well, $\hat x = \sum_k v^k g(\lambda^k) + c$, the picture
# changes: the encoder bias moves each unit into the linear part of the ReLU and $c$ cancels the mean
# it adds, so one unit explains a fraction $f(\beta) = \Phi(\beta)^2 / \mathrm{Var}(\mathrm{relu}(s + \beta))$
# of its component, rising from 0.733 at $\beta = 0$ to 1 (`aedyn.analysis.relu_fraction`), and
# K = 2 units go to PCA(2). (Started at $b = 1$, $c = 0$, $\eta = 0.5$; from $b = 0$ both units first
# sit on a saddle on the leading component, which SGD at finite D leaves much earlier than the
# theory: docs/workflows/figures.md. The explicit solver is the fast choice for this curve.)

# %%
both = aedyn.init_autoencoder(jax.random.key(2), D, 2, activation="relu", bias=1.0, output_bias=0.0)
th_relu["K = 2, encoder + output bias"] = aedyn.theory.solve(both, cov, lr=0.5, ts=aedyn.log_times(300.0, 40),
                                                             solver=diffrax.Tsit5())
th_both = th_relu["K = 2, encoder + output bias"]
gap_both = (float(th_both.pmse[-1]) - pca[2]) / pca[2]
print(f"relu K = 2, encoder + output bias: theory at t = 300: {float(th_both.pmse[-1]):.4f}, "
      f"PCA(2) = {pca[2]:.4f}: gap {gap_both:.4f}; encoder biases {np.round(np.asarray(th_both.state.b), 2)}")
f = aedyn.analysis.relu_fraction(np.array([0.0, 1.0, 2.0]))
print(f"one unit with both biases explains f(beta) = {f[0]:.3f}, {f[1]:.3f}, {f[2]:.3f} at beta = 0, 1, 2 "
      f"(encoder bias only: at most {aedyn.analysis.relu_fraction(0.0, output_bias=False):.3f})")

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for i, (name, th) in enumerate(th_relu.items()):
    ax.loglog(th.ts, th.pmse, color=f"C{i}", label=f"{name}: theory")
ax.loglog(t_r, e_relu2.mean(0), "o", ms=3, color="C1", label=f"K = 2: SGD ({SEEDS} seeds)")
draw_pca(ax)
ax.set_xlabel("t = steps / D")
ax.set_ylabel("pmse")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. Truncated vs vanilla SGD: which directions the units learn
#
# Linear units, K = 2. Both rules reach the same error (PCA(2)), but the *truncated* rule (unit k
# reconstructs only what units 1..k-1 left, a Sanger-like rule) finds the principal components
# themselves, in order, while vanilla SGD ends at any rotation of them. The overlap matrix
# $\cos(w^k, u_j)$ shows it: diagonal (up to signs) vs mixed. The off-diagonality is the share of
# the matrix's squared norm off its diagonal.

# %%
lin = aedyn.init_autoencoder(jax.random.key(1), D, 2, activation="linear", scale=0.1)


def off_diagonality(m):
    m = np.abs(np.asarray(m))
    return float((m**2).sum() - (np.diag(m) ** 2).sum()) / float((m**2).sum())


mats = {}
for rule in ("vanilla", "truncated"):
    th = theory(lin, rule)
    _, e, runs = sgd(lin, rule)
    mats[rule] = (np.asarray(th.overlaps.m_W[-1]), np.asarray(runs.overlaps.m_W[0, -1]))
    print(f"{rule}: final pmse theory {float(th.pmse[-1]):.4f}, SGD {e[:, -1].mean():.4f}; "
          f"off-diagonality theory {off_diagonality(mats[rule][0]):.4f}, "
          f"SGD {off_diagonality(mats[rule][1]):.4f}")

# %%
fig, axes = plt.subplots(2, 2, figsize=(6, 5.5))
for i, rule in enumerate(("vanilla", "truncated")):
    for j, (label, m) in enumerate(zip(("theory, t = 1e4", f"SGD, t = {T_SGD:g}"), mats[rule])):
        ax = axes[i, j]
        ax.imshow(np.abs(m), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{rule}: {label}", fontsize=9)
        ax.set_xticks([0, 1], ["PC 1", "PC 2"])
        ax.set_yticks([0, 1], ["unit 1", "unit 2"])
        for (r, c), v in np.ndenumerate(np.abs(m)):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.5 else "k")
fig.tight_layout()
plt.show()
print(f"wall time: {time.perf_counter() - T0:.1f} s ({'small' if SMALL else 'full'} size, {BACKEND})")
