"""Finite-size study: where online SGD leaves the first-order theory, and where it diverges.

    python -m aedyn.studies.finite_size [--quick] [--out docs] [--cache DIR] [--replot]
    aedyn finite-size [--quick] ...                     (the same, from the CLI)

For each D in 250, 500, 1000, 2000 (spiked model, spike strengths (2, 1), unit bulk; K = 2, erf)
and a log grid of learning rates eta (= eta_W = eta_V = eta_b), it runs SGD (several seeds, one
vectorised sweep per (D, eta)) and the theory from the same initial networks, and measures

    gap(eta) = median over runs of max_t |pmse_SGD(t) - pmse_theory(t)| / pmse_theory(t)

the departure of a typical single run from the theory of its own initial network (and, as a
second measure, the same gap between the mean curves over seeds; a mean is dominated by a rare run
whose escape from a plateau is delayed). A learning rate at which any run diverged counts as
departed. Each run covers the same stretch of
the learning curve, s = eta * t in [s_lo, S] (the first-order dynamics depend on eta * t only:
plateau, escapes, convergence), and at least T_min units of t = steps / D, so that large learning
rates run long enough to diverge or to sit at their noise floor. The study reports the learning
rate where the gap first reaches 5% (log-interpolated between grid points) and the smallest eta at
which some SGD run diverged (and at which all did), and writes a two-panel figure and tables to
``<out>/finite_size.md`` and ``<out>/finite_size.png``.

The theory uses the eta * t invariance: one solve per seed at eta = 1 on a fine grid of s,
evaluated at s = eta * t for every eta (log-log interpolation between 200 grid points per decade).

Entry point for a CLI: :func:`main` (argv list) or :func:`run` (keyword arguments).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .. import sweeps
from .._data import spiked_covariance
from .._errors import RegimeWarning
from .._io import atomic_write

__all__ = ["run", "main", "departure", "horizon", "replot"]


def departure(etas, gaps, level=0.05):
    """First eta at which ``gaps`` reaches ``level``, interpolating log gap vs log eta (None if never)."""
    etas, gaps = np.asarray(etas, float), np.asarray(gaps, float)
    above = np.where(~np.isfinite(gaps) | (gaps >= level))[0]
    if above.size == 0:
        return None
    i = above[0]
    if i == 0:
        return float(etas[0])
    g0, g1 = max(gaps[i - 1], 1e-300), gaps[i]
    if not np.isfinite(g1) or g1 <= g0:
        return float(etas[i])
    f = (np.log(level) - np.log(g0)) / (np.log(g1) - np.log(g0))
    return float(np.exp(np.log(etas[i - 1]) + f * (np.log(etas[i]) - np.log(etas[i - 1]))))


def _theory_curve(cov, seeds, s_lo, s_hi, init_scale, cache):
    """(s grid, pmse (seed, s)) of the theory at eta = 1."""
    n = int(np.ceil(200 * np.log10(s_hi / s_lo))) + 2
    s_grid = np.geomspace(s_lo * 0.999, s_hi * 1.001, n)
    with warnings.catch_warnings():  # eta = 1 is the scale of the eta t invariance, not an SGD run
        warnings.simplefilter("ignore", RegimeWarning)
        res = sweeps.sweep_theory(cov, grid=dict(seed=seeds), base=dict(lr=1.0, init_scale=init_scale), ts=s_grid,
                                  out=cache)
    if not res.status["ok"].all():
        raise RuntimeError("finite_size: a theory solve failed")
    return s_grid, res.pmse


def _at(s_grid, curves, s):
    """The theory curves (seed, s_grid) at s (log-log interpolation)."""
    ls = np.log(s_grid)
    return np.stack([np.exp(np.interp(np.log(s), ls, np.log(c))) for c in curves])


def horizon(eta, S, T_min):
    """t_end of a run at learning rate eta: s = eta * t up to S, and at least T_min."""
    return max(S / eta, T_min)


def run(
    Ds=(250, 500, 1000, 2000),
    etas=None,
    seeds=tuple(range(8)),
    S: float = 50.0,
    T_min: float = 20.0,
    s_lo: float = 0.05,
    n_times: int = 40,
    init_scale: float = 0.1,
    level: float = 0.05,
    dtype=jnp.float32,
    out: str = "docs",
    cache: str | None = None,
    progress: bool = True,
    quick: bool = False,
):
    """Run the study and write ``<out>/finite_size.md`` and ``.png``; returns the table rows."""
    etas = np.geomspace(0.25, 4000.0, 15) if etas is None else np.asarray(etas, float)
    rows, curves = [], {}
    t_start = time.perf_counter()
    for D in Ds:
        t0 = time.perf_counter()
        cov = spiked_covariance(jax.random.key(1), D, [2.0, 1.0])
        sub = None if cache is None else os.path.join(cache, f"D={D}")
        s_hi = max(eta * horizon(eta, S, T_min) for eta in etas)
        s_grid, th = _theory_curve(cov, list(seeds), s_lo, s_hi, init_scale,
                                   None if sub is None else os.path.join(sub, "theory"))
        gaps, gaps_mean = np.empty(len(etas)), np.empty(len(etas))
        div_any, div_all = np.zeros(len(etas), bool), np.zeros(len(etas), bool)
        for i, eta in enumerate(etas):
            t_end = horizon(eta, S, T_min)
            t_lo = max(s_lo / eta, 1.0 / D)
            sim = sweeps.sweep_simulation(
                cov, grid=dict(seed=list(seeds)), base=dict(lr=eta, init_scale=init_scale),
                ts=np.geomspace(t_lo, t_end, n_times), dtype=dtype, progress=False,
                out=None if sub is None else os.path.join(sub, f"sgd_eta={eta:.6g}"),
            )
            div = sim.status["diverged"]
            div_any[i], div_all[i] = div.any(), div.all()
            if div.any():
                gaps[i] = gaps_mean[i] = np.inf
                continue
            th_eta = _at(s_grid, th, eta * sim.ts)  # (seed, t): the theory of each run's initial network
            per_run = np.max(np.abs(sim.pmse - th_eta) / th_eta, axis=1)
            gaps[i] = np.median(per_run)
            gaps_mean[i] = np.max(np.abs(sim.pmse.mean(0) - th_eta.mean(0)) / th_eta.mean(0))
            if progress:
                print(f"  D={D} eta={eta:.3g}: t <= {t_end:.3g}, gap {gaps[i]:.3g} (typical run), "
                      f"{gaps_mean[i]:.3g} (mean curve)", flush=True)
        row = {
            "D": D,
            "eta_depart": departure(etas, gaps, level),
            "eta_depart_mean": departure(etas, gaps_mean, level),
            "eta_diverge_any": float(etas[div_any].min()) if div_any.any() else None,
            "eta_diverge_all": float(etas[div_all].min()) if div_all.any() else None,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        curves[D] = (gaps, gaps_mean)
        print(f"D={D}: departs ({level:.0%}) at eta ~ {_fmt(row['eta_depart'])} (typical run; mean curve "
              f"{_fmt(row['eta_depart_mean'])}), first divergence at eta = "
              f"{_fmt(row['eta_diverge_any'])}, all diverge at {_fmt(row['eta_diverge_all'])} "
              f"({row['seconds']:.0f} s)", flush=True)
    total = time.perf_counter() - t_start
    settings = dict(seeds=len(seeds), S=S, T_min=T_min, s_lo=s_lo, n_times=n_times, init_scale=init_scale,
                    level=level, dtype=jnp.dtype(dtype).name, total=total, quick=quick)
    _write(out, rows, curves, etas, settings)
    return rows


def _fmt(x):
    return "—" if x is None else f"{x:.3g}"


def _num(g):
    return None if not np.isfinite(g) else float(g)


def _write(out, rows, curves, etas, st):
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        g, gm = curves[r["D"]]
        fin = np.isfinite(g)
        (line,) = ax.loglog(etas[fin], np.maximum(g[fin], 1e-6), "o-", ms=4, label=f"D = {r['D']}")
        ax.loglog(etas[fin], np.maximum(gm[fin], 1e-6), "--", color=line.get_color(), lw=0.8, alpha=0.7)
        if r["eta_diverge_any"] is not None:
            ax.axvline(r["eta_diverge_any"], color=line.get_color(), ls=":", lw=1)
    ax.axhline(st["level"], color="k", ls="--", lw=1, label=f"{st['level']:.0%}")
    ax.set_xlabel(r"learning rate $\eta$")
    ax.set_ylabel(r"max$_t$ |SGD - theory| / theory")
    ax.set_title("SGD vs first-order theory: typical run (solid), mean curve (dashed);\n"
                 "dotted: first divergence", fontsize=9)
    ax.legend(fontsize=8)
    Ds = np.array([r["D"] for r in rows], float)
    for key, label, mk in (("eta_depart", f"typical run departs by {st['level']:.0%}", "o-"),
                           ("eta_diverge_any", "first divergence", "s--")):
        v = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
        bx.loglog(Ds, v, mk, label=label)
    bx.loglog(Ds, Ds / Ds[0] * (rows[0]["eta_depart"] or 1.0), "k:", lw=1, label=r"$\propto D$")
    bx.set_xlabel("input dimension D")
    bx.set_ylabel(r"learning rate $\eta$")
    bx.set_title("thresholds vs D", fontsize=9)
    bx.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out, "finite_size.png")
    fig.savefig(png + ".tmp.png", dpi=120)
    os.replace(png + ".tmp.png", png)
    plt.close(fig)
    cmd = "python -m aedyn.studies.finite_size" + (" --quick" if st["quick"] else "")
    lines = [
        "# Finite-size study: where SGD leaves the first-order theory",
        "",
        f"Produced by `{cmd}` (or `aedyn finite-size{' --quick' if st['quick'] else ''}`), "
        f"total {st['total']:.0f} s on {os.cpu_count()} CPU cores.",
        "",
        "Spiked model, spike strengths (2, 1) (eigenvalues ~ 4D + 1, D + 1), unit bulk; K = 2, erf, vanilla rule, "
        f"eta_W = eta_V = eta_b = eta, initial scale {st['init_scale']}, no weight decay; SGD in {st['dtype']}, "
        f"{st['seeds']} seeds per point, theory from the same initial networks. Each run covers "
        f"eta t in [{st['s_lo']:g}, {st['S']:g}] (the same stretch of the learning curve for every eta) and "
        f"at least t = {st['T_min']:g} (= {st['T_min']:g} D steps), {st['n_times']} log-spaced times. "
        "Gap of a run = max over those times of |pmse_SGD - pmse_theory| / pmse_theory, the theory solved from "
        "the run's own initial network; the gap at a learning rate is the median over the runs (a typical run). "
        "The gap of the mean curves over seeds is given too: it is dominated by a rare run whose escape from a "
        "plateau is delayed (a run starting with a small overlap with a spike: its escape time is sensitive to "
        f"the SGD noise). 'Departs' is where the gap first reaches {st['level']:.0%} (log-interpolated between "
        "grid points); a learning rate at which a run diverged counts as departed.",
        "",
        f"| D | eta where a typical run departs by {st['level']:.0%} | eta_depart / D | same, mean curve "
        "| smallest eta with a diverging run | smallest eta where all runs diverge | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = None if r["eta_depart"] is None else r["eta_depart"] / r["D"]
        lines.append(f"| {r['D']} | {_fmt(r['eta_depart'])} | {_fmt(ratio)} | {_fmt(r['eta_depart_mean'])} | "
                     f"{_fmt(r['eta_diverge_any'])} | {_fmt(r['eta_diverge_all'])} | {r['seconds']:.0f} |")
    ratios = [r["eta_depart"] / r["D"] for r in rows if r["eta_depart"] is not None]
    if len(ratios) > 1:
        lines += ["", f"The departure scales with D: eta_depart / D lies between {min(ratios):.2g} and {max(ratios):.2g} "
                  "(the SGD noise and eta^2 terms that the first-order theory neglects are O(eta / D) relative, "
                  "docs/theory.md §3, §7). Divergence sets in between the last convergent and the first divergent grid "
                  f"value (grid ratio {etas[1] / etas[0]:.2g}), i.e. at eta of order D."]
    lines += ["", "![gap vs eta](finite_size.png)", "",
              "Gap per learning rate, typical run / mean curve (inf: a run diverged):", "",
              "| eta | " + " | ".join(f"D={r['D']}" for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for i, e in enumerate(etas):
        lines.append(f"| {e:.3g} | " + " | ".join(
            f"{curves[r['D']][0][i]:.3g} / {curves[r['D']][1][i]:.3g}" for r in rows) + " |")
    atomic_write(os.path.join(out, "finite_size.md"), "\n".join(lines) + "\n")
    res = {"settings": st, "etas": etas.tolist(), "rows": rows,
           "gaps_typical": {str(r["D"]): [_num(g) for g in curves[r["D"]][0]] for r in rows},
           "gaps_mean_curve": {str(r["D"]): [_num(g) for g in curves[r["D"]][1]] for r in rows}}
    atomic_write(os.path.join(out, "finite_size.json"), json.dumps(res, indent=1))


def replot(out: str = "docs") -> None:
    """Rewrite ``<out>/finite_size.md`` and ``.png`` from ``<out>/finite_size.json`` (no computing)."""
    import json

    with open(os.path.join(out, "finite_size.json")) as f:
        res = json.load(f)
    inf = lambda g: np.inf if g is None else g  # noqa: E731
    curves = {r["D"]: (np.array([inf(g) for g in res["gaps_typical"][str(r["D"])]], float),
                       np.array([inf(g) for g in res["gaps_mean_curve"][str(r["D"])]], float)) for r in res["rows"]}
    _write(out, res["rows"], curves, np.asarray(res["etas"], float), res["settings"])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m aedyn.studies.finite_size", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer learning rates and seeds, shorter horizons")
    ap.add_argument("--out", default="docs", help="folder for finite_size.md, .png and .json")
    ap.add_argument("--cache", default=None, help="folder for resumable sweep chunks")
    ap.add_argument("--Ds", default="250,500,1000,2000")
    ap.add_argument("--S", type=float, default=None, help="horizon in eta * t (default 50, quick 20)")
    ap.add_argument("--T", type=float, default=None, help="minimum horizon in t (default 20, quick 10)")
    ap.add_argument("--replot", action="store_true", help="only rewrite the table and figure from finite_size.json")
    a = ap.parse_args(argv)
    if a.replot:
        return replot(a.out)
    try:
        Ds = tuple(int(x) for x in a.Ds.split(","))
    except ValueError:
        ap.error(f"--Ds: expected comma-separated integers, got {a.Ds!r}")
    if any(D < 2 for D in Ds):
        ap.error(f"--Ds: every D must be >= 2 (K = 2), got {a.Ds!r}")
    for name, v in (("--S", a.S), ("--T", a.T)):
        if v is not None and not (np.isfinite(v) and v > 0):
            ap.error(f"{name}: expected a positive number, got {v}")
    if a.quick:
        return run(Ds=Ds, etas=np.geomspace(0.25, 4000.0, 8), seeds=(0, 1), S=a.S or 20.0, T_min=a.T or 10.0,
                   n_times=25, out=a.out, cache=a.cache, quick=True)
    return run(Ds=Ds, S=a.S or 50.0, T_min=a.T or 20.0, out=a.out, cache=a.cache)


if __name__ == "__main__":
    main()
