"""``aedyn figures``: one figure per phenomenon of the paper, SGD and theory on the same axes, with
the PCA levels drawn (docs/workflows/figures.md). Each figure writes its data (JSON) beside its PNG
and returns its key numbers, which the tests assert at ``quick`` size.

Figures (names): ``sequential`` (plateaus at PCA(1), PCA(2), ..., escape order by eigenvalue;
linear and erf), ``relu_bias`` (ReLU without bias, with an encoder bias, with encoder and
output bias, paired units K = 2M; the one-unit fraction f(beta) of docs/theory.md §8),
``truncated`` (truncated vs vanilla: the overlap matrix with the principal components), ``tied``
(tied vs untied erf: the tied network ends at its analysed limit, above PCA), ``universality``
(theory vs SGD on natural image patches vs SGD on Gaussian samples) and ``finite_size`` (the
learning rate where SGD leaves the theory, against D).
"""

import io
import json
from collections.abc import Callable
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from . import theory
from ._analysis import relu_fraction, relu_level
from ._data import spiked_covariance
from ._io import atomic_write
from ._model import init_autoencoder
from ._simulate import simulate


def _sgd_seeds(net, cov, lr, ts, seeds, **kw):
    """pmse (seeds, n) and PC overlaps m_W (seeds, n, K, P) of SGD runs from the same network."""
    keys = jax.random.split(jax.random.key(1234), seeds)
    run = jax.jit(jax.vmap(lambda k: simulate(net, cov, key=k, lr=lr, ts=ts, on_divergence="stop", **kw)))
    tr = run(keys)
    return np.asarray(tr.pmse, np.float64), np.asarray(tr.overlaps.m_W, np.float64)


def _save(out: Path, name: str, fig, data: dict) -> list[Path]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    png, js = out / f"{name}.png", out / f"{name}.json"
    atomic_write(png, buf.getvalue())
    atomic_write(js, json.dumps(data, indent=1, default=lambda a: np.asarray(a).tolist()))
    return [png, js]


def _axes(ncols: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.0), dpi=120, squeeze=False)
    return fig, axs[0]


