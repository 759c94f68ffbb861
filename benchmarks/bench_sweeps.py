"""Benchmark the vectorised sweeps and the gradients through the theory (CPU by default).

    python benchmarks/bench_sweeps.py [--quick]

Prints: 64-configuration theory sweep vs a sequential loop of the same 64 solves (reduced
spikes+bulk form and full-spectrum form), 64-run SGD sweep network-steps/s vs a single run, and
the cost of value-and-grad (reverse and forward mode) vs a forward solve. All timings are after
compilation, best of ``--repeat``.
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import aedyn

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
from aedyn import objectives as ob
from aedyn import sweeps
from aedyn import theory as th
from _timing import best_of


def theory_case(cov, grid, ts, repeat, label, solver=None, from_states=False):
    D = cov.dim
    sweeps.sweep_theory(cov, grid=grid, ts=ts, solver=solver)  # compile
    t_sweep, res = best_of(lambda: sweeps.sweep_theory(cov, grid=grid, ts=ts, solver=solver), repeat)
    nets = {s: sweeps.initial_network(s, D, 2, init_scale=1.0) for s in grid["seed"]}
    if from_states:  # a full spectrum: from a network, solve would first merge its equal eigenvalues
        # (Covariance.merged) and so time another, cheaper computation than the sweep's
        nets = {s: th.init_state(net, cov) for s, net in nets.items()}
    configs = [(lr, s, sc) for lr in grid["lr"] for s in grid["seed"] for sc in grid["init_scale"]]
    for lr in sorted(set(grid["lr"])):  # compile (both passes of the default policy)
        th.solve(nets[0], cov, lr=lr, ts=ts, solver=solver)

    def loop():
        return [th.solve(nets[s], cov, lr=lr, ts=ts, init_scale=sc, solver=solver).pmse for lr, s, sc in configs]

    t_seq, seq = best_of(loop, max(1, repeat - 1))
    err = np.max(np.abs(np.stack([np.asarray(x) for x in seq]).reshape(res.pmse.shape) - res.pmse))
    n_imp = int(res.status["implicit"].sum())
    print(f"| theory sweep, {label} | 64 configs ({n_imp} stiff: Kvaerno5 phase) | sweep {t_sweep:.3f} s | "
          f"sequential {t_seq:.3f} s | ratio {t_sweep / t_seq:.3f} | max steps {res.status['num_steps'].max()} | "
          f"max |diff| {err:.1e} |", flush=True)
    return t_sweep, t_seq


def sgd_case(cov, T, repeat, dtype):
    D = cov.dim
    ts = np.linspace(T / 10, T, 10)
    grid = dict(lr=[0.05, 0.1, 0.2, 0.5], seed=list(range(16)))
    sweeps.sweep_simulation(cov, grid=grid, ts=ts, dtype=dtype)
    t64, res = best_of(lambda: sweeps.sweep_simulation(cov, grid=grid, ts=ts, dtype=dtype), repeat)
    one = dict(lr=[0.1], seed=[0])
    sweeps.sweep_simulation(cov, grid=one, ts=ts, dtype=dtype)
    t1, _ = best_of(lambda: sweeps.sweep_simulation(cov, grid=one, ts=ts, dtype=dtype), repeat)
    net = sweeps.initial_network(0, D, 2, dtype=dtype)
    k = sweeps.seed_keys(0)[1]
    aedyn.simulate(net, cov, key=k, lr=0.1, ts=ts)
    ts_, _ = best_of(lambda: aedyn.simulate(net, cov, key=k, lr=0.1, ts=ts).pmse, repeat)
    steps = int(round(T * D))
    print(f"| SGD sweep D={D} K=2 {jnp.dtype(dtype).name}, t={T:g} ({steps} steps) | 64 runs {t64:.3f} s: "
          f"{64 * steps / t64:.3g} net-steps/s | 1-run sweep {t1:.3f} s: {steps / t1:.3g} net-steps/s | "
          f"aedyn.simulate {ts_:.3f} s: {steps / ts_:.3g} net-steps/s | speed-up vs simulate "
          f"{64 * steps / t64 / (steps / ts_):.1f}x |")


def grad_case(cov, T, repeat, solver, label):
    ts = aedyn.log_times(T, 50)
    curve = ob.make_curve(cov, K=2, seeds=(0,), ts=ts, solver=solver)  # one curve: both modes
    theta = {"lr": 0.5, "init_scale": 0.1, "weight_decay": 0.01, "rho": jnp.asarray(cov.eigvals)}
    obj = lambda c: ob.log_time_area(ts, c)  # noqa: E731
    fns = {
        "forward solve": jax.jit(lambda t: obj(curve(t))),
        "reverse": jax.jit(jax.value_and_grad(lambda t: obj(curve(t)))),
        "forward mode": jax.jit(lambda t: ob.value_and_grad(lambda u: obj(curve(u)), t, mode="forward")),
    }
    for g in fns.values():
        jax.block_until_ready(g(theta))
    times = {k: [] for k in fns}
    for _ in range(max(repeat, 1) * 10):  # interleaved, so that a noisy neighbour hits all alike
        for k, g in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(g(theta))
            times[k].append(time.perf_counter() - t0)
    mn = {k: min(v) for k, v in times.items()}
    md = {k: float(np.median(v)) for k, v in times.items()}
    f0, m0 = mn["forward solve"], md["forward solve"]
    print(f"| value-and-grad, {label}, t={T:g}, 5 parameters | forward solve {f0 * 1e3:.1f} ms (median "
          f"{m0 * 1e3:.1f}) | reverse {mn['reverse'] * 1e3:.1f} ms ({mn['reverse'] / f0:.2f}x; median "
          f"{md['reverse'] / m0:.2f}x) | forward mode {mn['forward mode'] * 1e3:.1f} ms ({mn['forward mode'] / f0:.2f}x; "
          f"median {md['forward mode'] / m0:.2f}x) |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    D = 500
    cov = aedyn.spiked_covariance(jax.random.key(1), D, [2.0, 1.0])
    grid = dict(lr=[0.05, 0.1, 0.2, 0.4], seed=[0, 1, 2, 3], init_scale=[0.05, 0.1, 0.2, 0.3])
    print(f"devices: {jax.devices()}")
    theory_case(cov, grid, aedyn.log_times(100.0, 50), a.repeat, "reduced form, default solver, t=100")
    theory_case(cov, grid, aedyn.log_times(100.0, 50), a.repeat, "reduced form, Kvaerno5 throughout, t=100",
                diffrax.Kvaerno5())
    grid_long = dict(lr=[0.1, 0.3, 1.0, 3.0], seed=[0, 1, 2, 3], init_scale=[0.05, 0.1, 0.2, 0.3])
    theory_case(cov, grid_long, aedyn.log_times(1000.0, 50), max(1, a.repeat - 1),
                "reduced form, default solver, t=1000 (eta t up to 3000)")
    Df = 100 if a.quick else 500
    covf = aedyn.spiked_covariance(jax.random.key(1), Df, [2.0, 1.0]).full()
    theory_case(covf, grid, aedyn.log_times(10.0, 30), max(1, a.repeat - 1),
                f"full spectrum D={Df} (Tsit5), t=10", from_states=True)
    sgd_case(cov, 1.0 if a.quick else 4.0, a.repeat, jnp.float64)
    sgd_case(cov, 1.0 if a.quick else 4.0, a.repeat, jnp.float32)
    grad_case(cov, 50.0, a.repeat, None, "default policy (Tsit5 phase, Kvaerno5 phase empty)")
    if not a.quick:
        grad_case(cov, 50.0, 1, diffrax.Kvaerno5(), "Kvaerno5")


if __name__ == "__main__":
    main()
