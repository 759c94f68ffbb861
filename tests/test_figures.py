"""``aedyn figures`` at quick size: every figure's key number (issue 11)."""

import json

import numpy as np
import pytest

from aedyn._figures import (
    figure_finite_size,
    figure_relu_bias,
    figure_sequential,
    figure_tied,
    figure_truncated,
    figure_universality,
)


@pytest.mark.slow
def test_figure_sequential_quick(tmp_path):
    r = figure_sequential(tmp_path, quick=True)
    for p in r["files"]:
        assert p.exists() and p.stat().st_size > 0
    json.loads((tmp_path / "sequential.json").read_text())
    pca = np.asarray(r["pca"])
    lin = r["linear"]
    # Plateaus at PCA(1) and PCA(2), and the end at PCA(3), within 5% (linear).
    np.testing.assert_allclose(lin["plateaus"], pca[1:3], rtol=0.05)
    assert abs(lin["final_theory"] - pca[3]) / pca[3] < 0.05
    assert abs(lin["final_sgd"] - lin["final_theory"]) / lin["final_theory"] < 0.05
    # Escape order: the leading component (largest eigenvalue) first, linear and erf.
    assert lin["escape_times"][0] < lin["escape_times"][1] < lin["escape_times"][2]
    esc = r["erf"]["escape_times"]
    assert esc[0] < esc[1], esc


@pytest.mark.slow
def test_figure_relu_bias_quick(tmp_path):
    r = figure_relu_bias(tmp_path, quick=True)
    for p in r["files"]:
        assert p.exists() and p.stat().st_size > 0
    pca = np.asarray(r["pca"])
    f = r["finals"]
    level = r["half_component_level"]
    # Encoder + output bias: near PCA(2); without the output bias: above the half-component level.
    assert abs(f["encoder + output bias"]["theory"] - pca[2]) / pca[2] < 0.1
    # (SGD at D = 400, eta = 0.5 sits above the theory late, the finite-size lift: measured 0.555
    # against 0.522 at t = 300; at D = 1000 the acceptance test has them within 5%.)
    assert abs(f["encoder + output bias"]["sgd"] - f["encoder + output bias"]["theory"]) / pca[2] < 0.1
    assert f["paired units (K = 4)"]["theory"] < 1.05 * pca[2]
    for case in ("no bias", "encoder bias (b = 0)"):
        assert f[case]["theory"] >= level * (1 - 1e-6) and f[case]["sgd"] >= level * (1 - 1e-5)
    # f(beta) at three points (docs/theory.md §8) and the Monte-Carlo points on the curve.
    np.testing.assert_allclose([r["f"]["0.0"], r["f"]["2.0"]], [0.733, 0.994], atol=1e-3)
    assert 0.9 < r["f"]["1.0"] < 0.99
    assert abs(r["mc_output_bias"][1] - 0.733) < 0.01


@pytest.mark.slow
def test_figure_truncated_quick(tmp_path):
    r = figure_truncated(tmp_path, quick=True)
    for p in r["files"]:
        assert p.exists() and p.stat().st_size > 0
    pca = np.asarray(r["pca"])
    # Truncated: unit k is the k-th principal component (diagonal overlap matrix); vanilla: a mix
    # (measured at quick size: 1.000 / 0.999 (SGD) against 0.52 / 0.51).
    assert r["truncated"]["diagonality_theory"] > 0.99 and r["truncated"]["diagonality_sgd"] > 0.97
    assert r["vanilla"]["diagonality_theory"] < 0.8 and r["vanilla"]["diagonality_sgd"] < 0.8
    # Both reach PCA(3).
    for rule in ("vanilla", "truncated"):
        assert abs(r[rule]["final_theory"] - pca[3]) / pca[3] < 0.05
        assert abs(r[rule]["final_sgd"] - pca[3]) / pca[3] < 0.08


@pytest.mark.slow
def test_figure_tied_quick(tmp_path):
    r = figure_tied(tmp_path, quick=True)
    for p in r["files"]:
        assert p.exists() and p.stat().st_size > 0
    pca = np.asarray(r["pca"])
    tied, untied = r["tied"], r["untied"]
    # Tied erf ends at the level the analysis predicts (measured 5.9144 vs 5.9141, SGD 5.916), far
    # above PCA(2); untied goes below it towards PCA(2) (its limit, at infinite decoder norm).
    assert abs(tied["final_theory"] - tied["limit"]) / tied["limit"] < 0.01
    assert abs(tied["final_sgd"] - tied["final_theory"]) / tied["final_theory"] < 0.03
    assert tied["limit"] > 2 * pca[2]
    assert untied["final_theory"] < 0.5 * tied["final_theory"] and abs(untied["limit"] - pca[2]) / pca[2] < 0.01


@pytest.mark.slow
def test_figure_universality_quick(tmp_path):
    r = figure_universality(tmp_path, quick=True)
    for p in r["files"]:
        assert p.exists() and p.stat().st_size > 0
    json.loads((tmp_path / "universality.json").read_text())
    # The ODE with the patches' spectrum inside max(5%, 3 s.e.) of SGD on the patches and
    # max(3%, 3 s.e.) of SGD on Gaussian samples, at every time.
    assert r["band_images"] <= 1.0 and r["band_gaussian"] <= 1.0, r


@pytest.mark.slow
def test_figure_finite_size_quick(tmp_path):
    r = figure_finite_size(tmp_path, quick=True)
    for p in r["files"]:
        assert p.exists() and p.stat().st_size > 0
    assert r["D"] == [100, 200]
    # SGD departs from the theory at a learning rate far below D and diverges at one of order D
    # (docs/finite_size.md: eta_depart ~ 1e-3 D, divergence at eta ~ D).
    for dep, div in zip(r["eta_depart_per_D"], r["eta_diverge_per_D"]):
        assert dep is not None and div is not None and dep < div
        assert dep < 0.1 and 0.1 < div <= 8.0, r
