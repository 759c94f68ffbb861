#!/usr/bin/env bash
# Quick start for aedyn on a machine with only python3 (>= 3.11) and pip.
#
#   scripts/quickstart.sh demo [aedyn demo options]   # set up .venv, run the standard example
#   scripts/quickstart.sh test [pytest options]       # set up .venv with test and docs extras, run the whole suite
#                                                     # (2 worker processes; the 25 slowest tests listed)
#
# Creates a virtual environment in .venv (override with AEDYN_VENV, the interpreter with PYTHON),
# installs the package into it in editable mode (pip install -e ., with [test] for the tests), and
# skips the install on later runs while pyproject.toml is unchanged.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
VENV="${AEDYN_VENV:-.venv}"

usage() {
    echo "usage: $0 demo|test [extra arguments]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
cmd="$1"
shift

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "error: $PY not found; install Python >= 3.11 or set PYTHON=/path/to/python3" >&2
    exit 1
fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "error: aedyn needs Python >= 3.11, $PY is $("$PY" -V 2>&1)" >&2
    exit 1
}

make_venv() {
    if [ -x "$VENV/bin/python" ]; then
        return
    fi
    echo ">> creating virtual environment $VENV"
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        # Debian/Ubuntu without python3-venv: fall back to virtualenv from pip.
        rm -rf "$VENV"
        echo ">> python3 -m venv unavailable; using virtualenv"
        "$PY" -m pip install --user --quiet virtualenv
        "$PY" -m virtualenv --quiet "$VENV"
    fi
}

install() {  # install [extras]: pip install -e .[extras], unless already done for this pyproject.toml
    local spec="." stamp="$VENV/.aedyn-installed-${1:-base}"
    [ -n "${1:-}" ] && spec=".[$1]"
    local sum
    sum="$(cksum pyproject.toml | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
        return
    fi
    echo ">> pip install -e '$spec' (first run: a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$spec"
    echo "$sum" >"$stamp"
}

case "$cmd" in
    demo)
        make_venv
        install ""
        exec "$VENV/bin/aedyn" demo "$@"
        ;;
    test)
        make_venv
        install "test,docs"
        # Two worker processes (pytest-xdist), one test module each at a time: the suite is CPU-bound
        # and CI has 2 cores; each worker peaks at ~5.5 GB. Longest modules first (tests/conftest.py).
        # Pass "-n 0" to run in one process.
        exec "$VENV/bin/python" -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests "$@"
        ;;
    *)
        usage
        ;;
esac
