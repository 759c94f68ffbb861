"""``aedyn universality`` on a small .npy dataset: the files it writes and its option errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from aedyn.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def npy(tmp_path_factory):
    rng = np.random.default_rng(0)
    # 8 x 8 "images" with a few strong directions: D = 64
    basis = rng.standard_normal((3, 64))
    X = rng.standard_normal((900, 3)) * np.array([6.0, 4.0, 3.0]) @ basis + rng.standard_normal((900, 64))
    path = tmp_path_factory.mktemp("data") / "toy.npy"
    np.save(path, X.reshape(900, 8, 8).astype(np.float32))
    return path


def _read_csv(path):
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    head = lines[0].split(",")
    data = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    return {h: data[:, i] for i, h in enumerate(head)}


def test_universality_on_a_file(npy, tmp_path):
    out = tmp_path / "out"
    args = ["universality", "--dataset", str(npy), "--recipe", "centred", "--K", "2", "--lr", "0.5,1",
            "--t-max", "5", "--n-times", "8", "--seeds", "3", "--out", str(out)]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "SGD on images" in r.output and "universality.png" in r.output
    cols = _read_csv(out / "universality.csv")
    for c in ("lr", "t", "theory", "images_mean", "images_sem", "images_heldout_mean", "gaussian_mean",
              "gaussian_sem", "band_images", "band_gaussian"):
        assert c in cols, c
    assert set(np.unique(cols["lr"])) == {0.5, 1.0}
    assert np.all(np.isfinite(cols["theory"])) and np.all(cols["images_sem"] > 0)
    payload = json.loads((out / "universality.json").read_text())
    cfg = payload["config"]
    assert cfg["dataset"]["recipe"] == "centred" and cfg["D"] == 64 and cfg["K"] == 2 and cfg["seeds"] == 3
    assert cfg["dataset"]["N"] == 750 and cfg["dataset"]["heldout"] == 150  # a fixed sixth held out
    assert np.asarray(payload["runs"]["images"]).shape == (2, 3, len(payload["ts"]))
    assert (out / "universality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same seed, same numbers
    r2 = runner.invoke(app, args[:-1] + [str(tmp_path / "again")], catch_exceptions=False)
    assert r2.exit_code == 0
    np.testing.assert_array_equal(_read_csv(tmp_path / "again" / "universality.csv")["images_mean"],
                                  cols["images_mean"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "1"], "--seeds"),
        (["--lr", "0.1,x"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--K", "100"], "--K"),
        (["--t-max", "0.001"], "--t-max"),
        (["--recipe", "zca"], "--recipe"),
    ],
)
def test_universality_option_errors(npy, tmp_path, extra, message):
    r = runner.invoke(app, ["universality", "--dataset", str(npy), "--out", str(tmp_path / "o")] + extra)
    assert r.exit_code != 0
    assert message in r.output


def test_universality_missing_and_corrupt_data(tmp_path):
    r = runner.invoke(app, ["universality", "--dataset", "cifar10", "--data-dir", str(tmp_path / "nope"),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "nope" in r.output and "--data-dir" in r.output
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    r = runner.invoke(app, ["universality", "--dataset", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "bad.npy" in r.output
