"""The documentation site builds with ``mkdocs build --strict`` (no broken references, no docstring
warnings) and its API reference documents every public name of aedyn."""

import importlib
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import aedyn

ROOT = Path(__file__).resolve().parents[1]


def _documented() -> set[str]:
    paths = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        paths |= set(re.findall(r"^::: (aedyn[\w.]*)", page.read_text(), re.M))
        paths |= set(re.findall(r"`(aedyn\.[\w.]+)`", page.read_text()))
    return paths


def _resolve(path: str):
    mod, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError):
        return importlib.import_module(path)


def test_every_public_name_is_in_the_api_reference():
    documented = {p: _resolve(p) for p in _documented()}
    objects = [id(o) for o in documented.values()]
    missing = []
    for name in aedyn.__all__:
        obj = getattr(aedyn, name)
        if isinstance(obj, types.ModuleType):  # a namespace: each of its public names
            for sub in (n for n in dir(obj) if not n.startswith("_")):
                if not isinstance(getattr(obj, sub), types.ModuleType) and id(getattr(obj, sub)) not in objects:
                    missing.append(f"{name}.{sub}")
        elif id(obj) not in objects:
            missing.append(name)
    assert not missing, f"not in docs/api/*.md: {missing}"


@pytest.mark.skipif(shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None,
                    reason="the docs extra is not installed (pip install -e '.[docs]')")
def test_site_builds_strict(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "theory" / "index.html").exists()
