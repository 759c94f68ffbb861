"""GPU check of the sweeps (about 4 minutes on an H100/H200): SGD sweeps of 64 and 1024 runs and
a 1024-configuration theory sweep on the GPU, and the same on the CPU where affordable.

    pip install -e . "jax[cuda12]"      # done by the caller
    python benchmarks/gpu_check.py       # prints a markdown table; writes $OUT/gpu_results.md if OUT is set

Timings are after compilation (best of 2). CPU runs use ``jax.devices('cpu')`` through the
sweeps' ``devices=`` argument; the CPU rows of the big sweeps run 64 configurations and are
scaled (marked "scaled").
"""

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import aedyn

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
from aedyn import sweeps
from _timing import best_of

T_START = time.perf_counter()


def timed(f, repeat=2):
    return best_of(f, repeat, warmup=True)[0]


def main():
    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    cpus = jax.devices("cpu")
    D = 500
    cov = aedyn.spiked_covariance(jax.random.key(1), D, [2.0, 1.0])
    rows = []

    # SGD sweeps, D=500, K=2, t = 4 (2000 steps per run): 64 and 1024 runs.
    T = 4.0
    ts = np.linspace(T / 10, T, 10)
    for n_runs in (64, 1024):
        grid = dict(lr=list(np.geomspace(0.05, 0.5, 16)), seed=list(range(n_runs // 16)))
        steps = int(T * D) * n_runs
        for dt in (jnp.float32, jnp.float64):
            for name, devs in (("GPU", gpus[:1]), ("CPU", cpus[:1])):
                if not devs or (name == "CPU" and n_runs > 64):
                    continue
                t = timed(lambda: sweeps.sweep_simulation(cov, grid=grid, ts=ts, dtype=dt, devices=devs))
                rows.append((f"SGD sweep, {n_runs} runs, D={D}, K=2, {jnp.dtype(dt).name}, t={T:g}", name, t,
                             f"{steps / t:.3g} net-steps/s"))
                print(rows[-1], flush=True)

    # 1024-configuration theory sweep (reduced spikes+bulk form, default solver policy, t = 100).
    tts = aedyn.log_times(100.0, 50)
    big = dict(lr=np.geomspace(0.05, 0.5, 8), seed=list(range(8)), init_scale=np.geomspace(0.03, 0.3, 4),
               weight_decay=[0.0, 1e-3, 1e-2, 3e-2])
    small = dict(lr=np.geomspace(0.05, 0.5, 8), seed=list(range(8)))
    if gpus:
        t = timed(lambda: sweeps.sweep_theory(cov, grid=big, ts=tts, devices=gpus[:1]))
        rows.append(("theory sweep, 1024 configs, reduced form, t=100", "GPU", t, f"{1024 / t:.3g} solves/s"))
        print(rows[-1], flush=True)
    t = timed(lambda: sweeps.sweep_theory(cov, grid=small, ts=tts, devices=cpus[:1]), repeat=1)
    rows.append(("theory sweep, 1024 configs, reduced form, t=100 (scaled from 64)", "CPU", t * 16,
                 f"{64 / t:.3g} solves/s"))
    print(rows[-1], flush=True)

    dev = gpus[0].device_kind if gpus else "no GPU"
    lines = [
        f"GPU check ({dev}; CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__}; total {time.perf_counter() - T_START:.0f} s)",
        "",
        "| case | device | wall time (s) | throughput |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {d} | {t:.3f} | {thr} |" for c, d, t, thr in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_results.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
