"""Cost of one structured implicit step (issue 12): Kvaerno5 + StructuredChord on the spiked
(3, 5) .full() at D = 1024, from the state at t = 200 (eta = 1) to t = 400.

    python benchmarks/bench_stiff_step.py K [reduced]

``reduced``: the same on the spikes+bulk form (dense Kvaerno5), for the step and rejection counts.
"""
import time, sys, jax, jax.numpy as jnp, numpy as np, diffrax
jax.config.update("jax_enable_x64", True)
import aedyn
from aedyn import theory
K=int(sys.argv[1]); D=1024
cov = aedyn.spiked_covariance(jax.random.PRNGKey(0), D, (3, 5))
full = cov.full()
net = aedyn.init_autoencoder(jax.random.PRNGKey(1), D, K, dtype=jnp.float64)
full = full if len(sys.argv) < 3 else cov
st = theory.init_state(net, full)
tr = theory.solve(st, full, lr=1.0, ts=jnp.array([1.0, 200.0]))  # converged-ish state
s0 = tr.state
params = theory.theory_params(full, 1.0)
term = diffrax.ODETerm(lambda t, y, a: theory.rhs(t, y, a, method="stein"))
solver = theory.stiff_solver(s0, method="stein")
@jax.jit
def run(s0):
    sol = diffrax.diffeqsolve(term, solver, 200.0, 400.0, None, s0, params, saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-10), max_steps=100000)
    return sol.stats
st_ = run(s0); jax.block_until_ready(st_)
t0=time.perf_counter(); st_ = run(s0); jax.block_until_ready(st_); el=time.perf_counter()-t0
print(K, "time", el, {k: int(v) for k, v in st_.items()}, "ms/step", el/int(st_["num_steps"])*1e3)
