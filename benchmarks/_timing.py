"""The one timing helper of the benchmark scripts (imported as a sibling: run them as
``python benchmarks/<name>.py``)."""

from __future__ import annotations

import math
import time

import jax


def best_of(fn, repeats: int, *, warmup: bool = False):
    """(best wall time in seconds over ``repeats`` calls of ``fn``, the last result).

    Each call waits for the JAX arrays of its result (asynchronous dispatch). ``warmup``: one
    untimed call first (compilation)."""
    if warmup:
        jax.block_until_ready(fn())
    best, out = math.inf, None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best, out
