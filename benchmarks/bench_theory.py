"""Benchmark the theory solve against a vectorised NumPy Euler of the same equations (issue 3).

    python benchmarks/bench_theory.py [--quick] [--stiff] [--grad]

Cases (t_max = 1000, log-spaced save times):
  1. standard example (D=500, K=2, strengths (3,5), erf, init scale 0.1), eta = 0.1 and eta = 1;
     targets: <= 1 s after compilation, compilation <= 30 s;
  2. K=4, strengths (3,5,9,17), D=1000, eta = 0.1; target <= 5 s;
  3. D=1024, full empirical spectrum (Covariance.from_samples of 4096 samples of a power-law
     Gaussian), K=2, eta = 0.1; target <= 10 s; plus the spiked model's .full() at D=1024.
  4. (issue 12; ``--stiff`` runs only this) stiff full spectra, K=4, erf, eta = 0.1 and 1, t = 1e3
     and 1e5: the spiked model's .full() at D=1024 from its TheoryState (1024 explicit modes, the
     structured implicit path) and from the network (equal eigenvalues merged: the reduced form);
     targets: t = 1e3 <= 1 s, t = 1e5 <= 5 s, compile <= 30 s, >= 30x the NumPy Euler.
     With ``--grad``, also value-and-grad of the log-time area in the learning rate (reverse mode,
     jitted, after compilation) against the jitted forward solve, timed in turn (best of 7 each);
     target <= 5x.
The NumPy baseline integrates the Stein form of docs/theory.md §3 (written here independently of the
package) with Euler steps dt = 1/D, in the same factor form (explicit modes + bulk moment). Where it
would take long, it is timed over a short horizon and extrapolated linearly (said so in the output).
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import aedyn

jax.config.update("jax_enable_x64", True)  # the theory runs in float64
from aedyn import theory

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _timing import interleaved  # noqa: E402

# -- independent NumPy right-hand side (docs/theory.md §3, §5, §6) -------------------------------------


def np_kernels(act, Q):
    q = np.diag(Q)
    K = len(q)
    if act == "linear":
        return np.ones(K), np.zeros(K), Q.copy(), np.ones((K, K)), np.zeros((K, K))
    if act == "erf":
        d = 1 + q
        K1 = np.sqrt(2 / np.pi) / np.sqrt(d)
        K3 = -np.sqrt(2 / np.pi) / d**1.5
        G = (2 / np.pi) * np.arcsin(Q / np.sqrt(np.outer(d, d)))
        Lam = np.outer(d, d) - Q**2
        P = (2 / np.pi) / np.sqrt(Lam)
        S = -(2 / np.pi) * Q / (d[:, None] * np.sqrt(Lam))
        return K1, K3, G, P, S
    raise ValueError(act)


def np_rhs(wt, vs, M, rho, bulk, D, eta, act):
    """Stein form, vanilla rule, in the factor form z = (wt, vs = vt / sqrt(D))."""
    K = wt.shape[0]
    Mww, Mvw, Mvv = M[:K, :K], M[K:, :K], M[K:, K:]
    Q = (wt * rho) @ wt.T / D + bulk / D * Mww
    R = (vs * rho) @ wt.T / D + bulk / D * Mvw
    T0 = vs @ vs.T + Mvv
    K1, K3, G, P, S = np_kernels(act, Q)
    c = np.diag(R) * K3 - np.sum(T0 * S, axis=1)
    # d wt/dt = eta (rho/D) [c wt + K1 vs - (T0*P) wt];  d vs/dt = eta [(rho/D) K1 wt - G vs]
    AQ = T0 * P - np.diag(c)
    r = rho[None, :] / D
    dwt = -eta * r * (AQ @ wt - K1[:, None] * vs)
    dvs = eta * (r * (K1[:, None] * wt) - G @ vs)
    rb = bulk / D
    L = np.block([[-eta * rb * AQ, eta * rb * np.diag(K1)], [eta * rb * np.diag(K1), -eta * G]])
    dM = L @ M + M @ L.T
    return dwt, dvs, dM


def np_euler(state, rho, bulk, D, eta, act, t_max):
    wt, vs, M = (np.array(a, np.float64) for a in state)
    dt = 1.0 / D
    for _ in range(int(round(t_max * D))):
        dwt, dvs, dM = np_rhs(wt, vs, M, rho, bulk, D, eta, act)
        wt, vs, M = wt + dt * dwt, vs + dt * dvs, M + dt * dM
    return wt, vs, M


def np_pmse(wt, vs, M, rho, bulk, n_bulk, D, act):
    K = wt.shape[0]
    Q = (wt * rho) @ wt.T / D + bulk / D * M[:K, :K]
    R = (vs * rho) @ wt.T / D + bulk / D * M[K:, :K]
    T0 = vs @ vs.T + M[K:, K:]
    K1, _, G, _, _ = np_kernels(act, Q)
    tr = rho.sum() + bulk * n_bulk
    return tr / (2 * D) - np.sum(np.diag(R) * K1) + 0.5 * np.sum(T0 * G)


# -- timing ---------------------------------------------------------------------------------------


def time_solve(net, cov, lr, t_max, repeats=3):
    ts = aedyn.log_times(t_max)
    t0 = time.perf_counter()
    tr = theory.solve(net, cov, lr=lr, ts=ts)
    jax.block_until_ready(tr.pmse)
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        tr = theory.solve(net, cov, lr=lr, ts=ts)
        jax.block_until_ready(tr.pmse)
        best = min(best, time.perf_counter() - t0)
    return tr, first - best, best


def time_euler(state0, cov, D, lr, act, t_max, budget_s):
    """Euler baseline; full horizon if it fits in budget_s (estimated from a short run), else
    timed over a short horizon and extrapolated linearly."""
    rho = np.asarray(cov.eigvals, np.float64)
    bulk = float(cov.bulk)
    t_probe = min(t_max, 1.0)
    t0 = time.perf_counter()
    out = np_euler(state0, rho, bulk, D, lr, act, t_probe)
    per_t = (time.perf_counter() - t0) / t_probe
    if per_t * t_max <= budget_s:
        t0 = time.perf_counter()
        out = np_euler(state0, rho, bulk, D, lr, act, t_max)
        el = time.perf_counter() - t0
        e = np_pmse(*out, rho, bulk, cov.n_bulk, D, act)
        return el, False, e
    return per_t * t_max, True, None


def report(name, tr, compile_s, run_s, target, euler):
    el, extrap, e_euler = euler
    ok = "OK" if run_s <= target else "MISSED"
    cfg = tr.config
    line = (
        f"{name}: solve {run_s:.3f} s (target <= {target} s: {ok}), compile {compile_s:.1f} s, "
        f"{cfg['solver']} {cfg['num_steps']} steps, pmse(t_max) = {float(tr.pmse[-1]):.6g}; "
        f"NumPy Euler dt=1/D: {el:.1f} s{' (extrapolated linearly from t=1)' if extrap else ''}, "
        f"ratio {el / run_s:.0f}x"
    )
    if e_euler is not None:
        line += f"; Euler pmse(t_max) = {e_euler:.6g} (rel. diff {abs(e_euler / float(tr.pmse[-1]) - 1):.1e})"
    print(line, flush=True)


def grad_ratio(name, init, cov, lr, t_max, rounds=7):
    """Value-and-grad of the log-time area in lr against the forward solve (both jitted), timed in
    turn ``rounds`` times (best of each; the spread of the per-round ratios in brackets)."""
    from aedyn import objectives

    ts = aedyn.log_times(t_max)
    fwd = lambda lr: theory.solve(init, cov, lr=lr, ts=ts)
    f = jax.jit(lambda lr: fwd(lr).pmse)
    g = jax.jit(jax.value_and_grad(lambda lr: objectives.log_time_area(ts, fwd(lr).pmse)))
    (t_f, t_g), times = interleaved([lambda: f(lr), lambda: g(lr)], rounds)
    ratio, each = t_g / t_f, [b / a for a, b in times]
    print(f"{name}: forward {t_f:.3f} s, value-and-grad {t_g:.3f} s, ratio {ratio:.2f} (rounds "
          f"{min(each):.2f}-{max(each):.2f}; target <= 5: {'OK' if ratio <= 5 else 'MISSED'})", flush=True)


def stiff_full_spectra(budget, grad=False):
    """Case 4 (issue 12)."""
    D, K = 1024, 4
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    full = cov.full()
    net = aedyn.init_autoencoder(jax.random.key(1), D, K, activation="erf", scale=0.1, dtype=jnp.float64)
    st = theory.init_state(net, full)
    for lr in (0.1, 1.0):
        for t_max, target in ((1e3, 1.0), (1e5, 5.0)):
            for how, init in (("TheoryState, 1024 modes", st), ("network, merged", net)):
                tr, c, r = time_solve(init, full, lr, t_max, repeats=1)
                report(f"stiff full D=1024 K=4 erf eta={lr} t={t_max:g} ({how})", tr, c, r, target,
                       time_euler((st.wt, st.vs, st.M), full, D, lr, "erf", t_max, budget))
                if grad:
                    grad_ratio(f"  gradient, eta={lr} t={t_max:g} ({how})", init, full, lr, t_max)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short Euler budget (always extrapolate)")
    ap.add_argument("--stiff", action="store_true", help="only case 4 (stiff full spectra)")
    ap.add_argument("--grad", action="store_true", help="case 4 also times value-and-grad")
    args = ap.parse_args()
    budget = 0.0 if args.quick else 120.0
    t_max = 1000.0
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    if args.stiff:
        stiff_full_spectra(budget, args.grad)
        return

    # 1. standard example
    D = 500
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), D, 2, activation="erf", scale=0.1, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    for lr in (0.1, 1.0):
        tr, c, r = time_solve(net, cov, lr, t_max)
        report(f"standard D=500 K=2 erf eta={lr} t=1000", tr, c, r, 1.0,
               time_euler((st.wt, st.vs, st.M), cov, D, lr, "erf", t_max, budget))

    # 2. K=4, D=1000
    D = 1000
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0, 9.0, 17.0))
    net = aedyn.init_autoencoder(jax.random.key(1), D, 4, activation="erf", scale=0.1, dtype=jnp.float64)
    st = theory.init_state(net, cov)
    tr, c, r = time_solve(net, cov, 0.1, t_max)
    report("K=4 (3,5,9,17) D=1000 erf eta=0.1 t=1000", tr, c, r, 5.0,
           time_euler((st.wt, st.vs, st.M), cov, D, 0.1, "erf", t_max, budget))

    # 3. D=1024, full empirical spectrum
    D = 1024
    rng = np.random.default_rng(0)
    spec = D / np.arange(1, D + 1) ** 1.0  # power law rho_k = D / k
    basis, _ = np.linalg.qr(rng.standard_normal((D, D)))
    X = (rng.standard_normal((4 * D, D)) * np.sqrt(spec)[None, :]) @ basis.T
    emp = aedyn.Covariance.from_samples(X)
    net = aedyn.init_autoencoder(jax.random.key(1), D, 2, activation="erf", scale=0.1, dtype=jnp.float64)
    for name, cv in (
        ("D=1024 K=2 erf eta=0.1, empirical power-law spectrum (from_samples), all 1024 modes", emp),
        ("D=1024 K=2 erf eta=0.1, spiked (3,5) .full(), all 1024 modes", aedyn.spiked_covariance(
            jax.random.key(0), D, (3.0, 5.0)).full()),
    ):
        st = theory.init_state(net, cv)
        tr, c, r = time_solve(net, cv, 0.1, t_max, repeats=2)
        report(name + " t=1000", tr, c, r, 10.0, time_euler((st.wt, st.vs, st.M), cv, D, 0.1, "erf", t_max, budget))

    # Reduced spikes+bulk vs full spectrum at D=500 (t = 1000).
    D = 500
    cov = aedyn.spiked_covariance(jax.random.key(0), D, (3.0, 5.0))
    net = aedyn.init_autoencoder(jax.random.key(1), D, 2, activation="erf", scale=0.1, dtype=jnp.float64)
    ts = aedyn.log_times(t_max)
    a = theory.solve(net, cov, lr=0.1, ts=ts)
    t0 = time.perf_counter()
    b = theory.solve(net, cov.full(), lr=0.1, ts=ts)
    el = time.perf_counter() - t0
    rel = np.max(np.abs(np.asarray(a.pmse) / np.asarray(b.pmse) - 1))
    print(f"reduced vs full spectrum, D=500 erf eta=0.1 t<=1000: max rel. pmse difference {rel:.2e} "
          f"(full solve {el:.1f} s incl. compile, {b.config['solver']} {b.config['num_steps']} steps)")
    stiff_full_spectra(budget, args.grad)


if __name__ == "__main__":
    main()
