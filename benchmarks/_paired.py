"""Paired rounds for the generation benchmarks: each side's median rate and the spread of ours / peer.

`_common.interleaved` gives each side's median over its rounds; a ratio of two medians hides
how much it moves from round to round (the batch-1 decoding goal sat at 1.76x-2.14x between
two runs a minute apart). Here every round times each run once, in an order that alternates
from round to round (so neither side always runs on the caches the other left), and the ratio
ours / peer is taken within each round: the table gives its median and its lowest and highest.
Garbage of the previous run is collected before each call (untimed), so no side pays for
another's. `cpu_time=True` times by the process's CPU time instead of the wall clock, for a
machine shared with other jobs (all sides on one thread then, so the CPU time is the work).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def paired(
    runs: dict[str, Callable[[], float]], rounds: int, warmup: int = 1, cpu_time: bool = False
) -> dict[str, list[float]]:
    """name -> its seconds per call in each round (`warmup` rounds dropped); runs return their units."""
    clock = time.process_time if cpu_time else time.perf_counter
    names = list(runs)
    got: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            t = clock()
            runs[name]()
            if r >= warmup:
                got[name].append(clock() - t)
    return got


def median(seconds: list[float]) -> float:
    return statistics.median(seconds)


def ratio(ours: list[float], peer: list[float]) -> tuple[float, float, float]:
    """Per round peer time / our time (our speed-up): median, lowest, highest."""
    r = [p / o for o, p in zip(ours, peer, strict=True)]
    return statistics.median(r), min(r), max(r)


def ratio_cell(ours: list[float], peer: list[float], goal: float) -> str:
    """'2.41x (2.20-2.63; goal 2x: met)': the median of the per-round ratios and their range."""
    mid, lo, hi = ratio(ours, peer)
    verdict = "met" if mid >= goal else "**missed**"
    return f"{mid:.2f}x ({lo:.2f}-{hi:.2f}; goal {goal:g}x: {verdict})"
