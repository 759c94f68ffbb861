"""The ``aedyn`` command line: ``demo``, ``simulate`` and ``compare``.

    aedyn demo [--out DIR]          the standard spiked example, SGD + theory, PNG + CSV + JSON
    aedyn simulate [options]        one SGD run (optionally with the theory) of any configuration
    aedyn compare [options]         SGD over several seeds (mean +- spread) against the theory
    aedyn universality [options]    real data: theory vs SGD on the images vs SGD on Gaussian samples
    aedyn figures [--out DIR]       one figure per phenomenon of the paper, with its data
"""

import json
import math
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ._io import atomic_write

app = typer.Typer(
    name="aedyn",
    help="Learning dynamics of shallow autoencoders: online SGD and its exact ODE theory (JAX).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ActivationName(str, Enum):
    linear = "linear"
    erf = "erf"
    relu = "relu"
    tanh = "tanh"
    sigmoid = "sigmoid"
    softplus = "softplus"
    gelu = "gelu"


class RuleName(str, Enum):
    vanilla = "vanilla"
    truncated = "truncated"
    sanger = "sanger"


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"


class Directions(str, Enum):
    gaussian = "gaussian"
    sinusoidal = "sinusoidal"


# -- shared options ---------------------------------------------------------------------------------

OUT = typer.Option(None, "--out", "-o", help="Output folder (created if needed).")
DIM = typer.Option(500, "--D", "-D", help="Input dimension D.")
UNITS = typer.Option(2, "--K", "-K", help="Number of hidden units K (K <= D).")
STRENGTHS = typer.Option("3,5", "--strengths", help="Comma-separated spike strengths Lambda_m, e.g. 3,5.")
NOISE = typer.Option(1.0, "--noise", help="Bulk noise sigma of the spiked model.")
DIRECTIONS = typer.Option(Directions.gaussian, "--directions", help="Spike directions.")
ACTIVATION = typer.Option(ActivationName.erf, "--activation", "-a", help="Activation g (erf means erf(x/sqrt 2)).")
RULE = typer.Option(RuleName.vanilla, "--rule", help="Learning rule (sanger needs --tied).")
TIED = typer.Option(False, "--tied/--untied", help="Tie the decoder to the encoder (decoder = sqrt(D) W).")
BIAS = typer.Option(None, "--bias", help="Train an encoder bias starting at this value (default: no bias).")
OUTPUT_BIAS = typer.Option(None, "--output-bias", help="Train an output (decoder) bias c, every entry starting at "
                           "this value (default: no output bias).")
LR = typer.Option(0.1, "--lr", help="Learning rate eta for all weights.")
LR_W = typer.Option(None, "--lr-W", help="Encoder learning rate eta_W (default --lr).")
LR_V = typer.Option(None, "--lr-V", help="Decoder learning rate eta_V (default --lr).")
LR_B = typer.Option(None, "--lr-b", help="Bias learning rate eta_b (default --lr).")
LR_C = typer.Option(None, "--lr-c", help="Output-bias learning rate eta_c (default --lr).")
WD = typer.Option(0.0, "--weight-decay", help="Weight decay kappa (per unit of t).")
SCALE = typer.Option(0.1, "--scale", help="Initial weight scale (entries N(0, scale^2)).")
T_MAX = typer.Option(100.0, "--t-max", help="Final time t = steps / D.")
N_TIMES = typer.Option(50, "--n-times", help="Number of log-spaced recording times from 0.01 to t-max.")
SEED = typer.Option(0, "--seed", help="Random seed (covariance, initial weights and SGD samples).")
DTYPE = typer.Option(DType.float32, "--dtype", help="Floating-point type of the simulation.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def _fail(message: str, param: str | None = None):
    raise typer.BadParameter(message, param_hint=param)


def _parse_strengths(text: str) -> list[float]:
    try:
        values = [float(s) for s in text.replace(" ", "").split(",") if s != ""]
    except ValueError:
        _fail(f"expected comma-separated numbers such as 3,5, got {text!r}", "--strengths")
    if not values:
        _fail("give at least one spike strength", "--strengths")
    if any(not math.isfinite(v) or v < 0 for v in values):
        _fail(f"spike strengths must be finite and >= 0, got {text!r}", "--strengths")
    return values


def _check_common(D, K, strengths, lr, lr_W, lr_V, lr_b, weight_decay, scale, t_max, n_times, noise=1.0, lr_c=None,
                  bias=None, output_bias=None):
    if D < 1:
        _fail(f"D must be a positive integer, got {D}", "--D")
    if K < 1:
        _fail(f"K must be a positive integer, got {K}", "--K")
    if K > D:
        _fail(f"K = {K} hidden units exceed the input dimension D = {D}", "--K")
    if len(strengths) > D:
        _fail(f"{len(strengths)} spikes do not fit in D = {D} dimensions", "--strengths")
    for name, v in (("--lr", lr), ("--lr-W", lr_W), ("--lr-V", lr_V), ("--lr-b", lr_b), ("--lr-c", lr_c)):
        if v is not None and (not math.isfinite(v) or v < 0):
            _fail(f"learning rates must be finite and >= 0, got {v}", name)
    for name, v in (("--bias", bias), ("--output-bias", output_bias)):
        if v is not None and not math.isfinite(v):
            _fail(f"the initial bias must be finite, got {v}", name)
    if not math.isfinite(weight_decay) or weight_decay < 0 or weight_decay >= D:
        _fail(f"weight decay must be finite, >= 0 and below D = {D} (each step multiplies the weights by "
              f"1 - kappa / D), got {weight_decay}", "--weight-decay")
    if not math.isfinite(scale) or scale < 0:
        _fail(f"the initial scale must be finite and >= 0, got {scale}", "--scale")
    if not math.isfinite(noise) or noise < 0:
        _fail(f"the noise must be finite and >= 0, got {noise}", "--noise")
    if not math.isfinite(t_max) or t_max <= 0.01:
        _fail(f"t-max must be larger than the first recording time 0.01, got {t_max}", "--t-max")
    if n_times < 2:
        _fail(f"at least 2 recording times are needed, got {n_times}", "--n-times")


def _times(t_max: float, n_times: int, D: int):
    """Log-spaced times from 0.01 to t_max, rounded to whole steps (t = steps / D) and deduplicated,
    so that the simulation and the theory are recorded at exactly the same times."""
    import numpy as np

    import aedyn

    if t_max * D < 1:
        _fail(f"t-max = {t_max:g} is shorter than one SGD step (1/D = {1 / D:.4g})", "--t-max")
    steps = np.unique(np.maximum(np.round(aedyn.log_times(t_max, n_times) * D), 1))
    return steps / D


def _lr(lr, lr_W, lr_V, lr_b, lr_c=None):
    if lr_W is None and lr_V is None and lr_b is None and lr_c is None:
        return lr
    rates = {"W": lr if lr_W is None else lr_W, "V": lr if lr_V is None else lr_V, "b": lr if lr_b is None else lr_b}
    if lr_c is not None:
        rates["c"] = lr_c
    return rates


def _setup(D, K, strengths, noise, directions, activation, tied, bias, scale, seed, dtype, output_bias=None):
    """The covariance and initial network of a run, from the seed (shared by every command)."""
    import jax
    import jax.numpy as jnp

    import aedyn

    if seed < 0:
        _fail(f"the seed must be >= 0, got {seed}", "--seed")
    k_cov, k_net, k_sgd = jax.random.split(jax.random.key(seed), 3)
    cov = aedyn.spiked_covariance(k_cov, D, strengths, noise=noise, directions=directions)
    net = aedyn.init_autoencoder(
        k_net, D, K, activation=activation, scale=scale, tied=tied, bias=bias, output_bias=output_bias,
        dtype=jnp.float32 if dtype == "float32" else jnp.float64,
    )
    return cov, net, k_sgd


def _out_dir(out: Optional[Path], default: str) -> Path:
    folder = Path(default) if out is None else out
    if folder.exists() and not folder.is_dir():
        _fail(f"{folder} exists and is not a folder", "--out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _fail(f"cannot create the folder {folder}: {err.strerror}", "--out")
    if not os.access(folder, os.W_OK):
        _fail(f"the folder {folder} is not writable", "--out")
    return folder


def _plot(path: Path, title: str, pca, K: int, curves=(), bands=()):
    """pmse vs t on log-log axes with the PCA errors of 1..K components as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for ts, mean, lo, hi, label in bands:
        ax.fill_between(ts, lo, hi, color="C0", alpha=0.25, lw=0)
        ax.plot(ts, mean, color="C0", lw=1.6, label=label)
    for i, (ts, ys, label, style) in enumerate(curves):
        ax.plot(ts, ys, style, lw=1.6, label=label, color=f"C{i + 1 if bands else i}")
    pca = np.asarray(pca, np.float64)
    for k in range(1, min(K, len(pca) - 1) + 1):
        ax.axhline(pca[k], color="0.4", ls=":", lw=1.2)
        ax.annotate(f"PCA, {k} comp.", xy=(1.0, pca[k]), xycoords=("axes fraction", "data"),
                    xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t = steps / D")
    ax.set_ylabel("pmse")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _summary(ts, columns: dict[str, "object"], n_rows: int = 7) -> str:
    import numpy as np

    ts = np.asarray(ts)
    targets = np.geomspace(ts[0], ts[-1], n_rows)  # rows spread evenly in log t
    idx = np.unique(np.abs(np.log(ts)[None, :] - np.log(targets)[:, None]).argmin(1))
    names = list(columns)
    head = f"{'t':>10}" + "".join(f"{n:>14}" for n in names)
    lines = [head, "-" * len(head)]
    for i in idx:
        lines.append(f"{ts[i]:>10.4g}" + "".join(f"{float(np.asarray(columns[n])[i]):>14.6g}" for n in names))
    return "\n".join(lines)


def _library_errors(fn):
    """Run a command: the library's errors (bad values, divergence, failed solves, files) become a
    one-line error and exit 1; Ctrl-C exits 130 at once, with nothing half-written (every file is
    written atomically) and without running the interpreter's teardown while XLA threads are busy
    (which could crash)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            import jax

            import aedyn

            # The command line is a program of its own: the theory needs float64 (docs/theory.md §4).
            jax.config.update("jax_enable_x64", True)
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted()
        except (typer.Exit, typer.BadParameter, typer.Abort):
            raise
        except (ValueError, TypeError, OSError, aedyn.DivergenceError, aedyn.SolveError) as err:
            typer.secho(f"Error: {err}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper


def _interrupted():
    """Exit 130 on Ctrl-C (after an atomic write cleaned up its temporary file)."""
    try:
        sys.stderr.write("\nInterrupted.\n")
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(130)


def _run(
    *, D, K, strengths, noise, directions, activation, rule, tied, bias, lr, weight_decay, scale, t_max,
    n_times, seed, dtype, out, theory, progress, prefix, title, output_bias=None,
):
    import numpy as np

    import aedyn

    if theory and rule == "sanger":
        _fail("the theory covers the vanilla and truncated rules; use --no-theory with --rule sanger", "--rule")
    if rule == "sanger" and not tied:
        _fail("Sanger's rule is defined for tied networks; add --tied", "--rule")
    cov, net, key = _setup(D, K, strengths, noise, directions, activation, tied, bias, scale, seed, dtype,
                           output_bias)
    ts = _times(t_max, n_times, D)
    typer.echo(f"Simulating SGD: D={D}, K={K}, strengths={strengths}, {activation}, rule={rule}, "
               f"lr={lr}, t_max={t_max:g} ({int(round(t_max * D)):,} steps)")
    sim = aedyn.simulate(net, cov, key=key, lr=lr, ts=ts, rule=rule, weight_decay=weight_decay, progress=progress)
    written = []
    sim.save_csv(out / f"{prefix}simulation.csv")
    sim.save_json(out / f"{prefix}simulation.json")
    written += [out / f"{prefix}simulation.csv", out / f"{prefix}simulation.json"]
    curves = [(ts, np.asarray(sim.pmse), "SGD simulation", "-")]
    cols = {"sim pmse": sim.pmse}
    if theory:
        typer.echo("Solving the ODE theory from the same initial network ...")
        th = aedyn.theory.solve(net, cov, lr=lr, ts=ts, rule=rule,
                                weight_decay=weight_decay, progress=progress)
        th.save_csv(out / f"{prefix}theory.csv")
        th.save_json(out / f"{prefix}theory.json")
        written += [out / f"{prefix}theory.csv", out / f"{prefix}theory.json"]
        curves.append((np.asarray(th.ts), np.asarray(th.pmse), "ODE theory", "--"))
        cols["theory pmse"] = th.pmse
    png = out / f"{prefix}pmse.png"
    _plot(png, title, sim.pca, K, curves=curves)
    written.insert(0, png)
    pca = np.asarray(sim.pca)
    typer.echo("")
    typer.echo(_summary(sim.ts, cols))
    typer.echo("PCA errors: " + ", ".join(f"{k} comp. {pca[k]:.6g}" for k in range(len(pca))))
    typer.echo("")
    typer.echo("Wrote:")
    for p in written:
        typer.echo(f"  {p}")
    return sim


@app.command()
@_library_errors
def demo(
    out: Optional[Path] = OUT,
    D: int = typer.Option(500, "--D", "-D", help="Input dimension D (the standard example has 500)."),
    t_max: float = typer.Option(200.0, "--t-max", help="Final time (the standard example runs to 200)."),
    n_times: int = typer.Option(60, "--n-times", help="Number of log-spaced recording times."),
    seed: int = SEED,
    theory: bool = typer.Option(True, "--theory/--no-theory", help="Also solve the ODE theory."),
    progress: bool = PROGRESS,
):
    """The standard spiked example (D=500, K=2, strengths 3,5, erf, eta=0.1, init scale 0.1):
    SGD to t=200 and the theory from the same initial network; writes a PNG, CSV and JSON."""
    _check_common(D, 2, [3.0, 5.0], 0.1, None, None, None, 0.0, 0.1, t_max, n_times)
    folder = _out_dir(out, "aedyn-demo")
    _run(
        D=D, K=2, strengths=[3.0, 5.0], noise=1.0, directions="gaussian", activation="erf", rule="vanilla",
        tied=False, bias=None, lr=0.1, weight_decay=0.0, scale=0.1, t_max=t_max, n_times=n_times, seed=seed,
        dtype="float32", out=folder, theory=theory, progress=progress, prefix="demo_",
        title=f"Spiked model D={D}, K=2, strengths (3, 5), erf, $\\eta$=0.1",
    )


@app.command()
@_library_errors
def simulate(
    D: int = DIM,
    K: int = UNITS,
    strengths: str = STRENGTHS,
    noise: float = NOISE,
    directions: Directions = DIRECTIONS,
    activation: ActivationName = ACTIVATION,
    rule: RuleName = RULE,
    tied: bool = TIED,
    bias: Optional[float] = BIAS,
    output_bias: Optional[float] = OUTPUT_BIAS,
    lr: float = LR,
    lr_W: Optional[float] = LR_W,
    lr_V: Optional[float] = LR_V,
    lr_b: Optional[float] = LR_B,
    lr_c: Optional[float] = LR_C,
    weight_decay: float = WD,
    scale: float = SCALE,
    t_max: float = T_MAX,
    n_times: int = N_TIMES,
    seed: int = SEED,
    dtype: DType = DTYPE,
    theory: bool = typer.Option(False, "--theory/--no-theory", help="Also solve the ODE theory."),
    progress: bool = PROGRESS,
    out: Optional[Path] = OUT,
):
    """Simulate online SGD on the spiked model; write pmse.png, simulation.csv and simulation.json."""
    s = _parse_strengths(strengths)
    _check_common(D, K, s, lr, lr_W, lr_V, lr_b, weight_decay, scale, t_max, n_times, noise, lr_c, bias, output_bias)
    folder = _out_dir(out, "aedyn-simulate")
    _run(
        D=D, K=K, strengths=s, noise=noise, directions=directions.value, activation=activation.value,
        rule=rule.value, tied=tied, bias=bias, output_bias=output_bias, lr=_lr(lr, lr_W, lr_V, lr_b, lr_c),
        weight_decay=weight_decay,
        scale=scale, t_max=t_max, n_times=n_times, seed=seed, dtype=dtype.value, out=folder, theory=theory,
        progress=progress, prefix="",
        title=f"D={D}, K={K}, strengths {tuple(s)}, {activation.value}, {rule.value}",
    )


@app.command()
@_library_errors
def compare(
    D: int = DIM,
    K: int = UNITS,
    strengths: str = STRENGTHS,
    noise: float = NOISE,
    directions: Directions = DIRECTIONS,
    activation: ActivationName = ACTIVATION,
    rule: RuleName = RULE,
    tied: bool = TIED,
    bias: Optional[float] = BIAS,
    output_bias: Optional[float] = OUTPUT_BIAS,
    lr: float = LR,
    lr_W: Optional[float] = LR_W,
    lr_V: Optional[float] = LR_V,
    lr_b: Optional[float] = LR_B,
    lr_c: Optional[float] = LR_C,
    weight_decay: float = WD,
    scale: float = SCALE,
    t_max: float = T_MAX,
    n_times: int = N_TIMES,
    seeds: int = typer.Option(5, "--seeds", help="Number of SGD runs (different samples, same initial network)."),
    seed: int = SEED,
    dtype: DType = DTYPE,
    progress: bool = PROGRESS,
    out: Optional[Path] = OUT,
):
    """SGD over several seeds (mean +- standard deviation) and the ODE theory on one figure."""
    import jax
    import numpy as np

    import aedyn

    s = _parse_strengths(strengths)
    _check_common(D, K, s, lr, lr_W, lr_V, lr_b, weight_decay, scale, t_max, n_times, noise, lr_c, bias, output_bias)
    if seeds < 1:
        _fail(f"at least one seed is needed, got {seeds}", "--seeds")
    if rule == RuleName.sanger:
        _fail("the theory covers the vanilla and truncated rules, not sanger", "--rule")
    folder = _out_dir(out, "aedyn-compare")
    cov, net, key = _setup(D, K, s, noise, directions.value, activation.value, tied, bias, scale, seed, dtype.value,
                           output_bias)
    rates = _lr(lr, lr_W, lr_V, lr_b, lr_c)
    ts = _times(t_max, n_times, D)
    runs = []
    for i in range(seeds):
        typer.echo(f"SGD run {i + 1}/{seeds} ({int(round(t_max * D)):,} steps)")
        tr = aedyn.simulate(net, cov, key=jax.random.fold_in(key, i), lr=rates, ts=ts, rule=rule.value,
                            weight_decay=weight_decay, progress=progress)
        runs.append(np.asarray(tr.pmse, np.float64))
    P = np.stack(runs)
    mean = P.mean(0)
    std = P.std(0, ddof=1) if seeds > 1 else np.zeros_like(mean)
    typer.echo("Solving the ODE theory from the same initial network ...")
    th = aedyn.theory.solve(net, cov, lr=rates, ts=ts, rule=rule.value,
                            weight_decay=weight_decay, progress=progress)
    tsim = ts
    theory = np.asarray(th.pmse, np.float64)
    table = {"t": tsim, "sim_mean": mean, "sim_std": std, "sim_sem": std / math.sqrt(seeds), "theory": theory}
    for i, r in enumerate(runs):
        table[f"sim_seed{i}"] = r
    csv = folder / "compare.csv"
    rows = np.stack(list(table.values()), axis=-1)
    atomic_write(csv, "\n".join([",".join(table)] + [",".join(f"{v:.10g}" for v in r) for r in rows]) + "\n")
    pca = np.asarray(tr.pca, np.float64)
    config = dict(tr.config)
    config.update(seeds=seeds, seed=seed, kind="compare", strengths=s, scale=scale)
    js = folder / "compare.json"
    atomic_write(js, json.dumps({"config": config, "theory_config": th.config, "pca": pca.tolist(),
                              "table": {k: v.tolist() for k, v in table.items()}}, indent=1, default=str))
    png = folder / "compare.png"
    _plot(png, f"D={D}, K={K}, strengths {tuple(s)}, {activation.value}, {rule.value}, {seeds} seeds",
          pca, K, curves=[(tsim, theory, "ODE theory", "--")],
          bands=[(tsim, mean, np.maximum(mean - std, mean * 1e-3), mean + std, f"SGD, mean $\\pm$ std ({seeds} seeds)")])
    rel = np.abs(theory - mean) / mean
    typer.echo("")
    typer.echo(_summary(tsim, {"sim mean": mean, "sim std": std, "theory": theory}))
    typer.echo(f"max |theory - mean| / mean = {rel.max():.3g} (at t = {tsim[rel.argmax()]:.4g})")
    typer.echo("PCA errors: " + ", ".join(f"{k} comp. {pca[k]:.6g}" for k in range(len(pca))))
    typer.echo("")
    typer.echo("Wrote:")
    for p in (png, csv, js):
        typer.echo(f"  {p}")


@app.command("finite-size")
@_library_errors
def finite_size(
    quick: bool = typer.Option(False, "--quick", help="Fewer learning rates and seeds, shorter horizon."),
    out: Path = typer.Option(Path("docs"), "--out", help="Folder for finite_size.md and finite_size.png."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder for resumable sweep chunks."),
    Ds: str = typer.Option("250,500,1000,2000", "--Ds", help="Comma-separated input dimensions."),
    S: Optional[float] = typer.Option(None, "--S", help="Horizon in eta * t of each run (default 50, quick 20)."),
    T: Optional[float] = typer.Option(None, "--T", help="Minimum horizon in t of each run (default 20, quick 10)."),
    replot: bool = typer.Option(False, "--replot", help="Only rewrite the table and figure from finite_size.json."),
):
    """The finite-size study: for each D, the learning rate at which SGD first departs from the
    theory by 5% and the one at which it diverges (a figure and a table)."""
    from .studies import finite_size as study

    argv = ["--out", str(out), "--Ds", Ds] + (["--quick"] if quick else [])
    argv += [] if cache is None else ["--cache", str(cache)]
    argv += [] if S is None else ["--S", str(S)]
    argv += [] if T is None else ["--T", str(T)]
    argv += ["--replot"] if replot else []
    study.main(argv)


class RecipeName(str, Enum):
    authors = "authors"
    centred = "centred"


class SamplingName(str, Enum):
    replacement = "replacement"
    one_pass = "one-pass"


@app.command()
@_library_errors
def universality(
    dataset: str = typer.Option("patches", "--dataset", help="patches (embedded natural image patches, D=1024), "
                                "fashion-mnist, mnist, cifar10, or a .npy/.npz file of samples or images."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder of the dataset's files (Fashion-MNIST "
                                            "is found in /usr/share/datasets/fashion-mnist without it)."),
    recipe: RecipeName = typer.Option(RecipeName.authors, "--recipe", help="authors: x/(2 std) - mean with global "
                                      "scalars (the paper's code); centred: per-pixel centring, tr(Omega)/D = 1."),
    K: int = typer.Option(4, "--K", "-K", help="Number of hidden units K."),
    activation: ActivationName = ACTIVATION,
    lr: str = typer.Option("0.1,1", "--lr", help="Comma-separated learning rates, one panel each."),
    t_max: float = T_MAX,
    n_times: int = typer.Option(30, "--n-times", help="Number of log-spaced recording times from 0.01 to t-max."),
    seeds: int = typer.Option(3, "--seeds", help="SGD runs per kind of data and learning rate (>= 2)."),
    scale: float = SCALE,
    seed: int = SEED,
    sampling: SamplingName = typer.Option(SamplingName.replacement, "--sampling", help="How SGD draws the real "
                                          "samples: one per step with replacement, or one pass in a random order."),
    gaussian: bool = typer.Option(True, "--gaussian/--no-gaussian", help="Also run SGD on Gaussian samples of the "
                                  "same second moment (the authors' default)."),
    dtype: DType = DTYPE,
    out: Optional[Path] = OUT,
):
    """Gaussian universality on real data: the ODE with the data's empirical spectrum, SGD on the
    real samples and SGD on Gaussian samples of equal covariance (mean +- s.e. over seeds), and
    the error on held-out real samples; writes universality.png, .csv and .json."""
    import time

    import jax.numpy as jnp

    from . import datasets

    rates = _parse_list(lr, "--lr")
    if any(v <= 0 for v in rates):
        _fail(f"learning rates must be > 0, got {lr!r}", "--lr")
    if K < 1:
        _fail(f"K must be a positive integer, got {K}", "--K")
    if seeds < 2:
        _fail(f"at least 2 seeds are needed for a standard error, got {seeds}", "--seeds")
    if not math.isfinite(t_max) or t_max <= 0.01:
        _fail(f"t-max must be larger than the first recording time 0.01, got {t_max}", "--t-max")
    if n_times < 2:
        _fail(f"at least 2 recording times are needed, got {n_times}", "--n-times")
    if not math.isfinite(scale) or scale < 0:
        _fail(f"the initial scale must be finite and >= 0, got {scale}", "--scale")
    if seed < 0:
        _fail(f"the seed must be >= 0, got {seed}", "--seed")
    folder = _out_dir(out, "aedyn-universality")
    start = time.perf_counter()
    typer.echo(f"Loading {dataset} ({recipe.value} recipe) and its spectrum ...")
    try:
        ds = datasets.load(dataset, folder=data_dir, recipe=recipe.value, sampling=sampling.value)
    except FileNotFoundError as err:
        _fail(str(err), "--data-dir" if data_dir is not None else "--dataset")
    if K > ds.D:
        _fail(f"K = {K} hidden units exceed the input dimension D = {ds.D}", "--K")
    typer.echo(f"  {ds.describe()}")
    res = datasets.universality(
        ds, K=K, activation=activation.value, lr=rates, t_max=t_max, n_times=n_times, seeds=seeds, scale=scale,
        seed=seed, dtype=jnp.float32 if dtype == DType.float32 else jnp.float64, gaussian=gaussian,
        log=lambda msg: typer.echo(msg),
    )
    paths = res.save(folder)
    typer.echo("")
    for i, a in enumerate(res.lrs):
        cols = {"theory": res.theory[i], "SGD images": res.mean_sem("images")[0][i]}
        if res.gaussian is not None:
            cols["SGD Gaussian"] = res.mean_sem("gaussian")[0][i]
        if res.images_heldout is not None:
            cols["held-out"] = res.mean_sem("images_heldout")[0][i]
        typer.echo(f"lr = {a:g}")
        typer.echo(_summary(res.ts, cols))
    typer.echo(res.summary())
    pca = res.pca
    typer.echo("PCA errors: " + ", ".join(f"{k} comp. {pca[k]:.6g}" for k in range(len(pca))))
    typer.echo(f"({time.perf_counter() - start:.0f} s)")
    typer.echo("Wrote:")
    for p in paths:
        typer.echo(f"  {p}")


@app.command()
@_library_errors
def figures(
    out: Path = typer.Option(Path("docs/figures"), "--out", help="Folder for the PNGs and their data (JSON)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes (D, seeds, horizons): minutes, not tens."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated figure names (default: all)."),
):
    """One figure per phenomenon of the paper (SGD and theory on the same axes, PCA levels drawn),
    each with its data beside it: sequential learning; ReLU and the biases; truncated vs vanilla; tied vs untied;
    universality on natural image patches; the finite-size map."""
    from ._figures import FIGURES, make_figures

    names = None
    if only is not None:
        names = [n for n in only.replace(" ", "").split(",") if n]
        bad = [n for n in names if n not in FIGURES]
        if bad or not names:
            _fail(f"unknown figure(s) {bad}; expected some of {', '.join(FIGURES)}", "--only")
    folder = _out_dir(out, "docs/figures")
    res = make_figures(folder, quick=quick, only=names)
    typer.echo("Wrote:")
    for name, r in res.items():
        for p in r["files"]:
            typer.echo(f"  {p}")
    summary = {n: {k: v for k, v in r.items() if k != "files"} for n, r in res.items()}
    typer.echo(json.dumps(summary, indent=1, default=str))


def _parse_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        _fail(f"expected comma-separated numbers such as 0.1,1, got {text!r}", option)
    if not values or any(not math.isfinite(v) for v in values):
        _fail(f"expected comma-separated finite numbers such as 0.1,1, got {text!r}", option)
    return values


def main():  # pragma: no cover - console entry point
    """The ``aedyn`` command (Ctrl-C anywhere exits 130).

    The process ends with ``os._exit`` once the command has returned and its files are written:
    the interpreter's teardown runs while XLA's threads are alive, and a Ctrl-C landing in it
    escaped every handler (measured: 1 of 20 interrupted runs died of SIGINT during teardown)."""
    code = 1
    try:
        try:
            app()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                sys.stderr.write(exit_.code + "\n")
        # Done: a Ctrl-C from here on changes nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        _interrupted()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
