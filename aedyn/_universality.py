"""The Gaussian-universality workflow (docs/theory.md §9): on a real dataset, the theory integrated
with the data's empirical spectrum, SGD on the real samples and SGD on Gaussian samples of the
same second moment, from one initial network, mean +- standard error over seeds; a table and a
figure.

All runs start from ``init_autoencoder(k_net, D, K, activation, scale)`` with
``k_net, k_sgd = jax.random.split(jax.random.key(seed))``; seed i of the SGD runs uses the data
stream ``jax.random.fold_in(k_sgd, i)`` (the same keys for the real and the Gaussian runs). The
SGD runs of all learning rates and seeds are one ``jax.vmap``-ed call of :func:`aedyn.simulate`
per kind of data.
"""

import dataclasses
import io
from collections.abc import Callable, Sequence
import json
import math
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import theory
from ._checks import check_int, check_number, require_x64
from ._dataset import Dataset
from ._defaults import BLOCK, INIT_SCALE, log_times
from ._io import atomic_write
from ._model import init_autoencoder
from ._simulate import simulate

#: The tolerance bands of the comparison (docs/theory.md §9): max(rel of the SGD mean, 3 s.e.).
BAND_IMAGES, BAND_GAUSSIAN, BAND_SEMS = 0.05, 0.03, 3.0
#: The kinds of SGD run of the workflow.
KINDS = ("images", "gaussian")


def recording_times(t_max: float, n_times: int, D: int) -> np.ndarray:
    """Log-spaced times from 0.01 to t_max rounded to whole steps (t = steps / D), deduplicated, so
    that SGD and the theory are recorded at exactly the same times."""
    steps = np.unique(np.maximum(np.round(log_times(t_max, n_times) * D), 1))
    return steps / D


