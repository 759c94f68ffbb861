"""Merged groups and spectral binning (issue 12): cost and accuracy on a continuous spectrum.

    python benchmarks/bench_merge.py [--D 500] [--K 2] [--t1 300] [--repeats 5]

Two spikes + a smooth Gaussian kernel (length 10) + 0.5 I, from ``Covariance.from_matrix``
(condition number >= 1e4), erf, eta = 1, 20 log-spaced times to ``t1`` (stiff: the implicit phase
runs). Rows, all from the same network: the baseline (``init_state(net, cov)`` without merging:
every eigenvalue of the matrix's spectrum explicit, equal ones to rounding included, a 2K x 2K
zero bulk); the default solve from the network (equal eigenvalues merged exactly); spectral binning
at ``merge_rtol`` 0.01, 0.1, 0.3 (an approximation). For each: explicit modes, groups, forward wall
time after compilation, value-and-grad of the log-time area in the learning rate (reverse mode,
after compilation; the two timed in turn, best of ``repeats`` each) and its ratio to the forward time
(with the spread of the per-round ratios), and the largest relative
pmse difference to a tight (rtol 1e-10) solve of the exact merged form. (With the implicit phase
on Kvaerno5, before 2026-12-07, the unmerged baseline's gradient could not be timed for D > 200:
optimistix's implicit-function adjoint factored the dense Jacobian at every implicit stage. Rodas5
is differentiated through its stage equations, reusing the step's structured factorisation.)
"""

import argparse
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import aedyn  # noqa: E402
from aedyn import objectives, theory  # noqa: E402
from aedyn._defaults import MERGE_RTOL  # noqa: E402

HERE = __file__.rsplit("/", 1)[0]
sys.path.insert(0, HERE)
sys.path.insert(0, HERE + "/../tests")
from _timing import interleaved  # noqa: E402
from test_stiff import kernel_covariance  # noqa: E402  (the test suite's continuous spectrum)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--D", type=int, default=500)
    ap.add_argument("--K", type=int, default=2)
    ap.add_argument("--t1", type=float, default=300.0)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=aedyn.RegimeWarning)
    cov = kernel_covariance(a.D)
    net = aedyn.init_autoencoder(jax.random.key(1), a.D, a.K, dtype=jnp.float64)
    ts = aedyn.log_times(a.t1, 20)
    ref = theory.solve(net, cov, lr=1.0, ts=ts, rtol=1e-10, atol=1e-12)
    print(f"D = {a.D}, K = {a.K}, erf, eta = 1, t <= {a.t1:g}; spectrum {float(cov.eigvals[0]):.4g} .. "
          f"{float(cov.eigvals[-1]):.4g}; jax {jax.__version__}, {jax.devices()[0].platform}")
    rows = [("unmerged (baseline)", theory.init_state(net, cov), MERGE_RTOL)]
    rows += [(f"merge_rtol {r:g}", net, r) for r in (MERGE_RTOL, 1e-2, 0.1, 0.3)]
    base = None
    print(f"{'':22s} {'modes':>6s} {'groups':>6s} {'steps':>6s} {'forward s':>10s} {'x base':>7s} "
          f"{'v&g s':>8s} {'v&g/fwd':>8s} {'(rounds)':>11s} {'pmse err':>9s}")
    for name, init, r in rows:
        def fwd(lr, init=init, r=r):
            return theory.solve(init, cov, lr=lr, ts=ts, merge_rtol=r, throw=False)

        f = jax.jit(lambda lr, fwd=fwd: fwd(lr).pmse)
        g = jax.jit(jax.value_and_grad(lambda lr, fwd=fwd: objectives.log_time_area(ts, fwd(lr).pmse)))
        (t_f, t_g), times = interleaved([lambda f=f: f(1.0), lambda g=g: g(1.0)], a.repeats)
        tr = fwd(1.0)
        e, info = tr.pmse, tr.config
        base = t_f if base is None else base
        ratio, each = t_g / t_f, [b / a for a, b in times]
        err = float(np.max(np.abs(np.asarray(e) / np.asarray(ref.pmse) - 1)))
        print(f"{name:22s} {info['modes']:6d} {len(info['groups']):6d} {int(tr.stats['num_steps']):6d} "
              f"{t_f:10.3f} {base / t_f:6.2f}x {t_g:8.3f} {ratio:8.2f} {min(each):5.2f}-{max(each):<5.2f} "
              f"{err:9.2e}", flush=True)
    print(f"(run {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
