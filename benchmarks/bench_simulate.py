"""Online-SGD simulator speed: aedyn.simulate against a straightforward per-sample NumPy loop.

Setting (issue 2's acceptance): D = 500, K = 2, erf, the spiked model
``aedyn.spiked_covariance(key, 500, (3., 5.))``, eta = 0.1, float32 (float64 also reported), on
one CPU core. Run it pinned to one core:

    taskset -c 0 python benchmarks/bench_simulate.py

It prints steps per second of ``aedyn.simulate`` (after compilation, best of a few repeats), of
drawing its input samples alone (the floor; "of floor" is the simulator's fraction of it), of
the NumPy loop of the same rule (a fresh sample of the same spiked model each step, drawn with
NumPy), and the ratio, for the vanilla and the truncated rule. It takes well under 2 minutes.
"""

import os

# One thread for NumPy's BLAS and for XLA's Eigen pool: this benchmark is about one core.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import erf  # noqa: E402

# x64 on, so that the float64 rows are float64 (aedyn no longer turns it on at import); the
# float32 rows pass their dtype explicitly.
jax.config.update("jax_enable_x64", True)
import aedyn  # noqa: E402
from _timing import best_of  # noqa: E402

D, K, STRENGTHS, LR = 500, 2, (3.0, 5.0), 0.1


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except Exception:  # noqa: BLE001
        pass
    return platform.processor() or "unknown"


# -- aedyn ------------------------------------------------------------------------------------
def bench_aedyn(cov, dtype, rule: str, t_end: float, n_records: int, repeats: int, t_check: float):
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, activation="erf", scale=0.1, dtype=dtype)
    ts = np.union1d(np.linspace(t_end / n_records, t_end, n_records), [t_check])
    steps = int(round(t_end * D))

    def run():
        tr = aedyn.simulate(net, cov, key=jax.random.key(2), lr=LR, ts=ts, rule=rule)
        jax.block_until_ready(tr.net.W)
        return tr

    tr = run()  # compile
    sec, _ = best_of(run, repeats)
    return steps / sec, float(tr.pmse[int(np.searchsorted(ts, t_check))])


def bench_floor(cov, dtype, t_end: float, repeats: int, block: int = 128):
    """Samples per second of drawing the simulator's input stream alone (the same blocks of
    ``Covariance.sample`` from ``fold_in(key, block index)``, reduced to one number): the floor
    that a simulator which must draw its samples cannot beat."""
    n_blocks = int(round(t_end * D)) // block
    key = jax.random.key(2)

    @jax.jit
    def draw():
        def body(acc, blk):
            X = cov.sample(jax.random.fold_in(key, blk), block, dtype)
            return acc + X[:, 0].sum() + X[-1].sum(), None

        return jax.lax.scan(body, jnp.zeros((), dtype), jnp.arange(n_blocks))[0]

    draw()
    sec, _ = best_of(draw, repeats)
    return n_blocks * block / sec


# -- NumPy --------------------------------------------------------------------------------------
def numpy_loop(cov, n_steps: int, dtype, rule: str = "vanilla", seed: int = 0):
    """The rule of docs/theory.md section 1 written out per sample, with a fresh spiked-model sample
    x = U (sqrt(rho - s^2) z) + s xi (z ~ N(0, I_M), xi ~ N(0, I_D), the same covariance) each step."""
    rng = np.random.default_rng(seed)
    U = np.asarray(cov.eigvecs, np.float64)
    rho = np.asarray(cov.eigvals, np.float64)
    s2 = float(cov.bulk)
    M = U.shape[1]
    Ud = U.astype(dtype)
    amp = np.sqrt(rho - s2).astype(dtype)
    s = dtype(math.sqrt(s2))
    W = (0.1 * rng.standard_normal((K, D))).astype(dtype)
    V = (0.1 * rng.standard_normal((K, D))).astype(dtype)
    cW = dtype(LR / D**2)
    cV = dtype(LR / D)
    sqD = dtype(math.sqrt(D))
    r2 = dtype(math.sqrt(2.0))
    c1 = dtype(math.sqrt(2.0 / math.pi))
    limit = 1e8 * float(cov.trace)
    for i in range(n_steps):
        x = Ud @ (amp * rng.standard_normal(M, dtype=dtype)) + s * rng.standard_normal(D, dtype=dtype)
        lam = W @ x / sqD
        h = erf(lam / r2)
        gp = c1 * np.exp(-0.5 * lam * lam)
        if rule == "vanilla":
            delta = x - h @ V
            err = V @ delta
            hebb = np.outer(h, delta)
            last = delta
        else:  # truncated: unit k reconstructs with units 1..k
            deltas = x[None, :] - np.cumsum(h[:, None] * V, axis=0)
            err = np.sum(V * deltas, axis=1)
            hebb = h[:, None] * deltas
            last = deltas[-1]
        loss = 0.5 * float(last @ last)
        if not loss <= limit:
            raise RuntimeError(f"numpy loop diverged at step {i}")
        W += cW * np.outer(err * gp, x) / sqD
        V += cV * hebb
    return W, V