def _mean_sem(P):
    mean = P.mean(-2)
    n = P.shape[-2]
    sem = P.std(-2, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    return mean, sem


@dataclasses.dataclass(frozen=True)
class UniversalityResult:
    """The workflow's numbers. Axes: L learning rates, S seeds, n times.

    Attributes:
        ts: (n,) times t = steps / D.
        lrs: (L,) learning rates.
        theory: (L, n) pmse of the theory with the empirical spectrum.
        images, gaussian: (L, S, n) population error (docs/theory.md §2, with the pool's Omega)
            of SGD on the real samples and on Gaussian samples N(0, Omega); ``gaussian`` is None
            when not run.
        images_heldout, gaussian_heldout: (L, S, n) mean loss / D of those networks on the
            held-out real samples, or None.
        pca: (K + 1,) PCA errors of 0..K components (the plateaus).
        config: everything that made the run (dataset, network, learning rates, seeds, times,
            versions, timings).
    """

    ts: np.ndarray
    lrs: np.ndarray
    theory: np.ndarray
    images: np.ndarray
    gaussian: np.ndarray | None
    images_heldout: np.ndarray | None
    gaussian_heldout: np.ndarray | None
    pca: np.ndarray
    config: dict

    def mean_sem(self, which: str = "images") -> tuple[np.ndarray, np.ndarray]:
        """(mean (L, n), standard error (L, n)) over seeds of ``images``, ``gaussian``,
        ``images_heldout`` or ``gaussian_heldout``."""
        P = getattr(self, which)
        if P is None:
            raise ValueError(f"which: this result has no {which!r} runs")
        return _mean_sem(np.asarray(P, np.float64))

    def band_ratio(self, which: str = "images", rel: float | None = None, sems: float = BAND_SEMS) -> np.ndarray:
        """|theory - mean| / max(rel * mean, sems * s.e.) at every (lr, t): <= 1 inside the band
        (default rel: 5% for ``images``, 3% for ``gaussian``)."""
        rel = (BAND_GAUSSIAN if which.startswith("gaussian") else BAND_IMAGES) if rel is None else rel
        mean, sem = self.mean_sem(which)
        return np.abs(self.theory - mean) / np.maximum(rel * mean, sems * np.nan_to_num(sem))

    def table(self) -> dict[str, np.ndarray]:
        """Long-format columns: lr, t, theory, then mean and s.e. of each kind of run (and its
        held-out error), and the band ratios."""
        L, n = self.theory.shape
        cols = {"lr": np.repeat(self.lrs, n), "t": np.tile(self.ts, L), "theory": self.theory.reshape(-1)}
        for which in ("images", "images_heldout", "gaussian", "gaussian_heldout"):
            if getattr(self, which) is not None:
                mean, sem = self.mean_sem(which)
                cols[f"{which}_mean"] = mean.reshape(-1)
                cols[f"{which}_sem"] = sem.reshape(-1)
        cols["band_images"] = self.band_ratio("images").reshape(-1)
        if self.gaussian is not None:
            cols["band_gaussian"] = self.band_ratio("gaussian").reshape(-1)
        return cols

    def summary(self) -> str:
        """A few lines: the largest band ratio of each kind of run per learning rate."""
        lines = []
        for i, lr in enumerate(self.lrs):
            parts = [f"lr {lr:g}:"]
            for which, rel in (("images", BAND_IMAGES), ("gaussian", BAND_GAUSSIAN)):
                if getattr(self, which) is None:
                    continue
                r = self.band_ratio(which)[i]
                mean, _ = self.mean_sem(which)
                dev = np.max(np.abs(self.theory[i] - mean[i]) / mean[i])
                parts.append(f"SGD on {which}: max |theory - mean| / mean = {dev:.2%}, "
                             f"band max({rel:.0%}, 3 s.e.) ratio {np.nanmax(r):.2f}"
                             f"{' (inside)' if np.nanmax(r) <= 1 else ' (OUTSIDE)'};")
            if self.images_heldout is not None:
                hm, _ = self.mean_sem("images_heldout")
                parts.append(f"held-out real error vs theory: max {np.max(np.abs(hm[i] - self.theory[i]) / self.theory[i]):.2%}")
            lines.append(" ".join(parts))
        return "\n".join(lines)

    def save(self, out: str | os.PathLike, *, prefix: str = "universality") -> list[str]:
        """Write ``<prefix>.csv`` (the table, config as a comment line), ``<prefix>.json``
        (config, PCA levels, table and every run) and ``<prefix>.png`` (the figure) in ``out``,
        each atomically. Returns the paths."""
        out = os.fspath(out)
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"out: {out} exists and is not a folder")
        cols = self.table()
        head = "# " + json.dumps(self.config, sort_keys=True, default=str)
        rows = np.stack([np.asarray(c, np.float64) for c in cols.values()], axis=-1)
        csv = "\n".join([head, ",".join(cols)] + [",".join(f"{v:.10g}" for v in r) for r in rows]) + "\n"
        runs = {k: (None if getattr(self, k) is None else np.asarray(getattr(self, k)).tolist())
                for k in ("images", "images_heldout", "gaussian", "gaussian_heldout")}
        payload = {"config": self.config, "pca": np.asarray(self.pca).tolist(), "ts": np.asarray(self.ts).tolist(),
                   "lrs": np.asarray(self.lrs).tolist(), "theory": np.asarray(self.theory).tolist(), "runs": runs,
                   "table": {k: np.asarray(v).tolist() for k, v in cols.items()}}
        paths = [os.path.join(out, f"{prefix}.{ext}") for ext in ("png", "csv", "json")]
        atomic_write(paths[0], self.figure_png())
        atomic_write(paths[1], csv)
        atomic_write(paths[2], json.dumps(payload, indent=1, default=str))
        return paths

    def figure_png(self) -> bytes:
        """The figure (one panel per learning rate) as PNG bytes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        L = len(self.lrs)
        fig, axes = plt.subplots(1, L, figsize=(5.2 * L, 4.2), dpi=110, squeeze=False)
        c = self.config
        ds = c.get("dataset", {})
        for i, ax in enumerate(axes[0]):
            ts = self.ts
            for which, color, style, label in (("images", "C0", dict(ls="none", marker="o", ms=4, mfc="none"),
                                                 "SGD on the real samples"),
                                               ("gaussian", "C1", dict(lw=1.5), "SGD on Gaussian samples")):
                if getattr(self, which) is None:
                    continue
                m, s = self.mean_sem(which)
                s = np.nan_to_num(s[i])
                ax.fill_between(ts, m[i] - s, m[i] + s, color=color, alpha=0.3, lw=0)
                ax.plot(ts, m[i], color=color, label=f"{label} (mean $\\pm$ s.e.)", **style)
                held = which + "_heldout"
                if getattr(self, held) is not None:
                    hm, _ = self.mean_sem(held)
                    ax.plot(ts, hm[i], color=color, lw=1.1, ls=":", label="  its error on held-out real samples")
            ax.plot(ts, self.theory[i], "k--", lw=1.3, label="ODE theory, empirical spectrum")
            pca = np.asarray(self.pca, np.float64)
            for k in range(1, len(pca)):
                ax.axhline(pca[k], color="0.6", ls="-.", lw=0.8)
            ax.annotate(f"PCA, 1..{len(pca) - 1} comp.", xy=(1.0, pca[-1]), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.4")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("t = steps / D")
            ax.set_ylabel("pmse")
            ax.set_title(f"$\\eta$ = {self.lrs[i]:g}", fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.legend(loc="lower left", fontsize=7)
        fig.suptitle(f"{ds.get('name', 'data')} ({ds.get('recipe', '?')} recipe), D={c.get('D')}, K={c.get('K')}, "
                     f"{c.get('activation')}, {c.get('seeds')} seeds", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()


@eqx.filter_jit
def _sgd_runs(net, data, keys, lrs, ts, block):
    """SGD runs of ``net`` on ``data`` for every (learning rate, key): a Trajectory with axes (L, S)."""

    def one(key, lr):
        return simulate(net, data, key=key, lr=lr, ts=ts, block=block, on_divergence="stop")

    return jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0))(keys, lrs)


def universality(
    dataset: Dataset,
    *,
    K: int = 4,
    activation: str | Callable = "erf",
    lr: float | Sequence[float] = (0.1, 1.0),
    t_max: float = 100.0,
    n_times: int = 30,
    seeds: int = 3,
    scale: float = INIT_SCALE,
    seed: int = 0,
    dtype: type | np.dtype | str = jnp.float32,
    gaussian: bool = True,
    block: int = BLOCK,
    log: Callable[[str], object] | None = None,
) -> UniversalityResult:
    """Theory vs SGD on real samples vs SGD on Gaussian samples of the same second moment.

    Args:
        dataset: a :class:`~aedyn.Dataset` (e.g. ``aedyn.datasets.load("patches")``); SGD on the
            real samples draws them as ``dataset.sampling`` says (``"replacement"`` or
            ``"one-pass"``), SGD on Gaussian samples uses ``dataset.with_sampling("gaussian")``.
        K: hidden units of the autoencoder.
        activation: its activation (a name or a function).
        lr: one learning rate or a sequence (eta for all weights).
        t_max: the last recording time.
        n_times: the number of recording times (log-spaced from 0.01, whole steps).
        seeds: SGD runs per kind and learning rate (>= 2, for the standard error).
        scale: initial weights N(0, scale^2).
        seed: fixes the initial network and the data streams.
        dtype: of the SGD runs (the theory runs in float64, which must be enabled).
        gaussian: also run SGD on Gaussian samples.
        block: samples drawn per random-number call.
        log: a callable receiving progress messages (e.g. ``print``), or None.

    Returns:
        A :class:`UniversalityResult` (``.save(out)`` writes the table and the figure).
    """
    require_x64("aedyn.datasets.universality")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset: expected an aedyn.Dataset (aedyn.datasets.load(...)), got {type(dataset).__name__}")
    if dataset.sampling == "gaussian":
        raise ValueError("dataset: its sampling is 'gaussian'; pass the dataset with sampling 'replacement' or "
                         "'one-pass' (the Gaussian runs are made from it)")
    K = check_int(K, "K", lo=1)
    if K > dataset.D:
        raise ValueError(f"K: K = {K} hidden units exceed the input dimension D = {dataset.D}")
    lrs = np.atleast_1d(np.asarray(lr, np.float64))
    if lrs.ndim != 1 or lrs.size < 1 or not np.all(np.isfinite(lrs)) or np.any(lrs <= 0):
        raise ValueError(f"lr: expected positive, finite learning rates, got {lr!r}")
    check_number(t_max, "t_max", lo=0.01, lo_open=True)
    n_times = check_int(n_times, "n_times", lo=2)
    seeds = check_int(seeds, "seeds", lo=2)
    check_number(scale, "scale", lo=0.0)
    seed = check_int(seed, "seed", lo=0)
    say = log or (lambda msg: None)
    D = dataset.D
    ts = recording_times(t_max, n_times, D)
    dataset.check_steps(int(round(ts[-1] * D)))
    k_net, k_sgd = jax.random.split(jax.random.key(seed))
    net = init_autoencoder(k_net, D, K, activation=activation, scale=scale, dtype=dtype)
    keys = jax.vmap(lambda i: jax.random.fold_in(k_sgd, i))(jnp.arange(seeds))
    timings = {}

    t0 = time.perf_counter()
    say(f"theory: {dataset.covariance.n_modes} modes (the full empirical spectrum), {lrs.size} learning rate(s)")
    ths = [theory.solve(net, dataset.covariance, lr=float(a), ts=ts) for a in lrs]
    th = np.stack([np.asarray(t.pmse, np.float64) for t in ths])
    timings["theory_s"] = time.perf_counter() - t0

    def sgd(data, kind):
        t1 = time.perf_counter()
        say(f"SGD on {kind}: {lrs.size} learning rate(s) x {seeds} seeds, {int(round(ts[-1] * D)):,} steps each")
        tr = _sgd_runs(net, data, keys, jnp.asarray(lrs, dtype), jnp.asarray(ts, jnp.float64), block)
        P = np.asarray(tr.pmse, np.float64)
        H = None if tr.pmse_heldout is None else np.asarray(tr.pmse_heldout, np.float64)
        div = np.asarray(tr.stats["diverged_step"])
        timings[f"{kind}_s"] = time.perf_counter() - t1
        return P, H, div

    P_img, H_img, div_img = sgd(dataset, "images")
    P_gau = H_gau = div_gau = None
    if gaussian:
        P_gau, H_gau, div_gau = sgd(dataset.with_sampling("gaussian"), "gaussian")
    diverged = {"images": div_img.tolist()} | ({} if div_gau is None else {"gaussian": div_gau.tolist()})
    import importlib.metadata

    config = {
        "kind": "universality", "dataset": dataset.config, "D": D, "K": K,
        "activation": net.activation.name, "scale": float(scale), "lrs": lrs.tolist(), "t_max": float(t_max),
        "n_times": len(ts), "seeds": seeds, "seed": seed, "dtype": str(jnp.dtype(dtype)), "block": block,
        "sgd_keys": "fold_in(split(key(seed))[1], i), i < seeds; initial network from split(key(seed))[0]",
        "theory": {k: v for k, v in ths[0].config.items() if k not in ("lr", "init_scale")},
        "theory_successful": [bool(t.stats["successful"]) for t in ths],
        "diverged_step": diverged, "bands": {"images": BAND_IMAGES, "gaussian": BAND_GAUSSIAN, "sems": BAND_SEMS},
        "versions": {"aedyn": importlib.metadata.version("aedyn"), "jax": jax.__version__},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    return UniversalityResult(ts=np.asarray(ts), lrs=lrs, theory=th, images=P_img, gaussian=P_gau,
                              images_heldout=H_img, gaussian_heldout=H_gau,
                              pca=np.asarray(dataset.covariance.pca_errors(K), np.float64), config=config)
