"""`Budget`: what a run may spend (optimizer steps, training seconds, tokens) and how much it has spent,
which is what the learning-rate schedule reads (ARCHITECTURE.md section 13).

Which budget drives the schedule:
- `trainer.max_steps` set: the step budget, p = step / max_steps (a `max_time` beside it is only a
  safety net: it stops the run but does not bend the schedule; this keeps step runs reproducible
  value for value);
- otherwise `trainer.max_time` and/or `budget.max_tokens`: p = the larger of seconds / budget
  and tokens / budget, so the decay ends exactly where the run stops;
- otherwise the epochs (Lightning's estimate of the steps they take).

Training time is the time inside `fit`'s training loop minus validation (and minus the sanity
check before it): data loading, forward, backward, optimizer, logging and checkpoint writes count.
The callback replaces Lightning's own `max_time` Timer (our CLI hands it the duration), so the
schedule and the stop read one clock. Seconds and tokens spent are saved in every checkpoint:
a resumed run, even after a kill -9, goes on from the checkpoint's clock.
"""

from __future__ import annotations

import math
import time

from lightning.pytorch.callbacks import Timer

from shared.errors import UserError


class Budget(Timer):
    """Training-time and token budget; the clock of time- and token-budgeted schedules."""

    def __init__(self, max_tokens: int | None = None):
        """
        Args:
            max_tokens: stop after this many training tokens (all ranks, all micro-batches, as the
                system counts them) and let the schedule follow them (when trainer.max_steps is not set).
                The time budget is `trainer.max_time`.
        """
        super().__init__(duration=None, interval="step", verbose=True)
        if max_tokens is not None and max_tokens <= 0:
            raise UserError(f"budget.max_tokens must be positive, got {max_tokens}")
        self.max_tokens = max_tokens
        self.seconds = 0.0  # training seconds spent before the current stretch (restored on resume)
        self.tokens = 0
        self._since: float | None = None  # time.monotonic() when the current stretch began
        self.clock = time.monotonic
        self._trainer = None
        self._read: tuple[int, float] | None = None  # (global step, progress) the schedule last read

    def set_duration(self, max_time) -> None:
        """`trainer.max_time` (DD:HH:MM:SS, a timedelta or a dict) as this callback's time budget."""
        try:
            self._duration = Timer(duration=max_time)._duration if max_time is not None else None
        except Exception as e:  # Lightning's MisconfigurationException: a malformed string
            raise UserError(f"trainer.max_time: {e}") from None

    @property
    def max_seconds(self) -> float | None:
        return self._duration

    # ------------------------------------------------------------------ the clock
    def time_elapsed(self, stage: str = "train") -> float:
        """Training seconds spent (Timer's method, so `_check_time_remaining` stops on our clock)."""
        if stage != "train":
            return super().time_elapsed(stage)
        return self.seconds + (self.clock() - self._since if self._since is not None else 0.0)

    def _start(self) -> None:
        if self._since is None:
            self._since = self.clock()

    def _pause(self) -> None:
        if self._since is not None:
            self.seconds += self.clock() - self._since
            self._since = None

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def on_train_start(self, trainer, pl_module):
        self._start()

    def on_train_end(self, trainer, pl_module):
        self._pause()

    def on_validation_start(self, trainer, pl_module):
        self._pause()

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._start()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.max_tokens is None:
            return
        counts = pl_module.count_batch(batch)
        if "tokens" not in counts:
            raise UserError(
                f"budget.max_tokens: {type(pl_module).__name__} counts {', '.join(counts)}, not tokens"
            )
        self.tokens += counts["tokens"] * trainer.world_size  # before the step: the scheduler sees this batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # the time budget
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            trainer.should_stop = True

    def _check_time_remaining(self, trainer) -> None:
        """Timer's stop check. When the budget drives the schedule, the stop reads the fraction the
        schedule read for the next step (`progress`, once per step) rather than the clock again: a
        budget running out between those two reads would stop the run with its last rate above
        zero, so the decay would not end at the budget."""
        if not self.drives_schedule(trainer):
            return super()._check_time_remaining(trainer)
        if self.progress() >= 1.0:  # rank 0's value on every rank
            trainer.should_stop = True

    # ------------------------------------------------------------------ what the schedule reads
    def drives_schedule(self, trainer) -> bool:
        """True when time or tokens, not steps, set the schedule's length (module docstring)."""
        return trainer.max_steps in (-1, None) and (self._duration is not None or self.max_tokens is not None)

    def progress(self) -> float:
        """The fraction of the budget spent: the larger of the time and the token fraction.

        Read once per optimizer step (every group's rate, and anyone asking later in the step, gets
        the same value) and, under DDP, rank 0's value for all ranks: ranks' clocks differ by
        milliseconds, and different rates would let their weights drift apart."""
        trainer = self._trainer
        step = getattr(trainer, "global_step", None)
        if step is not None and self._read is not None and self._read[0] == step:
            return self._read[1]
        done = 0.0
        if self._duration:
            done = max(done, self.time_elapsed() / self._duration)
        if self.max_tokens:
            done = max(done, self.tokens / self.max_tokens)
        if trainer is not None and trainer.world_size > 1:
            done = float(trainer.strategy.broadcast(done, src=0))
        if step is not None:
            self._read = (step, done)
        return done

    def describe(self) -> str:
        parts = []
        if self._duration is not None:
            parts.append(f"{self._duration:g} s of training time (validation excluded)")
        if self.max_tokens is not None:
            parts.append(f"{self.max_tokens:,} tokens")
        return " or ".join(parts)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"seconds": self.time_elapsed(), "tokens": self.tokens}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.tokens = int(state_dict.get("tokens", 0))
        self._since, self._read = None, None


def schedule_length(trainer) -> int:
    """The optimizer steps a step- or epoch-budgeted run will take (`estimated_stepping_batches`)."""
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise UserError(
            "set trainer.max_steps, trainer.max_time, budget.max_tokens or trainer.max_epochs: "
            "the learning-rate schedule needs a budget"
        )
    return int(total)


def find_budget(trainer) -> Budget | None:
    """The trainer's Budget callback, if it has one (our CLI always adds it)."""
    for cb in getattr(trainer, "callbacks", None) or []:
        if isinstance(cb, Budget):
            return cb
    return None
