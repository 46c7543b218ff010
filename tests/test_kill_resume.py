"""Kill -9 a real `text-lm fit`, resume with `--ckpt_path last`: the loss curve goes on exactly;
a time-budgeted run goes on with the training clock of its checkpoint, on the same schedule.

Each killed run is a child process stopped at a chosen moment by `tests/fault_helpers.py`
(after a given training step, or half-way through writing a checkpoint); the resumed run
must log, for every step it trains, the very loss of an uninterrupted run with the same seed.
"""

from pathlib import Path

import pytest
import torch
from fault_helpers import (
    fit_argv,
    kill,
    read_losses,
    read_rows,
    recorder_args,
    start_fit,
    steps_seen,
    wait_until,
)

from shared.train.checkpoint_io import AtomicCheckpointIO
from text_lm.cli import main as text_lm

pytestmark = pytest.mark.slow  # real fits killed with SIGKILL and resumed

STEPS, EVERY = 9, 3  # checkpoints after steps 2, 5 and 8 (global_step 3, 6, 9)


@pytest.fixture(scope="module")
def straight(shakespeare_bpe, tmp_path_factory) -> dict[int, float]:
    """The uninterrupted reference run: step -> loss."""
    root = tmp_path_factory.mktemp("straight")
    text_lm(fit_argv(shakespeare_bpe, root, STEPS, EVERY, *recorder_args(root / "losses.jsonl")))
    losses = read_losses(root / "losses.jsonl")
    assert [s for s, _ in losses] == list(range(STEPS))
    return dict(losses)


def last_ckpt(root: Path, version: int = 0) -> Path:
    return root / "llama-tiny" / f"version_{version}" / "checkpoints" / "last.ckpt"


def test_kill_after_a_step_then_resume_last_matches_exactly(shakespeare_bpe, straight, tmp_path):
    losses, log = tmp_path / "losses.jsonl", tmp_path / "child.log"
    argv = fit_argv(shakespeare_bpe, tmp_path, STEPS, EVERY)
    child = start_fit([*argv, *recorder_args(losses, pause_at_step=4)], log)
    wait_until(child, lambda: 4 in steps_seen(losses), log=log)
    kill(child)
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 3

    text_lm([*argv, *recorder_args(losses), "--ckpt_path", "last"])
    rows = read_losses(losses)
    assert [s for s, _ in rows] == [0, 1, 2, 3, 4] + [3, 4, 5, 6, 7, 8]  # steps 3-4 are trained again
    assert all(loss == straight[s] for s, loss in rows)
    assert not (tmp_path / "llama-tiny" / "version_1").exists()  # the resumed run logs into its own folder
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == STEPS


def test_kill_during_a_checkpoint_write_leaves_last_ckpt_loadable(
    shakespeare_bpe, straight, tmp_path, capsys
):
    losses, log, marker = tmp_path / "losses.jsonl", tmp_path / "child.log", tmp_path / "writing"
    argv = fit_argv(shakespeare_bpe, tmp_path, STEPS, EVERY)
    slow = ["--trainer.plugins=fault_helpers.SlowCheckpointIO", "--trainer.plugins.slow_save=2",
            f"--trainer.plugins.marker={marker}"]  # fmt: skip
    child = start_fit([*argv, *recorder_args(losses), *slow], log)
    wait_until(child, marker.exists, log=log)  # half of the step-6 checkpoint is on disk
    kill(child)

    folder = last_ckpt(tmp_path).parent
    (half,) = folder.glob(".last.ckpt.*.tmp")
    assert AtomicCheckpointIO().load_checkpoint(last_ckpt(tmp_path))["global_step"] == 3
    with pytest.raises(SystemExit) as e:  # the half-written file, given by hand, is one clear line
        text_lm([*argv, "--ckpt_path", str(half)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith(f"error: {half}") and "\n" not in err

    text_lm([*argv, *recorder_args(losses), "--ckpt_path", "last"])
    rows = read_losses(losses)
    assert [s for s, _ in rows] == list(range(6)) + list(range(3, STEPS))
    assert all(loss == straight[s] for s, loss in rows)
    assert not list(folder.glob(".*.tmp"))  # the next save of last.ckpt removed the stray half


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(shakespeare_bpe, tmp_path, capsys):
    poison = ["--trainer.callbacks+=fault_helpers.PoisonLoss", "--trainer.callbacks.at_step=4"]
    with pytest.raises(SystemExit) as e:
        text_lm(fit_argv(shakespeare_bpe, tmp_path, STEPS, EVERY, *poison))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 3 and "\n" not in err and "non-finite training loss (nan) at step 4" in err
    ckpt = torch.load(last_ckpt(tmp_path), weights_only=True)
    assert ckpt["global_step"] == 3 and all(t.isfinite().all() for t in ckpt["state_dict"].values())


def test_nan_loss_with_skip_drops_the_step_and_trains_on(shakespeare_bpe, tmp_path, capsys):
    poison = ["--trainer.callbacks+=fault_helpers.PoisonLoss", "--trainer.callbacks.at_step=4"]
    text_lm(fit_argv(shakespeare_bpe, tmp_path, 6, EVERY, *poison, "--nonfinite.skip", "true"))
    assert "non-finite training loss (nan) at step 4; step skipped" in capsys.readouterr().out
    ckpt = torch.load(last_ckpt(tmp_path), weights_only=True)
    assert ckpt["global_step"] == 6 and all(t.isfinite().all() for t in ckpt["state_dict"].values())


def test_kill_a_time_budgeted_run_then_resume_on_the_same_clock_and_schedule(shakespeare_bpe, tmp_path):
    """Training seconds are in the checkpoint: the resumed run's schedule starts where the checkpoint's
    clock stood (not at zero), and the decay reaches zero when the budget is spent, where the run stops."""
    losses, log, seconds, peak = tmp_path / "losses.jsonl", tmp_path / "child.log", 8, 0.003
    timed = ["--trainer.max_time", f"00:00:00:0{seconds}", "--model.schedule", "wsd", "--model.decay_fraction",
             "0.5", "--model.min_lr_ratio", "0", "--model.warmup_steps", "2"]  # fmt: skip
    argv = fit_argv(shakespeare_bpe, tmp_path, -1, EVERY, *timed)
    child = start_fit(
        [*argv, *recorder_args(losses, pause_at_step=3)], log
    )  # just after the step-3 checkpoint
    wait_until(child, lambda: 3 in steps_seen(losses), log=log)
    kill(child)
    ckpt = torch.load(last_ckpt(tmp_path), weights_only=True)
    spent = ckpt["callbacks"]["Budget"]["seconds"]
    assert ckpt["global_step"] == 3 and 0 < spent < seconds

    text_lm([*argv, *recorder_args(losses), "--ckpt_path", "last"])
    rows = read_rows(losses)
    resumed = rows[4:]
    assert [r["step"] for r in rows[:4]] == [0, 1, 2, 3] and resumed[0]["step"] == 3
    assert resumed[0]["progress"] >= spent / seconds  # the clock went on from the checkpoint's
    # The rate is the schedule's at the budget fraction done (wsd, decaying over the last half): the
    # fraction is read once per step, so the recorder sees the very value the scheduler used.
    for r in resumed:
        assert r["lr"] == pytest.approx(
            peak * min(1.0, 2 * (1 - min(r["progress"], 1.0))), rel=1e-9, abs=1e-12
        )
    assert resumed[-1]["progress"] >= 1 and resumed[-1]["lr"] == 0.0  # stopped at the budget, decay done
