"""Why the theory's default solver policy: Tsit5, Kvaerno5, Rodas5 and the default (Tsit5 for at
most EXPLICIT_STEPS steps, continued with Rodas5) against the horizon eta * t.

    python benchmarks/bench_solvers.py

Standard example D=500, K=2 erf, spikes (2, 1), initial scale 0.1, 50 log-spaced times; each
solve timed after a compiling call (best of 2). Tsit5 at eta t = 10^4 needs ~670k steps (~20 s).
"""


import diffrax
import jax

import aedyn

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
from aedyn import sweeps
from aedyn import theory as th
from _timing import best_of


def main():
    cov = aedyn.spiked_covariance(jax.random.key(1), 500, [2.0, 1.0])
    net = sweeps.initial_network(0, 500, 2, init_scale=1.0)
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    print("| eta t (lr = 1) | Tsit5 | Kvaerno5 | Rodas5 | default policy | default / best |")
    print("|---|---|---|---|---|---|")
    for T in (10.0, 100.0, 1000.0, 10000.0):
        ts = aedyn.log_times(T, 50)
        cells, times, finals = [], [], []
        for solver in (diffrax.Tsit5(), diffrax.Kvaerno5(), th.Rodas5(), None):
            best, tr = best_of(lambda: th.solve(net, cov, lr=1.0, ts=ts, init_scale=0.1, solver=solver), 2,
                               warmup=True)
            times.append(best)
            finals.append(float(tr.pmse[-1]))
            cells.append(f"{best * 1e3:.0f} ms, {tr.config['num_steps']} steps"
                         + (f" ({tr.config['solver']})" if solver is None else ""))
        spread = max(abs(f - finals[0]) / finals[0] for f in finals)
        print(f"| {T:g} | " + " | ".join(cells) + f" | {times[3] / min(times[:3]):.2f} (pmse agree to {spread:.1e}) |",
              flush=True)


if __name__ == "__main__":
    main()
