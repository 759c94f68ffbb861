"""The ``aedyn`` command line (typer), on small problems (D=100, t_max=5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from aedyn.cli import app

runner = CliRunner()


def _invoke(args):
    result = runner.invoke(app, args, catch_exceptions=False)
    return result


def _read_csv(path):
    lines = path.read_text().splitlines()
    body = [ln for ln in lines if not ln.startswith("#")]
    header = body[0].split(",")
    data = np.array([[float(v) for v in ln.split(",")] for ln in body[1:]])
    return {h: data[:, i] for i, h in enumerate(header)}


def test_help_lists_commands():
    result = _invoke(["--help"])
    assert result.exit_code == 0
    for cmd in ("demo", "simulate", "compare"):
        assert cmd in result.output


def test_demo_small(tmp_path):
    out = tmp_path / "demo"
    result = _invoke(["demo", "--out", str(out), "--D", "100", "--t-max", "5", "--n-times", "12", "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ("demo_pmse.png", "demo_simulation.csv", "demo_simulation.json", "demo_theory.csv", "demo_theory.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert name in result.output  # it says where it wrote them
    assert (out / "demo_pmse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sim = _read_csv(out / "demo_simulation.csv")
    th = _read_csv(out / "demo_theory.csv")
    assert np.all(np.diff(sim["t"]) > 0) and sim["t"][-1] == pytest.approx(5.0)
    np.testing.assert_allclose(sim["t"], th["t"], rtol=1e-6)
    # Initial error is tr(Omega)/(2D) ~ (D*(9+25) + D)/(2D) = 17.5; training reduces it by t = 5.
    assert sim["pmse"][0] == pytest.approx(17.5, rel=0.05)
    assert np.all(np.isfinite(sim["pmse"])) and np.all(np.isfinite(th["pmse"]))
    assert sim["pmse"][-1] < sim["pmse"][0] and th["pmse"][-1] < th["pmse"][0]
    # The theory's pmse never increases (vanilla rule); SGD follows it within 15% at these short times.
    assert np.all(np.diff(th["pmse"]) <= 1e-9)
    assert np.all(np.abs(sim["pmse"] - th["pmse"]) < 0.15 * th["pmse"])
    js = json.loads((out / "demo_simulation.json").read_text())
    assert js["config"]["D"] == 100 and js["config"]["activation"] == "erf" and len(js["pca"]) == 3
    assert "PCA errors" in result.output


def test_simulate_options(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", "--D", "100", "--K", "3", "--strengths", "2,4,6", "--activation", "tanh", "--rule", "truncated",
            "--bias", "0.1", "--lr", "0.2", "--lr-V", "0.4", "--weight-decay", "0.01", "--scale", "0.2", "--t-max", "5",
            "--n-times", "10", "--seed", "3", "--dtype", "float64", "--no-progress", "--out", str(out)]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert (out / "pmse.png").is_file() and (out / "simulation.json").is_file()
    assert not (out / "theory.csv").exists()
    sim = _read_csv(out / "simulation.csv")
    assert len(sim["t"]) == 10 and "Q_22" in sim
    assert np.all(np.isfinite(sim["pmse"])) and np.all(sim["pmse"] > 0)
    cfg = json.loads((out / "simulation.json").read_text())["config"]
    assert cfg["K"] == 3 and cfg["rule"] == "truncated" and cfg["bias"] and cfg["dtype"] == "float64"
    assert cfg["lr"] == {"W": 0.2, "V": 0.4, "b": 0.2} and cfg["weight_decay"] == 0.01
    # Same seed, same numbers.
    out2 = tmp_path / "sim2"
    result = _invoke(args[:-1] + [str(out2)])
    assert result.exit_code == 0
    np.testing.assert_array_equal(_read_csv(out2 / "simulation.csv")["pmse"], sim["pmse"])


@pytest.mark.slow
def test_compare_small(tmp_path):
    out = tmp_path / "cmp"
    result = _invoke(["compare", "--D", "100", "--t-max", "5", "--n-times", "10", "--seeds", "3", "--no-progress",
                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("compare.png", "compare.csv", "compare.json"):
        assert (out / name).is_file()
    tab = _read_csv(out / "compare.csv")
    runs = np.stack([tab[f"sim_seed{i}"] for i in range(3)])
    np.testing.assert_allclose(tab["sim_mean"], runs.mean(0), rtol=1e-9)
    np.testing.assert_allclose(tab["sim_std"], runs.std(0, ddof=1), rtol=0, atol=1e-8 * tab["sim_mean"].max())  # CSV has 10 digits
    assert np.all(tab["sim_std"][-3:] > 0)  # different seeds differ
    assert np.all(np.abs(tab["theory"] - tab["sim_mean"]) < 0.15 * tab["theory"])
    assert "max |theory - mean| / mean" in result.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["simulate", "--K", "200", "--D", "100"], "--K"),
        (["simulate", "--strengths", "3,x"], "--strengths"),
        (["simulate", "--lr", "-1"], "--lr"),
        (["simulate", "--lr-W", "-0.5"], "--lr-W"),
        (["simulate", "--t-max", "0"], "--t-max"),
        (["simulate", "--n-times", "1"], "--n-times"),
        (["simulate", "--activation", "swish"], "--activation"),
        (["simulate", "--rule", "oja"], "--rule"),
        (["simulate", "--rule", "sanger"], "--rule"),
        (["simulate", "--dtype", "float16"], "--dtype"),
        (["simulate", "--weight-decay", "-1"], "--weight-decay"),
        (["compare", "--seeds", "0"], "--seeds"),
        (["compare", "--rule", "sanger", "--tied"], "--rule"),
        (["demo", "--t-max", "-3"], "--t-max"),
    ],
)
def test_bad_options_give_clear_errors(args, needle, tmp_path):
    result = runner.invoke(app, args + ["--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_divergence_is_reported_cleanly(tmp_path):
    result = runner.invoke(app, ["simulate", "--D", "50", "--lr", "1e5", "--scale", "1", "--activation", "linear",
                                 "--t-max", "1", "--n-times", "3", "--no-progress", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "diverged at step" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_no_partial_file():
    """SIGINT at random moments of a CLI run (import, compilation, SGD, theory, writing): exit 130,
    no temporary or truncated file (scripts/sigint_check.py; its 20-run result is in the README)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "sigint_check", Path(__file__).resolve().parents[1] / "scripts" / "sigint_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--runs", "3", "--seed", "1"]) == 0
