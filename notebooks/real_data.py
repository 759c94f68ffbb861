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
# # Real data and Gaussian universality
#
# The paper's last claim: the ODE, integrated with a real dataset's empirical covariance, predicts
# SGD on the real images (Gaussian universality). Natural image patches cut from the photographs
# inside the scikit-image wheel (no download), their spectrum under two preprocessing recipes, and
# theory vs SGD on the patches vs SGD on Gaussian samples of the same covariance. Fashion-MNIST,
# MNIST or CIFAR-10 from a folder you name (`AEDYN_DATA_DIR`, or Debian's `dataset-fashion-mnist`).
#
# **Run it anywhere.** The first cell installs aedyn where it is missing (on Colab: set
# `AEDYN_REPO_URL`, or edit `REPO_URL`, to the aedyn repository); in a checkout it installs nothing.
# `SMALL` (the default on a CPU) keeps the run short; on a GPU or TPU runtime the full size runs.
# Full size (`AEDYN_NOTEBOOK_SIZE=full`) on a 2-core CPU: 78 s, measured 2026-12-06.

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
# ## Natural image patches and their spectrum
#
# 32×32 grayscale patches ($D = 1024$) on a fixed grid of the bundled photographs. Two recipes:
# the authors' (global scalars: $x \leftarrow x / (2\,\mathrm{std})$, $x \leftarrow x - \mathrm{mean}$; the
# mean image survives as a large top eigenvalue of the uncentred second moment $\Omega$) and
# per-pixel centring scaled to $\mathrm{tr}(\Omega)/D = 1$. $\Omega$ is computed in float64, streamed
# over the data, with all $D$ eigenpairs.

# %%
import matplotlib.pyplot as plt  # noqa: E402

from aedyn import datasets  # noqa: E402

data = {recipe: datasets.load("patches", recipe=recipe) for recipe in ("authors", "centred")}
fig, ax = plt.subplots(figsize=(6, 4))
for recipe, ds in data.items():
    rho = np.asarray(ds.covariance.eigvals)
    print(f"{recipe}: {ds.describe()}; top eigenvalues {np.round(rho[:3], 1)}, tr(Omega)/D = {rho.sum() / ds.D:.3f}")
    ax.loglog(np.arange(1, rho.size + 1), rho, label=f"recipe: {recipe}")
ax.set_xlabel("rank")
ax.set_ylabel("eigenvalue of Omega")
ax.legend()
plt.show()

# %% [markdown]
# ## Theory vs SGD on the patches vs SGD on Gaussian samples
#
# One initial network ($K = 4$ erf units, scale 0.1); the theory with the full empirical spectrum
# ($N = D$ modes); SGD drawing one real patch per step (with replacement, on the device), and SGD
# on Gaussian samples of the same $\Omega$; several seeds each, in one vectorised call.

# %%
res = datasets.universality(data["authors"], K=4, lr=(1.0,) if SMALL else (0.1, 1.0), t_max=30.0 if SMALL else 100.0,
                            seeds=3 if SMALL else 5, log=print)
print(res.summary())
for which, rel in (("images", 0.05), ("gaussian", 0.03)):
    print(f"largest band ratio, theory vs SGD on {which} (band max({rel:.0%}, 3 s.e.)): "
          f"{float(np.max(res.band_ratio(which))):.3f}")

# %%
import io  # noqa: E402

fig, ax = plt.subplots(figsize=(10, 4))
ax.imshow(plt.imread(io.BytesIO(res.figure_png())))
ax.axis("off")
plt.show()

# %% [markdown]
# ## Your own data
#
# Fashion-MNIST, MNIST (IDX files, gzipped or not) or CIFAR-10 (binary or Python batches, read
# without running anything from the file) from a folder: set `AEDYN_DATA_DIR` and `AEDYN_DATASET`
# (`fashion-mnist`, `mnist`, `cifar10`). Debian's `dataset-fashion-mnist` is found without a
# folder. At small size this part only loads the data and shows its spectrum.

# %%
name = os.environ.get("AEDYN_DATASET", "fashion-mnist")
folder = os.environ.get("AEDYN_DATA_DIR")
try:
    own = datasets.load(name, recipe="centred", folder=folder)
except (FileNotFoundError, ValueError) as err:
    own = None
    print(f"no {name} here ({err}); set AEDYN_DATA_DIR to a folder with its files")
if own is not None:
    pca = np.asarray(own.covariance.pca_errors(8))
    print(f"{own.describe()}: PCA errors with 0..8 components {np.round(pca, 4)}")
    if not SMALL:
        print(datasets.universality(own, K=4, lr=(0.1, 1.0), seeds=5).summary())
print(f"wall time: {time.perf_counter() - T0:.1f} s ({'small' if SMALL else 'full'} size, {BACKEND})")
