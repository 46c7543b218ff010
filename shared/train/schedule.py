"""The learning-rate schedule: a multiplier of each group's peak learning rate, as a function of
the fraction of the budget done (STYLE.md item 14; nanochat `get_lr_multiplier`, OpenAI
parameter-golf's warmdown from elapsed wall-clock milliseconds).

    progress p = steps done / max_steps            (a step budget: `trainer.max_steps`)
               = training seconds / budget seconds  (a time budget: `trainer.max_time`)
               = tokens seen / budget tokens        (a token budget: `budget.max_tokens`)

Shapes, after a linear warmup over the first `warmup_steps` optimizer steps ((s + 1) / warmup):
- "cosine": r + (1 - r) * (1 + cos(pi * p)) / 2, from the peak to r = `min_lr_ratio` at the end
  (Loshchilov & Hutter 2017, SGDR). Under a step budget p counts from the end of the warmup,
  p = (s - warmup) / (max_steps - warmup), exactly as this project always did.
- "wsd" (warmup-stable-decay, a trapezoid; Hu et al. 2024, MiniCPM; Hägele et al. 2024): the peak
  until p = 1 - `decay_fraction`, then a straight line down to r at p = 1. With r = 0 the rate
  reaches zero exactly at the budget, whatever the budget measures.

Warmup stays in optimizer steps even under a time budget: it exists for the optimizer's moment
estimates, which count steps, not seconds (a slow machine would otherwise warm up over fewer steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SHAPES = ("cosine", "wsd")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Multiplier of the peak learning rate at `step` of a `total_steps` run (cosine after warmup)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return lr_multiplier("cosine", progress, min_lr_ratio)


def lr_multiplier(
    shape: str, progress: float, min_lr_ratio: float = 0.0, decay_fraction: float = 0.2
) -> float:
    """The post-warmup multiplier at fraction `progress` (clamped to [0, 1]) of the budget."""
    p = min(1.0, max(0.0, progress))
    r = min_lr_ratio
    if shape == "cosine":
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p))
    if shape == "wsd":
        if decay_fraction <= 0 or p < 1 - decay_fraction:
            return 1.0
        return r + (1 - r) * (1 - p) / decay_fraction
    raise ValueError(f"unknown schedule {shape!r}; choose one of {', '.join(SHAPES)}")


def multiplier_fn(
    shape: str,
    warmup_steps: int,
    min_lr_ratio: float,
    decay_fraction: float,
    total_steps: int | None = None,
    progress: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """step -> multiplier. A step budget passes `total_steps`; a time or token budget passes
    `progress`, read when the scheduler steps (after each optimizer step, so the next step's rate
    follows the budget spent so far)."""

    def at(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if progress is not None:
            return lr_multiplier(shape, progress(), min_lr_ratio, decay_fraction)
        if shape == "cosine":  # the project's step schedule, kept value for value
            return warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio)
        return lr_multiplier(shape, step / max(1, total_steps), min_lr_ratio, decay_fraction)

    return at


def lambda_scheduler(optimizer: torch.optim.Optimizer, at: Callable[[int], float]) -> dict:
    """What `configure_optimizers` returns for the scheduler: each group's rate = its peak
    (`initial_lr`) * its `lr_scale` * at(step), stepped per optimizer step (not per epoch)."""
    scales = [g.get("lr_scale", 1.0) for g in optimizer.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s, k=k: k * at(s) for k in scales])
    return {"scheduler": sched, "interval": "step", "frequency": 1}
