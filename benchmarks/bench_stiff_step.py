"""Cost of one structured implicit step (issue 12), and of its pieces.

    python benchmarks/bench_stiff_step.py [K] [--chord-tols RTOL ATOL ...]

The policy's implicit phase (Rodas5 on the structured factorisation, ``theory.stiff_solver``,
``theory.stiff_controller``) on the spiked (3, 5) ``.full()`` at D = 1024 (1024 explicit modes),
from the state at t = 200 (eta = 1) to t = 400, rtol 1e-7. Baselines in the same run: the same
stretch with the implicit phase before 2026-12-07 (Kvaerno5 + StructuredChord, chord tolerances
100 x the controller's, PI controller (0.4, 0.3)), and on the spikes+bulk form (2 modes) with the
dense Rodas5. Then the jitted pieces of one step: a factorisation of I - gamma J (``factor``), one
structured solve (``solve_factored``) and one evaluation of the right-hand side.
``--chord-tols``: also run the Kvaerno5 stretch with the chord iteration's tolerances set
explicitly, printing steps, time and the pmse difference at t = 400.
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import aedyn  # noqa: E402
from aedyn import theory  # noqa: E402
from aedyn.theory import _stiff  # noqa: E402

D = 1024


def step_cost(net, cov, kvaerno_chord_tols=None):
    """(seconds, stats, state at 200, params, pmse at 400) from t = 200 to 400 with the policy's
    implicit phase for ``cov`` (or Kvaerno5 + StructuredChord with tolerances ``kvaerno_chord_tols``)."""
    s0 = theory.solve(theory.init_state(net, cov), cov, lr=1.0, ts=jnp.array([1.0, 200.0])).state
    params = theory.theory_params(cov, 1.0)
    term = diffrax.ODETerm(lambda t, y, a: theory.rhs(t, y, a, method="stein"))
    solver, controller = theory.stiff_solver(method="stein"), theory.stiff_controller(rtol=1e-7, atol=1e-10)
    if kvaerno_chord_tols is not None:
        solver = diffrax.Kvaerno5(root_finder=theory.StructuredChord(rtol=kvaerno_chord_tols[0],
                                                                     atol=kvaerno_chord_tols[1]))
        controller = diffrax.PIDController(rtol=1e-7, atol=1e-10, pcoeff=0.4, icoeff=0.3)

    @jax.jit
    def run(s0):
        sol = diffrax.diffeqsolve(term, solver, 200.0, 400.0, None, s0, params, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=controller, max_steps=100_000)
        return sol.stats, theory.theory_pmse(jax.tree_util.tree_map(lambda x: x[-1], sol.ys), params)

    jax.block_until_ready(run(s0))
    t0 = time.perf_counter()
    stats, e = jax.block_until_ready(run(s0))
    return time.perf_counter() - t0, {k: int(v) for k, v in stats.items() if k != "max_steps"}, s0, params, float(e)


def per_call_ms(fn, *args, n=200):
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(n):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / n * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("K", type=int, nargs="?", default=4)
    ap.add_argument("--chord-tols", type=float, nargs="+", default=[], metavar="TOL",
                    help="pairs RTOL ATOL for the chord iteration")
    args = ap.parse_args()
    K = args.K
    if len(args.chord_tols) % 2:
        ap.error("--chord-tols: expected pairs RTOL ATOL")
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3, 5))
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, dtype=jnp.float64)
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, K = {K}, D = {D}")
    el, stats, s0, params, e = step_cost(net, cov.full())
    el_k, stats_k, _, _, e_k = step_cost(net, cov.full(), (1e-5, 1e-8))
    el_r, stats_r, _, _, _ = step_cost(net, cov)
    ms, ms_k, ms_r = (x / s["num_steps"] * 1e3 for x, s in ((el, stats), (el_k, stats_k), (el_r, stats_r)))
    print(f"Rodas5, structured (1024 modes): {el:.3f} s, {stats}, {ms:.2f} ms/step")
    print(f"baseline, Kvaerno5 + StructuredChord (1024 modes): {el_k:.3f} s, {stats_k}, {ms_k:.2f} ms/step; "
          f"ratio {el_k / el:.1f}x in time; pmse(400) rel. diff {abs(e_k / e - 1):.1e}")
    print(f"baseline, dense Rodas5 on the reduced form (2 modes): {el_r:.3f} s, {stats_r}, {ms_r:.2f} ms/step; "
          f"structured / reduced per step: {ms / ms_r:.1f}x")

    fac = jax.jit(lambda s, p: _stiff.factor(s, p, 0.1, rule="vanilla", method="stein"))
    f = fac(s0, params)
    rhs = jax.jit(lambda s, p: theory.rhs(0.0, s, p, method="stein"))
    r = rhs(s0, params)
    t_rhs = per_call_ms(rhs, s0, params)
    t_fac = per_call_ms(fac, s0, params, n=50)
    t_sol = per_call_ms(jax.jit(_stiff.solve_factored), f, r)
    print(f"pieces: factor {t_fac:.2f} ms ({t_fac / t_rhs:.0f} rhs), structured solve {t_sol:.3f} ms "
          f"({t_sol / t_rhs:.1f} rhs), rhs {t_rhs:.3f} ms")
    for rtol, atol in zip(args.chord_tols[::2], args.chord_tols[1::2]):
        el_c, stats_c, _, _, e_c = step_cost(net, cov.full(), (rtol, atol))
        print(f"Kvaerno5, chord tolerances rtol {rtol:g}, atol {atol:g} (step controller 1e-7, 1e-10): "
              f"{el_c:.3f} s, {stats_c}, pmse(400) rel. diff {abs(e_c / e - 1):.1e} to the policy's")


if __name__ == "__main__":
    main()
