"""The finite-size study: the departure estimate, a small run end to end, argument errors."""

import json

import numpy as np
import pytest

from aedyn.studies import finite_size as fs


def test_departure_interpolates_in_log_log():
    etas = np.array([1.0, 10.0, 100.0])
    # gap 0.01 at eta 1, 0.1 at eta 10: 5% at eta = 10^(log10(5)) = 5 exactly in log-log
    assert fs.departure(etas, [0.01, 0.1, 1.0], 0.05) == pytest.approx(5.0, rel=1e-12)
    assert fs.departure(etas, [0.01, 0.02, 0.03], 0.05) is None
    assert fs.departure(etas, [0.2, 0.3, 0.4], 0.05) == 1.0
    assert fs.departure(etas, [0.01, 0.02, np.inf], 0.05) == 100.0  # diverged counts as departed
    assert fs.horizon(0.5, 50.0, 20.0) == 100.0 and fs.horizon(10.0, 50.0, 20.0) == 20.0


def test_small_study_end_to_end(tmp_path):
    rows = fs.run(Ds=(40, 80), etas=[0.2, 3.0, 150.0], seeds=(0, 1), S=5.0, T_min=2.0, n_times=8,
                  out=str(tmp_path), progress=False)
    assert [r["D"] for r in rows] == [40, 80]
    for r in rows:
        # eta = 150 > D diverges; the departure lies below it
        assert r["eta_diverge_any"] == 150.0
        assert r["eta_depart"] is not None and r["eta_depart"] <= 150.0
    res = json.loads((tmp_path / "finite_size.json").read_text())
    g40, g80 = np.array(res["gaps_typical"]["40"][:2]), np.array(res["gaps_typical"]["80"][:2])
    assert res["gaps_typical"]["40"][2] is None  # diverged
    assert g40[0] < g40[1] and g80[0] < g80[1]  # the gap grows with eta
    assert g40[0] < 0.2 and g80[0] < 0.2  # small eta: close to the theory
    md = (tmp_path / "finite_size.md").read_text()
    assert "| 40 |" in md and "| 80 |" in md and (tmp_path / "finite_size.png").stat().st_size > 10_000
    (tmp_path / "finite_size.md").unlink()
    fs.main(["--out", str(tmp_path), "--replot"])
    assert (tmp_path / "finite_size.md").read_text() == md


def test_arguments_are_checked():
    with pytest.raises(SystemExit):
        fs.main(["--Ds", "1,x"])
    with pytest.raises(SystemExit):
        fs.main(["--Ds", "1"])
    with pytest.raises(SystemExit):
        fs.main(["--S", "-1"])
