"""The learning-rate schedule as a function of the budget done (`shared/train/schedule.py`) and the
clock that measures it (`shared/train/budget.py`), with a fake clock: no test here waits."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from shared.errors import UserError
from shared.train.budget import Budget
from shared.train.schedule import lr_multiplier, multiplier_fn, warmup_cosine


def old_warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio):
    """The project's schedule before budgets (commit d92ebdb), the reference the step budget keeps."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def test_the_step_budget_keeps_the_old_cosine_value_for_value():
    at = multiplier_fn("cosine", 50, 0.1, 0.2, total_steps=800)
    for s in range(0, 820, 7):
        assert at(s) == old_warmup_cosine(s, 50, 800, 0.1) == warmup_cosine(s, 50, 800, 0.1)
    assert at(800) == pytest.approx(0.1) and at(425) == pytest.approx(0.55)  # end; half-way: (1 + r) / 2


def test_wsd_is_a_trapezoid_that_reaches_the_floor_at_the_budget():
    f = 0.25
    assert [lr_multiplier("wsd", p, 0.0, f) for p in (0.0, 0.5, 0.75)] == [1.0, 1.0, 1.0]
    assert lr_multiplier("wsd", 0.875, 0.0, f) == pytest.approx(0.5)
    assert lr_multiplier("wsd", 1.0, 0.0, f) == 0.0 and lr_multiplier("wsd", 1.3, 0.1, f) == pytest.approx(
        0.1
    )
    at = multiplier_fn("wsd", 10, 0.0, f, total_steps=100)
    assert at(4) == 0.5 and at(50) == 1.0 and at(90) == pytest.approx(0.4) and at(100) == 0.0
    clock = iter([0.0, 0.9, 1.0])  # a time budget: the multiplier reads the fraction done
    at = multiplier_fn("wsd", 10, 0.0, f, progress=lambda: next(clock))
    assert at(3) == 0.4 and [at(20), at(21), at(22)] == [1.0, pytest.approx(0.4), 0.0]


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fit_trainer(max_steps=-1, sanity=False):
    state = SimpleNamespace(fn="fit")
    return SimpleNamespace(max_steps=max_steps, state=state, sanity_checking=sanity, world_size=1,
                           should_stop=False, strategy=SimpleNamespace(broadcast=lambda x: x))  # fmt: skip


def test_the_clock_counts_training_time_only_and_stops_at_the_budget():
    budget, clock = Budget(), FakeClock()
    budget.clock = clock
    budget.set_duration("00:00:01:40")  # 100 s
    trainer = fit_trainer()
    assert budget.drives_schedule(trainer) and not budget.drives_schedule(fit_trainer(max_steps=800))
    budget.on_validation_start(trainer, None)  # the sanity check, before training: not counted
    clock.now += 30
    budget.on_validation_end(fit_trainer(sanity=True), None)
    budget.on_train_start(trainer, None)
    clock.now += 40
    budget.on_validation_start(trainer, None)
    clock.now += 500  # validation: not training time
    budget.on_validation_end(trainer, None)
    clock.now += 10
    assert budget.time_elapsed() == 50 and budget.progress() == 0.5
    budget.on_train_batch_end(trainer, None, None, None, 0)
    assert not trainer.should_stop
    saved = budget.state_dict()
    clock.now += 50
    budget.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop and budget.progress() == 1.0

    resumed = Budget()  # a new process: the clock goes on from the checkpoint's seconds
    resumed.clock = clock
    resumed.set_duration("00:00:01:40")
    resumed.load_state_dict(saved)
    resumed.on_train_start(trainer, None)
    clock.now += 25
    assert resumed.progress() == 0.75


def test_a_token_budget_counts_every_batch_before_its_step():
    budget = Budget(max_tokens=1000)
    trainer, module = fit_trainer(), SimpleNamespace(count_batch=lambda b: {"tokens": b.numel()})
    assert budget.drives_schedule(trainer)
    for _ in range(3):
        budget.on_train_batch_start(trainer, module, torch.zeros(4, 64), 0)
        budget.on_train_batch_end(trainer, module, None, None, 0)
    assert budget.progress() == 0.768 and not trainer.should_stop
    budget.on_train_batch_start(trainer, module, torch.zeros(4, 64), 0)
    budget.on_train_batch_end(trainer, module, None, None, 0)
    assert trainer.should_stop and Budget(max_tokens=1000).state_dict()["tokens"] == 0
    images = SimpleNamespace(count_batch=lambda b: {"images": 4})
    with pytest.raises(UserError, match="budget.max_tokens: .* counts images, not tokens"):
        budget.on_train_batch_start(trainer, images, None, 0)
    with pytest.raises(UserError, match="trainer.max_time"):
        Budget().set_duration("5 minutes")


def test_the_system_schedule_follows_the_budget_that_ends_the_run():
    """max_steps set: the step schedule (a max_time beside it only stops the run); unset: the budget's
    fraction done drives every group's rate, each at its own peak."""
    from text_lm.config import LlamaConfig
    from text_lm.module import LanguageModelModule

    cfg = LlamaConfig.preset(
        "llama-tiny", vocab_size=64, max_seq_len=16, dim=32, n_layers=1, n_heads=4, n_kv_heads=2
    )
    budget = Budget()
    budget.set_duration("00:00:01:40")
    for max_steps in (10, -1):
        module = LanguageModelModule(
            cfg, schedule="wsd", decay_fraction=0.5, min_lr_ratio=0.0, warmup_steps=0
        )
        module.trainer = SimpleNamespace(
            max_steps=max_steps, estimated_stepping_batches=10, callbacks=[budget]
        )
        module.configure_model()
        sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
        budget.seconds = 75.0  # 75 s of a 100 s budget spent: half-way down the decay
        sched.optimizer.step()  # no gradients: nothing moves
        sched.step()
        budget.seconds = 0.0
        expected = 1.0 if max_steps == 10 else 0.5  # step 1 of 10 is on the plateau
        groups = sched.optimizer.param_groups
        assert len(groups) > 1 and [g["lr"] for g in groups] == [g["initial_lr"] * expected for g in groups]