def bench_numpy(cov, dtype, rule: str, n_steps: int, repeats: int):
    numpy_loop(cov, 200, dtype, rule)  # warm up
    sec, _ = best_of(lambda: numpy_loop(cov, n_steps, dtype, rule), repeats)
    W, V = numpy_loop(cov, n_steps, dtype, rule)
    net = aedyn.AutoEncoder(jnp.asarray(W, jnp.float64), jnp.asarray(V, jnp.float64), "erf")
    return n_steps / sec, float(aedyn.pmse(net, cov.astype(jnp.float64)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--t", type=float, default=400.0, help="simulated time t = steps / D per aedyn run")
    p.add_argument("--records", type=int, default=10, help="recording times (linearly spaced) per aedyn run")
    p.add_argument("--numpy-steps", type=int, default=20_000, help="steps per NumPy run")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"cpu       {cpu_model()} ({os.cpu_count()} cores; this process may run on {affinity})")
    print(f"versions  jax {jax.__version__}, numpy {np.__version__}, aedyn {aedyn.__version__}")
    if len(affinity) != 1:
        print("WARNING   not pinned to one core: run with `taskset -c 0 python benchmarks/bench_simulate.py`")
    print(
        f"setting   D={D}, K={K}, erf, spiked strengths {STRENGTHS}, eta={LR}; aedyn: t={args.t:g} "
        f"({int(args.t * D)} steps, {args.records} records), best of {args.repeats}; "
        f"NumPy: {args.numpy_steps} steps, best of {args.repeats}"
    )
    cov = aedyn.spiked_covariance(jax.random.key(0), D, STRENGTHS)

    rows = []
    floors = {}
    for rule, dtype in (("vanilla", np.float32), ("vanilla", np.float64), ("truncated", np.float32)):
        jr, jp = bench_aedyn(cov, jnp.dtype(dtype), rule, args.t, args.records, args.repeats, args.numpy_steps / D)
        if dtype not in floors:
            floors[dtype] = bench_floor(cov, jnp.dtype(dtype), args.t, args.repeats)
        nr, npm = bench_numpy(cov, dtype, rule, args.numpy_steps, args.repeats)
        rows.append((rule, np.dtype(dtype).name, jr, floors[dtype], nr, jr / nr, jp, npm))

    print()
    print(f"{'rule':<10} {'dtype':<8} {'aedyn steps/s':>14} {'sampling alone':>15} {'of floor':>9} "
          f"{'NumPy steps/s':>14} {'ratio':>7}   pmse at t={args.numpy_steps / D:g} (aedyn / NumPy; a sanity check)")
    for rule, dt, jr, fl, nr, ratio, jp, npm in rows:
        print(f"{rule:<10} {dt:<8} {jr:>14,.0f} {fl:>15,.0f} {jr / fl:>8.2f}x {nr:>14,.0f} {ratio:>6.1f}x   "
              f"{jp:.4f} / {npm:.4f}")
    print(f"\nPCA errors (k = 0, 1, 2): {np.round(np.asarray(cov.pca_errors(K)), 4).tolist()}")


if __name__ == "__main__":
    main()
