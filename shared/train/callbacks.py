"""Callbacks shared by both tracks' trainers."""

from __future__ import annotations

import time

import lightning as L
import torch


class Throughput(L.Callback):
    """Logs `train/<unit>_per_sec` (all ranks together), measured wall-clock between batches.

    The LightningModule says what a batch holds with `count_batch(batch) -> {unit: n}`,
    e.g. {"tokens": B * T} or {"images": B}. Data loading time is included on purpose:
    it is what a user waits for.
    """

    def __init__(self, window: int = 10):
        self.window = window
        self._t0: float | None = None
        self._counts: dict[str, int] = {}
        self._steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if self._t0 is None:  # the first batch includes start-up costs: start the clock after it
            self._t0 = now
            return
        for unit, n in pl_module.count_batch(batch).items():
            self._counts[unit] = self._counts.get(unit, 0) + n * trainer.world_size
        self._steps += 1
        if self._steps >= self.window:
            dt = now - self._t0
            for unit, n in self._counts.items():
                pl_module.log(f"train/{unit}_per_sec", n / dt, rank_zero_only=True)
            self._t0, self._counts, self._steps = now, {}, 0

    def on_validation_start(self, trainer, pl_module):
        self._t0, self._counts, self._steps = None, {}, 0  # validation time is not training time


class NonFiniteGuard(L.Callback):
    """Stop (or skip the step) when the training loss or the gradients are NaN or infinite.

    The losses of every micro-batch are checked as they are backpropagated, the gradients
    just before the optimizer step (skipped under a fp16 GradScaler, which handles overflow
    itself). Stopping happens before the optimizer step, so no NaN ever reaches the weights
    and the last checkpoint on disk stays the last good one (the command exits 3, naming the
    step). `skip=True` drops the gradients of a bad step instead and carries on;
    `max_skips` consecutive bad steps still stop the run.
    """

    def __init__(self, skip: bool = False, max_skips: int = 5):
        """
        Args:
            skip: skip a step whose loss or gradients are not finite instead of stopping.
            max_skips: with skip, stop anyway after this many bad steps in a row.
        """
        self.skip, self.max_skips, self._bad = skip, max_skips, 0
        self._bad_loss: float | None = None

    def on_before_backward(self, trainer, pl_module, loss):
        if self._bad_loss is None and not torch.isfinite(loss.detach()).all():
            self._bad_loss = loss.detach().float().mean().item()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        problem = None
        if self._bad_loss is not None:
            problem = f"non-finite training loss ({self._bad_loss})"
        elif getattr(trainer.precision_plugin, "scaler", None) is None and not _finite_grads(optimizer):
            problem = "non-finite gradients"
        self._bad_loss = None
        if problem is None:
            self._bad = 0
            return
        self._bad += 1
        step = trainer.global_step
        if self.skip and self._bad <= self.max_skips:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            pl_module.print(f"warning: {problem} at step {step}; step skipped")
            return
        raise FloatingPointError(
            f"{problem} at step {step}; stopped before the weights were touched. The last checkpoint "
            "is intact: lower the learning rate and resume from it, or pass --nonfinite.skip true"
        )


def _finite_grads(optimizer) -> bool:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([n.float() for n in torch._foreach_norm(grads)]).isfinite().all())
