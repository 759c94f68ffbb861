"""The notebooks run top to bottom (nbclient, the python3 kernel of this interpreter)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _run(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    return outputs, text


def test_quickstart_notebook_runs():
    outputs, text = _run("quickstart.ipynb")
    assert "largest relative gap" in text
    # One SGD run follows the theory closely at these times (D = 500).
    gap = float(text.split("largest relative gap between one SGD run and the theory:")[1].split()[0])
    assert gap < 0.1
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_sweeps_and_fits_notebook_runs():
    outputs, text = _run("sweeps_and_fits.ipynb")
    assert "all solves ok: True" in text
    gaps = [float(x.split()[0]) for x in text.split("the mean SGD curve and the theory ")[1:]]
    assert len(gaps) == 2 and max(gaps) < 0.05
    eta = float(text.split("fitted eta = ")[1].split()[0])
    scale = float(text.split("initial scale = ")[1].split()[0])
    assert abs(eta / 0.4 - 1) < 0.02 and abs(scale / 0.1 - 1) < 0.1
    assert "converged: True" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
