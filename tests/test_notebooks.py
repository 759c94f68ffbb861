"""The notebooks run top to bottom at SMALL size (nbclient, the python3 kernel of this interpreter)
and show the numbers they claim; each is a jupytext pair (the .py is the reviewable source, the
.ipynb the same cells with outputs stripped, for Colab)."""

import os
import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))


def _run(name, budget=None):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    os.environ["AEDYN_NOTEBOOK_SIZE"] = "small"
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    t0 = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "size: small" in text or "small size" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure"
    return text, wall


def _num(text, before):
    return float(re.search(re.escape(before) + r"\s*([-+0-9.eE]+)", text).group(1))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_pairs_are_in_sync_and_stripped(name):
    jupytext = pytest.importorskip("jupytext")
    ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    py = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert [c.source for c in ipynb.cells] == [c.source for c in py.cells], f"run: jupytext --sync notebooks/{name}.py"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in ipynb.cells if c.cell_type == "code")
    assert "install" in ipynb.cells[1].source.lower() or "pip" in ipynb.cells[1].source


def test_quickstart():
    text, _ = _run("quickstart")
    assert _num(text, "largest relative gap between the mean SGD curve and the theory:") < 0.1
    auto = _num(text, "autodiff")
    fd = _num(text, "finite differences")
    assert abs(auto - fd) <= 1e-4 * abs(fd)


def test_differentiable_theory():
    text, _ = _run("differentiable_theory")
    for k in ("lr", "init_scale"):
        line = text.split(f"d area / d {k}:")[1].splitlines()[0]
        rev, fwd, fd = (float(x) for x in re.findall(r"(-?[0-9.]+(?:e-?[0-9]+)?)(?:,|$)", line))
        assert abs(rev - fd) <= 1e-4 * abs(fd) and abs(fwd - rev) <= 1e-8 * abs(rev)
    assert abs(_num(text, "fitted eta =") / 0.4 - 1) < 0.02
    assert abs(_num(text, "initial scale =") / 0.1 - 1) < 0.1
    assert "converged: True" in text
    assert _num(text, "optimised") < 0.5 * _num(text, "defaults (eta 0.1, scale 0.1)")


def test_big_sweeps():
    text, _ = _run("big_sweeps")
    assert "all solves ok: True" in text
    ratios = [float(x) for x in re.findall(r"departs from the theory by 5% at eta/D = ([0-9.e-]+)", text)]
    assert len(ratios) == 2 and all(1e-4 < r < 0.05 for r in ratios)
    div = [float(x) for x in re.findall(r"first divergence at eta/D = ([0-9.e-]+)", text)]
    assert len(div) == 2 and all(0.2 < d <= 8.0 for d in div)  # divergence at eta of order D


def test_real_data():
    text, _ = _run("real_data")
    assert _num(text, "(band max(5%, 3 s.e.)):") <= 1.0
    assert _num(text, "(band max(3%, 3 s.e.)):") <= 1.0
    assert "authors:" in text and "centred:" in text



def test_phenomena():
    text, _ = _run("phenomena")
    pca2 = float(re.search(r"PCA\(2\) = ([0-9.]+)", text).group(1))
    # tied erf: the theory ends at the analysis' level, far above PCA(2); SGD reaches it too
    tied = re.search(r"tied erf: theory at t = 1e4: ([0-9.]+); predicted level: ([0-9.]+); SGD at t = [0-9.]+: ([0-9.]+)", text)
    theory, predicted, sgd = (float(x) for x in tied.groups())
    assert abs(theory / predicted - 1) < 1e-3 and abs(sgd / predicted - 1) < 0.03
    assert predicted > 5 * pca2
    # untied erf creeps towards PCA(2) from above
    assert 0 < _num(text, "relative gap to PCA(2):") < 0.1
    # relu: one unit explains half a component; K = 2 stays far above PCA(2) with or without an
    # encoder bias (theory and SGD); paired units reach it
    one = re.search(r"half a component predicts ([0-9.]+); theory ([0-9.]+)", text)
    assert abs(float(one.group(2)) / float(one.group(1)) - 1) < 1e-3
    assert _num(text, "relu K = 2: theory at t = 1e4:") > 5 * pca2
    assert _num(text, "relu K = 2, encoder bias: theory at t = 1e4:") > 5 * pca2
    assert float(re.search(r"relu K = 2 SGD at t = [0-9.]+: ([0-9.]+)", text).group(1)) > 5 * pca2
    assert _num(text, "paired units: relative gap to PCA(2):") < 0.01
    # with an output bias as well, K = 2 units go to PCA(2); f(beta) of the one-unit analysis
    assert 0 < _num(text, "relu K = 2, encoder + output bias: theory at t = 300:") / pca2 - 1 < 0.05
    f = re.search(r"f\(beta\) = ([0-9.]+), ([0-9.]+), ([0-9.]+)", text).groups()
    assert abs(float(f[0]) - 0.733) <= 0.002 and float(f[0]) < float(f[1]) < float(f[2]) and abs(float(f[2]) - 0.994) <= 0.002
    # truncated finds the individual components, vanilla only their span
    for rule, check in (("truncated", lambda x: x < 0.05), ("vanilla", lambda x: x > 0.3)):
        m = re.search(rf"{rule}: final pmse .* off-diagonality theory ([0-9.]+), SGD ([0-9.]+)", text)
        assert check(float(m.group(1))) and check(float(m.group(2))), m.group(0)