def _pca_lines(ax, pca, upto):
    for k in range(1, upto + 1):
        ax.axhline(pca[k], color="0.45", ls=":", lw=1.1)
        ax.annotate(f"PCA({k})", xy=(1.0, pca[k]), xycoords=("axes fraction", "data"), xytext=(-3, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.3")


def _curve(ax, ts, ode, sims, color, label):
    mean = sims.mean(0)
    sd = sims.std(0, ddof=1) if sims.shape[0] > 1 else np.zeros_like(mean)
    ax.fill_between(ts, np.maximum(mean - sd, 1e-3 * mean), mean + sd, color=color, alpha=0.25, lw=0)
    ax.plot(ts, mean, "-", color=color, lw=1.4, label=f"{label}: SGD")
    ax.plot(ts, ode, "--", color="k", lw=1.0)


def _style(ax, title):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t = steps / D")
    ax.set_ylabel("pmse")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


def _plateau_levels(ts, e, pca):
    """The level of each plateau between successive escapes (where pmse crosses the midpoints of
    the PCA levels): pmse at the flattest point in log-log between two crossings; NaN if none."""
    from ._analysis import escape_times

    cross = escape_times(ts, e, pca)
    slope = np.abs(np.gradient(np.log(e), np.log(ts)))
    out = []
    for k in range(1, len(pca) - 1):
        lo, hi = cross[k - 1], cross[k]
        sel = (ts > lo) & (ts < hi) if np.isfinite(lo) and np.isfinite(hi) else np.zeros(ts.shape, bool)
        out.append(float(e[sel][np.argmin(slope[sel])]) if sel.any() else float("nan"))
    return out


def figure_sequential(out: Path, quick: bool = False) -> dict:
    """Sequential learning: plateaus at PCA(0), PCA(1), PCA(2), ..., the leading component first
    (linear and erf, K = 3, spikes (1.5, 3, 6); SGD mean +- std, theory dashed)."""
    D, seeds, eta = (200, 2, 0.1) if quick else (1000, 5, 0.1)
    t_max = 100.0 if quick else 300.0
    cov = spiked_covariance(jax.random.key(1), D, (1.5, 3.0, 6.0))
    K = 3
    pca = np.asarray(cov.pca_errors(K), np.float64)
    ts = np.geomspace(0.05, t_max, 40 if quick else 60)
    fig, axs = _axes(2)
    data = {"D": D, "K": K, "eta": eta, "seeds": seeds, "t": ts, "pca": pca}
    key = {}
    for ax, act in zip(axs, ("linear", "erf")):
        net = init_autoencoder(jax.random.key(2), D, K, activation=act, scale=0.1 if act == "linear" else 0.05)
        tr = theory.solve(net, cov, lr=eta, ts=ts)
        sims, mW = _sgd_seeds(net, cov, eta, ts, seeds)
        ode = np.asarray(tr.pmse)
        # Which component is learned when: the first time a decoder's largest |cosine| with u_j
        # passes 1/2 (the decoder grows along the components it learns).
        m = np.abs(np.asarray(tr.overlaps.m_V)).max(axis=1)  # (n, P)
        esc = [float(ts[np.argmax(m[:, j] > 0.5)]) if (m[:, j] > 0.5).any() else float("nan") for j in range(K)]
        plats = _plateau_levels(ts, ode, pca)
        _curve(ax, ts, ode, sims, "C0" if act == "linear" else "C3", act)
        _pca_lines(ax, pca, K)
        _style(ax, f"{act}, K = {K}, D = {D}, $\\eta$ = {eta} (theory dashed)")
        data[act] = {"theory": ode, "sgd": sims, "escape_times": esc, "plateaus": plats}
        key[act] = {"plateaus": plats, "escape_times": esc, "final_theory": float(ode[-1]),
                    "final_sgd": float(sims.mean(0)[-1])}
    fig.suptitle("Sequential learning: one principal component at a time", fontsize=10)
    fig.tight_layout()
    return {"files": _save(out, "sequential", fig, data), "pca": pca.tolist(), **key}


def figure_relu_bias(out: Path, quick: bool = False) -> dict:
    """ReLU and the bias: no bias, encoder bias, encoder + output bias (K = M = 2), paired units
    (K = 2M = 4, no bias); and the one-unit fraction f(beta) with and without an output bias,
    with Monte-Carlo points (docs/theory.md §8, "Output bias")."""
    D, seeds, eta = (400, 2, 0.5) if quick else (1000, 5, 0.5)
    t_max = 300.0 if quick else 500.0
    cov = spiked_covariance(jax.random.key(1), D, (3.0, 5.0))
    pca = np.asarray(cov.pca_errors(4), np.float64)
    ts = np.geomspace(0.1, t_max, 30 if quick else 50)
    fig, axs = _axes(2)
    cases = {
        "no bias": (2, {}),
        "encoder bias (b = 0)": (2, dict(bias=0.0)),
        "encoder + output bias": (2, dict(bias=1.0, output_bias=0.0)),
        "paired units (K = 4)": (4, {}),
    }
    data = {"D": D, "eta": eta, "seeds": seeds, "t": ts, "pca": pca, "half_component_level": relu_level(cov, 2)}
    finals = {}
    for i, (label, (K, kw)) in enumerate(cases.items()):
        net = init_autoencoder(jax.random.key(2), D, K, activation="relu", scale=0.1, **kw)
        tr = theory.solve(net, cov, lr=eta, ts=ts, solver=diffrax.Tsit5(), max_steps=400_000)
        sims, _ = _sgd_seeds(net, cov, eta, ts, seeds)
        ode = np.asarray(tr.pmse)
        _curve(axs[0], ts, ode, sims, f"C{i}", label)
        data[label] = {"theory": ode, "sgd": sims}
        finals[label] = {"theory": float(ode[-1]), "sgd": float(sims.mean(0)[-1])}
    _pca_lines(axs[0], pca, 2)
    axs[0].axhline(relu_level(cov, 2), color="C1", ls="-.", lw=0.8)
    _style(axs[0], f"ReLU, spikes (3, 5), D = {D}, $\\eta$ = {eta}, b + c from b = 1, c = 0 (theory dashed)")
    betas = np.linspace(-2.0, 4.0, 121)
    pts = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    z = np.random.default_rng(0).standard_normal(200_000 if quick else 2_000_000)
    mc_c, mc_b = [], []
    for beta in pts:
        h = np.maximum(z + beta, 0.0)
        mc_c.append(np.cov(z, h)[0, 1] ** 2 / np.var(h))
        mc_b.append(np.mean(z * h) ** 2 / np.mean(h * h))
    ax = axs[1]
    ax.plot(betas, relu_fraction(betas), "C2-", label="encoder + output bias")
    ax.plot(betas, relu_fraction(betas, output_bias=False), "C1-", label="encoder bias only")
    ax.plot(pts, mc_c, "C2o", ms=4, label="Monte Carlo")
    ax.plot(pts, mc_b, "C1o", ms=4)
    ax.set_xlabel(r"$\beta$ (bias / std of the pre-activation)")
    ax.set_ylabel(r"fraction $f(\beta)$ of the component explained")
    ax.set_title("One relu unit: f(beta)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    f3 = {str(b): float(relu_fraction(b)) for b in (0.0, 1.0, 2.0)}
    data.update(beta=betas, f_output_bias=relu_fraction(betas), f_encoder_bias=relu_fraction(betas, output_bias=False),
                mc_beta=pts, mc_output_bias=mc_c, mc_encoder_bias=mc_b, f_at=f3)
    return {"files": _save(out, "relu_bias", fig, data), "pca": pca.tolist(), "finals": finals, "f": f3,
            "half_component_level": relu_level(cov, 2), "mc_output_bias": [float(x) for x in mc_c]}


def _diagonality(mV):
    """Overlap matrix O[k, j] = |cos(v^k, u_j)| over the leading K components, rows normalised, and
    its diagonality sum_k O_kk^2 / sum_kj O_kj^2 (1: unit k is the k-th principal component)."""
    O = np.abs(np.asarray(mV, np.float64))
    O = O / np.maximum(np.linalg.norm(O, axis=-1, keepdims=True), 1e-300)
    return O, float(np.sum(np.diagonal(O, axis1=-2, axis2=-1) ** 2, -1).mean() / np.sum(O**2, (-2, -1)).mean())


def figure_truncated(out: Path, quick: bool = False) -> dict:
    """Truncated vs vanilla SGD (linear, K = 3, spikes (1.5, 3, 6)): the same error curve, but only
    the truncated rule makes unit k the k-th principal component (overlap matrix diagonal)."""
    D, seeds, eta = (200, 2, 0.1) if quick else (1000, 5, 0.1)
    t_max = 100.0 if quick else 200.0
    cov = spiked_covariance(jax.random.key(1), D, (1.5, 3.0, 6.0))
    K = 3
    pca = np.asarray(cov.pca_errors(K), np.float64)
    ts = np.geomspace(0.05, t_max, 30 if quick else 50)
    net = init_autoencoder(jax.random.key(2), D, K, activation="linear", scale=0.1)
    fig, axs = _axes(3)
    data = {"D": D, "K": K, "eta": eta, "seeds": seeds, "t": ts, "pca": pca}
    key = {}
    for i, rule in enumerate(("vanilla", "truncated")):
        tr = theory.solve(net, cov, lr=eta, ts=ts, rule=rule)
        keys = jax.random.split(jax.random.key(1234), seeds)
        run = jax.jit(jax.vmap(lambda k: simulate(net, cov, key=k, lr=eta, ts=ts, rule=rule, on_divergence="stop")))
        sims_tr = run(keys)
        sims = np.asarray(sims_tr.pmse, np.float64)
        ode = np.asarray(tr.pmse)
        O, d_th = _diagonality(np.asarray(tr.overlaps.m_V)[-1])
        _, d_sgd = _diagonality(np.asarray(sims_tr.overlaps.m_V)[:, -1])
        _curve(axs[0], ts, ode, sims, f"C{i}", rule)
        im = axs[1 + i].imshow(O, vmin=0, vmax=1, cmap="viridis")
        axs[1 + i].set_title(f"{rule}: |cos(v^k, u_j)|, diagonality {d_th:.2f} (SGD {d_sgd:.2f})", fontsize=8)
        axs[1 + i].set_xlabel("principal component j")
        axs[1 + i].set_ylabel("unit k")
        data[rule] = {"theory": ode, "sgd": sims, "overlap_theory": O, "diagonality_theory": d_th,
                      "diagonality_sgd": d_sgd}
        key[rule] = {"diagonality_theory": d_th, "diagonality_sgd": d_sgd, "final_theory": float(ode[-1]),
                     "final_sgd": float(sims.mean(0)[-1])}
    fig.colorbar(im, ax=axs[2], fraction=0.046)
    _pca_lines(axs[0], pca, K)
    _style(axs[0], f"linear, K = {K}, D = {D}, $\\eta$ = {eta} (theory dashed)")
    fig.tight_layout()
    return {"files": _save(out, "truncated", fig, data), "pca": pca.tolist(), **key}


def figure_tied(out: Path, quick: bool = False) -> dict:
    """Tied vs untied erf (K = 2, spikes (3, 5)): the tied network ends at the minimum of pmse it
    can reach (``analysis.long_time_limit`` from its final state), above PCA(2); the untied one
    goes below it, approaching PCA(2) slowly."""
    from ._analysis import long_time_limit

    D, seeds, eta = (200, 2, 0.1) if quick else (1000, 5, 0.1)
    t_max = 200.0 if quick else 500.0
    cov = spiked_covariance(jax.random.key(1), D, (3.0, 5.0))
    K = 2
    pca = np.asarray(cov.pca_errors(K), np.float64)
    ts = np.geomspace(0.05, t_max, 30 if quick else 50)
    fig, axs = _axes(1)
    data = {"D": D, "K": K, "eta": eta, "seeds": seeds, "t": ts, "pca": pca}
    key = {}
    for i, tied in enumerate((False, True)):
        label = "tied" if tied else "untied"
        net = init_autoencoder(jax.random.key(2), D, K, activation="erf", tied=tied, scale=1.0 if tied else 0.1)
        tr = theory.solve(net, cov, lr=eta, ts=ts)
        sims, _ = _sgd_seeds(net, cov, eta, ts, seeds)
        ode = np.asarray(tr.pmse)
        _curve(axs[0], ts, ode, sims, f"C{i}", label)
        limit = float(long_time_limit(tr.state, cov)[0])
        data[label] = {"theory": ode, "sgd": sims, "limit": limit}
        key[label] = {"final_theory": float(ode[-1]), "final_sgd": float(sims.mean(0)[-1]), "limit": limit}
    axs[0].axhline(key["tied"]["limit"], color="C1", ls="-.", lw=0.8)
    _pca_lines(axs[0], pca, K)
    _style(axs[0], f"erf, K = {K}, D = {D}, $\\eta$ = {eta}: tied vs untied (theory dashed; dash-dot: tied limit)")
    fig.tight_layout()
    return {"files": _save(out, "tied", fig, data), "pca": pca.tolist(), **key}


def figure_universality(out: Path, quick: bool = False) -> dict:
    """Gaussian universality on the embedded natural image patches (authors' recipe, D = 1024, K = 4,
    erf): the ODE with the patches' empirical spectrum, SGD on the patches and SGD on Gaussian
    samples of the same second moment (:func:`aedyn.datasets.universality`; quick: eta = 1 only,
    2 seeds, t <= 30). Key numbers: the largest band ratio of each kind of run (<= 1 inside)."""
    from ._universality import universality
    from .datasets import load

    ds = load("patches", recipe="authors")
    res = universality(ds, K=4, lr=(1.0,) if quick else (0.1, 1.0), t_max=30.0 if quick else 100.0,
                       n_times=15 if quick else 30, seeds=2 if quick else 3)
    files = [Path(f) for f in res.save(out, prefix="universality")]
    return {"files": files, "pca": res.pca.tolist(), "lrs": res.lrs.tolist(),
            "band_images": float(np.nanmax(res.band_ratio("images"))),
            "band_gaussian": float(np.nanmax(res.band_ratio("gaussian")))}


def figure_finite_size(out: Path, quick: bool = False) -> dict:
    """The finite-size map: the learning rate at which SGD departs from the theory by 5%, and where
    it diverges, against D (:func:`aedyn.studies.finite_size.run`; spikes (2, 1), K = 2, erf).
    Quick: D = 100, 200, five learning rates, 2 seeds. Key numbers: per D, eta_depart / D and the
    first divergence / D."""
    from .studies import finite_size

    if quick:
        rows = finite_size.run(Ds=(100, 200), etas=np.geomspace(0.25, 400.0, 5), seeds=(0, 1), S=10.0,
                               T_min=4.0, n_times=10, out=str(out), progress=False, quick=True)
    else:
        rows = finite_size.run(out=str(out), progress=False)
    files = [Path(out) / f"finite_size.{ext}" for ext in ("png", "json", "md")]
    return {"files": files, "D": [r["D"] for r in rows],
            "eta_depart_per_D": [None if r["eta_depart"] is None else r["eta_depart"] / r["D"] for r in rows],
            "eta_diverge_per_D": [None if r["eta_diverge_any"] is None else r["eta_diverge_any"] / r["D"]
                                  for r in rows]}


FIGURES: dict[str, Callable[[Path, bool], dict]] = {
    "sequential": figure_sequential,
    "relu_bias": figure_relu_bias,
    "truncated": figure_truncated,
    "tied": figure_tied,
    "universality": figure_universality,
    "finite_size": figure_finite_size,
}


def make_figures(out, *, quick: bool = False, only=None) -> dict:
    """Write the figures (all, or the names in ``only``) into ``out``; returns name -> key numbers.
    Needs float64 (``jax.config.update("jax_enable_x64", True)``) for the theory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(FIGURES) if only is None else list(only)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"only: unknown figures {unknown}; expected some of {list(FIGURES)}")
    return {n: FIGURES[n](out, quick) for n in names}
