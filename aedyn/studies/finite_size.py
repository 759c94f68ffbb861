"""Finite-size study: where online SGD leaves the first-order theory, and where it diverges.

    python -m aedyn.studies.finite_size [--quick] [--out docs] [--cache DIR]

For each D in 250, 500, 1000, 2000 (spiked model, spike strengths (2, 1), unit bulk; K = 2, erf)
and a log grid of learning rates eta (= eta_W = eta_V), it runs SGD (float64, several seeds, one
vectorised sweep per D) and the theory from the same initial networks, and measures the gap

    gap(eta) = max_t |<pmse_SGD>(t) - <pmse_theory>(t)| / <pmse_theory>(t)

over t in [0.01, T] (means over seeds; a run that diverged counts as departed). It reports the
learning rate where the gap first reaches 5% (log-interpolated between grid points) and the
smallest eta at which some SGD run diverged (and at which all did), then writes a figure and a
table to ``<out>/finite_size.md`` and ``<out>/finite_size.png``.

The theory uses that with equal learning rates and no weight decay the first-order dynamics
depend on eta * t only: one solve per seed at eta = 1 on a fine grid of s = eta * t, evaluated
at s = eta * t for every eta (log-log interpolation between 600 grid points per decade span).

Entry point for a CLI: :func:`main` (argv list) or :func:`run` (keyword arguments).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import sweeps
from .._checks import log_times
from ..data import spiked_covariance
from ..trajectory import atomic_write

__all__ = ["run", "main", "departure"]


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


def _theory_curves(cov, seeds, ts, etas, init_scale, chunk_size, cache):
    s_min, s_max = etas.min() * ts[0], etas.max() * ts[-1]
    s_grid = np.geomspace(s_min * 0.999, s_max * 1.001, 600)
    res = sweeps.sweep_theory(cov, grid=dict(seed=seeds), base=dict(lr=1.0, init_scale=init_scale), ts=s_grid,
                              out=cache, chunk_size=chunk_size)
    if not res.status["ok"].all():
        raise RuntimeError("finite_size: a theory solve failed")
    ls = np.log(s_grid)
    out = np.empty((len(etas), len(seeds), len(ts)))
    for j in range(len(seeds)):
        lp = np.log(res.pmse[j])
        for i, eta in enumerate(etas):
            out[i, j] = np.exp(np.interp(np.log(eta * ts), ls, lp))
    return out


def run(
    Ds=(250, 500, 1000, 2000),
    etas=None,
    seeds=(0, 1, 2),
    T: float = 20.0,
    n_times: int = 40,
    init_scale: float = 0.1,
    level: float = 0.05,
    out: str = "docs",
    cache: str | None = None,
    progress: bool = True,
    quick: bool = False,
):
    """Run the study and write ``<out>/finite_size.md`` and ``.png``; returns the table rows."""
    etas = np.geomspace(0.1, 3000.0, 16) if etas is None else np.asarray(etas, float)
    ts = log_times(T, n_times)
    rows, curves = [], {}
    t_start = time.perf_counter()
    for D in Ds:
        t0 = time.perf_counter()
        cov = spiked_covariance(jax.random.key(1), D, [2.0, 1.0])
        sub = None if cache is None else os.path.join(cache, f"D={D}")
        sim = sweeps.sweep_simulation(
            cov, grid=dict(lr=etas, seed=list(seeds)), base=dict(init_scale=init_scale), ts=ts,
            dtype=jnp.float64, chunk_size=len(seeds) * 2, progress=progress,
            out=None if sub is None else os.path.join(sub, "sgd"),
        )
        theory = _theory_curves(cov, list(seeds), ts, etas, init_scale, None,
                                None if sub is None else os.path.join(sub, "theory"))
        div = sim.status["diverged"]  # (eta, seed)
        gaps = np.empty(len(etas))
        for i in range(len(etas)):
            if div[i].any():
                gaps[i] = np.inf
                continue
            m_sgd, m_th = sim.pmse[i].mean(0), theory[i].mean(0)
            gaps[i] = np.max(np.abs(m_sgd - m_th) / m_th)
        any_div = etas[div.any(1)]
        all_div = etas[div.all(1)]
        row = {
            "D": D,
            "eta_depart": departure(etas, gaps, level),
            "eta_diverge_any": float(any_div.min()) if any_div.size else None,
            "eta_diverge_all": float(all_div.min()) if all_div.size else None,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        curves[D] = gaps
        print(f"D={D}: departs ({level:.0%}) at eta ~ {row['eta_depart']}, first divergence at eta = "
              f"{row['eta_diverge_any']}, all diverge at {row['eta_diverge_all']} ({row['seconds']:.0f} s)", flush=True)
    total = time.perf_counter() - t_start
    _write(out, rows, curves, etas, ts, seeds, T, level, init_scale, total, quick)
    return rows


def _fmt(x):
    return "—" if x is None else f"{x:.3g}"


def _write(out, rows, curves, etas, ts, seeds, T, level, init_scale, total, quick):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        g = curves[r["D"]]
        fin = np.isfinite(g)
        (line,) = ax.loglog(etas[fin], np.maximum(g[fin], 1e-6), "o-", label=f"D = {r['D']}")
        if r["eta_diverge_any"] is not None:
            ax.axvline(r["eta_diverge_any"], color=line.get_color(), ls=":", lw=1)
    ax.axhline(level, color="k", ls="--", lw=1, label=f"{level:.0%}")
    ax.set_xlabel(r"learning rate $\eta$")
    ax.set_ylabel(r"max$_t$ |SGD - theory| / theory")
    ax.set_title("SGD vs first-order theory (dotted: first divergence)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(out, "finite_size.png")
    fig.savefig(png + ".tmp.png", dpi=120)
    os.replace(png + ".tmp.png", png)
    plt.close(fig)
    lines = [
        "# Finite-size study: where SGD leaves the first-order theory",
        "",
        "Produced by `python -m aedyn.studies.finite_size" + (" --quick" if quick else "") + "` "
        f"(total {total:.0f} s on {os.cpu_count()} CPU cores).",
        "",
        f"Spiked model, spike strengths (2, 1) (eigenvalues ~ 4D + 1, D + 1), unit bulk; K = 2, erf, "
        f"vanilla rule, eta_W = eta_V = eta_b = eta, initial scale {init_scale}, no weight decay; SGD in float64, "
        f"{len(seeds)} seeds; times t in [0.01, {T:g}] ({len(ts)} log-spaced points); learning rates "
        f"{etas.min():.3g} .. {etas.max():.3g} ({len(etas)} log-spaced). Gap = max over t of "
        "|mean SGD pmse - mean theory pmse| / mean theory pmse, theory from the same initial networks. "
        f"'Departs' is where the gap first reaches {level:.0%} (log-interpolated); a diverged run counts as departed.",
        "",
        "| D | eta where SGD departs by 5% | smallest eta with a diverging run | smallest eta where all runs diverge |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['D']} | {_fmt(r['eta_depart'])} | {_fmt(r['eta_diverge_any'])} | {_fmt(r['eta_diverge_all'])} |")
    lines += ["", "![gap vs eta](finite_size.png)", "", "Gap per learning rate (inf: diverged):", "",
              "| eta | " + " | ".join(f"D={r['D']}" for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for i, e in enumerate(etas):
        lines.append(f"| {e:.3g} | " + " | ".join(f"{curves[r['D']][i]:.3g}" for r in rows) + " |")
    atomic_write(os.path.join(out, "finite_size.md"), "\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m aedyn.studies.finite_size", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer learning rates, seeds and a shorter horizon")
    ap.add_argument("--out", default="docs", help="folder for finite_size.md and finite_size.png")
    ap.add_argument("--cache", default=None, help="folder for resumable sweep chunks")
    ap.add_argument("--Ds", default="250,500,1000,2000")
    ap.add_argument("--T", type=float, default=None)
    a = ap.parse_args(argv)
    Ds = tuple(int(x) for x in a.Ds.split(","))
    if a.quick:
        return run(Ds=Ds, etas=np.geomspace(0.1, 3000.0, 10), seeds=(0, 1), T=a.T or 5.0, n_times=25, out=a.out,
                   cache=a.cache, quick=True)
    return run(Ds=Ds, T=a.T or 20.0, out=a.out, cache=a.cache)


if __name__ == "__main__":
    main()
