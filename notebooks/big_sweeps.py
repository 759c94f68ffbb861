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
# # Big sweeps on all devices
#
# Thousands of theory solves and SGD runs in one call each, sharded over every device the runtime
# has (a GPU, the 8 cores of a TPU, or the CPU), and the phase diagram of the finite-size effect:
# where online SGD leaves the first-order theory as the learning rate grows, for several $D$.
#
# **Run it anywhere.** The first cell installs aedyn where it is missing (on Colab: set
# `AEDYN_REPO_URL`, or edit `REPO_URL`, to the aedyn repository); in a checkout it installs nothing.
# `SMALL` (the default on a CPU) keeps the run short; on a GPU or TPU runtime the full size runs.
# Full size (`AEDYN_NOTEBOOK_SIZE=full`) on a 2-core CPU: 381 s (4096 theory solves in 29 s, 7.1 ms
# each), measured 2026-12-06.

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

print("devices:", jax.devices())

# %% [markdown]
# ## A theory sweep over learning rate × initial network × initial scale × weight decay
#
# One `vmap` of `aedyn.theory.solve`, split over the devices with `shard_map` (padded to a multiple
# of the device count). Spiked model, spike strengths (2, 1), $D = 500$, $K = 2$ erf units, to $t = 100$.

# %%
import tempfile  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

from aedyn import sweeps  # noqa: E402

cov = aedyn.spiked_covariance(jax.random.key(1), 500, [2.0, 1.0])
n = (4, 4, 2, 2) if SMALL else (16, 16, 4, 4)
grid = dict(lr=np.geomspace(0.05, 0.5, n[0]), seed=list(range(n[1])), init_scale=np.geomspace(0.03, 0.3, n[2]),
            weight_decay=[0.0, 0.01, 0.03, 0.1][: n[3]])
ts = aedyn.log_times(100.0, 50)
sweeps.sweep_theory(cov, grid={k: v[:1] for k, v in grid.items()}, ts=ts)  # compile once, not timed
t1 = time.perf_counter()
th = sweeps.sweep_theory(cov, grid=grid, ts=ts)
wall = time.perf_counter() - t1
B = int(np.prod(th.shape))
print(f"{B} theory solves on {jax.device_count()} {BACKEND} device(s) in {wall:.2f} s: "
      f"{1e3 * wall / B:.2f} ms per configuration; all solves ok: {bool(th.status['ok'].all())}")

# %%
final = th.pmse[..., -1].mean(axis=1)  # (lr, init_scale, weight_decay): mean over initial networks
fig, ax = plt.subplots(figsize=(6, 4))
for j, sc in enumerate(grid["init_scale"]):
    ax.loglog(grid["lr"], final[:, j, 0], "o-", ms=3, label=f"initial scale {sc:.2g}")
ax.set_xlabel("learning rate eta")
ax.set_ylabel("pmse at t = 100 (mean over initial networks)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## SGD sweeps: where SGD leaves the theory
#
# For each $D$ and learning rate, SGD runs (several seeds, one sweep) against the theory of the
# same initial networks over the same stretch $\eta t$ of the learning curve (the study of
# `docs/finite_size.md`, `aedyn finite-size`). The gap of a run is the largest relative distance
# of its pmse from the theory's; a learning rate where a run diverged counts as departed.

# %%
from aedyn.studies import finite_size  # noqa: E402

Ds = (100, 200) if SMALL else (250, 500, 1000, 2000)
etas = np.geomspace(0.25, 8.0 * max(Ds), 7 if SMALL else 15)
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    rows = finite_size.run(Ds=Ds, etas=etas, seeds=tuple(range(2 if SMALL else 8)), S=10.0 if SMALL else 50.0,
                           T_min=5.0 if SMALL else 20.0, n_times=20 if SMALL else 40, out=tmp, progress=False,
                           quick=SMALL)
    img = plt.imread(os.path.join(tmp, "finite_size.png"))
wall = time.perf_counter() - t1
n_runs = len(Ds) * len(etas) * (2 if SMALL else 8)
print(f"{n_runs} SGD runs (and their theory) in {wall:.1f} s: {wall / n_runs:.2f} s per run")
for r in rows:
    print(f"D = {r['D']}: SGD departs from the theory by 5% at eta/D = "
          f"{(r['eta_depart'] or float('nan')) / r['D']:.2g}; first divergence at eta/D = "
          f"{(r['eta_diverge_any'] or float('nan')) / r['D']:.2g}")
fig, ax = plt.subplots(figsize=(10, 4))
ax.imshow(img)
ax.axis("off")
plt.show()
print(f"wall time: {time.perf_counter() - T0:.1f} s ({'small' if SMALL else 'full'} size, {BACKEND})")
