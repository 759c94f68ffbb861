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


def interleaved(fns, rounds: int):
    """Best wall times in seconds of several functions timed in turn, ``rounds`` times each, after
    one untimed (compiling) call of each: (bests, per-round times (rounds, len(fns))).

    Alternating the calls exposes every function to the same drift of this noisy VM, so a ratio
    of two of the bests compares like with like; the per-round ratios show the spread."""
    for fn in fns:
        jax.block_until_ready(fn())
    times = []
    for _ in range(max(1, rounds)):
        row = []
        for fn in fns:
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            row.append(time.perf_counter() - t0)
        times.append(row)
    return [min(col) for col in zip(*times)], times
