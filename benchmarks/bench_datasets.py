"""Real data (issue 10): loading and spectra, SGD on real images vs SGD on Gaussian samples.

    python benchmarks/bench_datasets.py [--repeats 3] [--t 100] [--cli]

1. Loading + spectrum, each in a fresh subprocess (wall time and peak resident memory of that
   process, JAX import included): the full Fashion-MNIST (70,000 images: both IDX files read,
   preprocessed, the 60,000-image second moment streamed in float64 and eigendecomposed, the
   10,000 test images kept as held-out samples: ``aedyn.datasets.load("fashion-mnist")``), the
   same as plain arrays (``fashion_mnist(split="all")`` + ``empirical_covariance``), and the
   embedded natural patches. Skipped for Fashion-MNIST when it is not installed.
2. Steps per second of ``aedyn.simulate`` (one run, float32, D = 1024, K = 4, erf, eta = 1, after
   compilation, best of ``--repeats``; pinned to one core when the machine allows it): SGD on the
   real patches (drawn with replacement on the device; one pass), SGD on Gaussian samples of the
   same full empirical covariance (1024 modes: O(D^2) per sample, the authors' default), and SGD
   on the cheapest Gaussian data, a spiked covariance with 4 spikes (O(D) per sample).
3. ``--cli``: the wall time of ``aedyn universality`` with no options (the README's command).
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import aedyn  # noqa: E402
from aedyn import datasets  # noqa: E402
from _timing import best_of  # noqa: E402
from bench_simulate import cpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
from aedyn import datasets
t1 = time.perf_counter()
what = sys.argv[1]
if what == "fashion-mnist":
    ds = datasets.load("fashion-mnist")
    n, n_test, rho = ds.N, ds.heldout.shape[0], ds.covariance.eigvals
elif what == "fashion-mnist-arrays":
    X = datasets.fashion_mnist(split="all")
    cov = datasets.empirical_covariance(X)
    n, n_test, rho = X.shape[0], 0, cov.eigvals
else:
    ds = datasets.load("patches")
    n, n_test, rho = ds.N, ds.heldout.shape[0], ds.covariance.eigvals
rho = [float(r) for r in rho[:3]]
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
print(json.dumps({"import_s": t1 - t0, "load_spectrum_s": t2 - t1, "peak_MiB": peak, "N": n, "heldout": n_test,
                  "top_eigenvalues": rho}))
"""


def load_in_subprocess(what: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CHILD, what], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def steps_per_second(net, data, t_end: float, repeats: int, lr: float = 1.0):
    ts = np.array([t_end])
    steps = int(round(t_end * net.D))

    def run():
        tr = aedyn.simulate(net, data, key=jax.random.key(2), lr=lr, ts=ts)
        return tr.net.W

    run()  # compile
    sec, _ = best_of(run, repeats)
    return steps / sec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--t", type=float, default=100.0, help="simulated time per run (t = steps / D)")
    p.add_argument("--cli", action="store_true", help="also time `aedyn universality` with no options")
    args = p.parse_args(argv)

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"cpu       {cpu_model()} ({os.cpu_count()} cores; loading on cores {cores}, SGD on core {cores[:1]})")
    print(f"versions  jax {jax.__version__}, numpy {np.__version__}, aedyn {aedyn.__version__}")
    print()
    print("Loading + spectrum (fresh subprocess each; peak = max resident memory of that process)")
    fm = any(os.path.isdir(f) for f in datasets.FASHION_MNIST_FOLDERS)
    for what in (["fashion-mnist", "fashion-mnist-arrays"] if fm else []) + ["patches"]:
        r = load_in_subprocess(what)
        print(f"  {what:<22} load + spectrum {r['load_spectrum_s']:6.2f} s (import {r['import_s']:.1f} s)  "
              f"peak {r['peak_MiB']:7.0f} MiB  N={r['N']} held-out={r['heldout']}  top rho {r['top_eigenvalues']}")
    if not fm:
        print("  fashion-mnist: not installed (apt-get install dataset-fashion-mnist); skipped")

    print()
    if len(cores) > 1:
        os.sched_setaffinity(0, set(cores[:1]))
    D, K = 1024, 4
    print(f"SGD steps/s: D={D}, K={K}, erf, eta=1, float32, t={args.t:g} ({int(args.t * D):,} steps), "
          f"best of {args.repeats}")
    ds = datasets.load("patches")
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, activation="erf", scale=0.1, dtype=jnp.float32)
    spiked = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0, 9.0, 17.0))
    t_onepass = min(args.t, ds.N / D)
    rows = [
        ("real patches, with replacement", ds, args.t),
        ("real patches, one pass", ds.with_sampling("one-pass"), t_onepass),
        ("Gaussian, same covariance (1024 modes)", ds.with_sampling("gaussian"), args.t),
        ("Gaussian, spiked (4 spikes + bulk)", spiked, args.t),
    ]
    rates = {}
    for label, data, t in rows:
        rates[label] = steps_per_second(net, data, t, args.repeats)
    base = rates["Gaussian, same covariance (1024 modes)"]
    spk = rates["Gaussian, spiked (4 spikes + bulk)"]
    print(f"  {'data':<40} {'steps/s':>10} {'vs same-cov Gaussian':>21} {'vs spiked Gaussian':>19}")
    for label, _, _ in rows:
        print(f"  {label:<40} {rates[label]:>10,.0f} {rates[label] / base:>20.2f}x {rates[label] / spk:>18.2f}x")

    if args.cli:
        if len(cores) > 1:
            os.sched_setaffinity(0, set(cores))
        print()
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
            env.pop("OPENBLAS_NUM_THREADS", None)
            env.pop("OMP_NUM_THREADS", None)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "aedyn.cli", "universality", "--out", tmp], check=True,
                           capture_output=True, env=env)
            print(f"`aedyn universality` (no options, all cores): {time.perf_counter() - t0:.0f} s wall")


if __name__ == "__main__":
    main()
