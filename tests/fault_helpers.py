"""Fault injection for the kill-and-resume tests and `benchmarks/fault_injection.py`.

- `LossRecorder`: a callback appending `{"step", "loss", "lr"}` (+ `progress`, the budget fraction
  done, under a time or token budget) per training step to a JSONL file
  (flushed at once, so the lines survive a kill -9). `pause_at_step` makes the run stop
  there (sleeping) so a test can kill it at exactly that moment.
- `SlowCheckpointIO`: our atomic checkpoint writer whose `slow_save`-th save writes half of
  the file, announces it by creating `marker`, then sleeps: a kill then lands mid-write.
- `fit_argv`, `start_fit`, `wait_until`, `kill`, `read_losses`: running a tiny text-lm fit.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from tiny import TINY_TEXT

from shared.train.budget import find_budget
from shared.train.checkpoint_io import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TINY = [
    *TINY_TEXT, "--model.config.n_heads", "4", "--model.config.n_kv_heads", "2", "--model.sample_tokens", "0",
    "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--checkpoint.monitor", "null", "--checkpoint.save_top_k", "0",
]  # fmt: skip


class LossRecorder(L.Callback):
    def __init__(self, path: str, pause_at_step: int = -1):
        self.path, self.pause_at_step = path, pause_at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step - 1  # the optimizer step this batch made
        row = {"step": step, "loss": float(outputs["loss"])}
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]  # the next step's, set by the scheduler
        budget = find_budget(trainer)
        if budget is not None and budget.drives_schedule(trainer):
            row["progress"] = budget.progress()
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if step == self.pause_at_step:
            time.sleep(600)  # the test kills us here


class SlowCheckpointIO(AtomicCheckpointIO):
    def __init__(self, slow_save: int = 1, marker: str = "writing"):
        super().__init__()
        self.slow_save, self.marker, self.saves = slow_save, marker, 0

    def write(self, checkpoint, tmp):
        self.saves += 1
        if self.saves != self.slow_save:
            return super().write(checkpoint, tmp)
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        data = buf.getvalue()
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            Path(self.marker).touch()
            time.sleep(600)  # the test kills us here
            f.write(data[len(data) // 2 :])


def fit_argv(data_dir, root, max_steps: int, every: int, *extra: str, config: str = "llama-tiny.yaml"):
    return ["fit", "-c", str(ROOT / "configs/text" / config), *TINY, "--data.data_dir", str(data_dir),
            "--trainer.default_root_dir", str(root), "--trainer.max_steps", str(max_steps),
            "--checkpoint.every_n_train_steps", str(every), *extra]  # fmt: skip


def recorder_args(losses: Path, pause_at_step: int = -1) -> list[str]:
    return ["--trainer.callbacks+=fault_helpers.LossRecorder", f"--trainer.callbacks.path={losses}",
            f"--trainer.callbacks.pause_at_step={pause_at_step}"]  # fmt: skip


def start_fit(argv: list[str], log: Path) -> subprocess.Popen:
    """`text-lm <argv>` in a child process whose output goes to `log`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "text_lm.cli", *argv], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def wait_until(proc: subprocess.Popen, ready, timeout: float = 120.0, log: Path | None = None) -> None:
    """Poll `ready()` until true; fail if the child ends first or time runs out."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise AssertionError(f"the child ended (rc {proc.returncode}) before the kill point\n{tail}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the kill point")
        time.sleep(0.02)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def read_rows(path: Path) -> list[dict]:
    """The recorder's rows; a line cut by a kill is left out."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # only a line cut by the kill can be partial
            continue
    return rows


def read_losses(path: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_rows(path)]


def steps_seen(path: Path) -> set[int]:
    return {s for s, _ in read_losses(path)}


class PoisonLoss(L.Callback):
    """Turns the activations, hence the loss and gradients, of training step `at_step` into NaN; the
    weights stay finite, as when a bad batch or an overflow strikes."""

    def __init__(self, at_step: int):
        self.at_step, self._hook = at_step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            self._hook = pl_module.model.embed.register_forward_hook(
                lambda mod, args, out: out * float("nan")
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def assert_fails_cleanly(main, argv: list[str], culprit: str, capsys, workspace: Path) -> None:
    """`main(argv)` exits non-zero with one `error:` line on stderr that names `culprit`, no traceback,
    and nothing in `workspace` is written, changed or left half-written. Lightning's informational log
    lines (seed, devices) go to the logging stream, not to the captured stderr."""
    before = snapshot(workspace)
    capsys.readouterr()
    with warnings.catch_warnings(record=True):  # warnings (e.g. "skipped 3 corrupt images") are not errors
        warnings.simplefilter("always")
        try:
            main(argv)
        except SystemExit as e:
            code = e.code
        else:
            code = 0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code not in (0, None), f"exit {code}; stdout {out[-300:]!r}; stderr {err[-300:]!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert culprit in lines[0], f"{culprit!r} not named in {lines[0]!r}"
    assert "Traceback" not in err
    assert snapshot(workspace) == before, "the failed command wrote or changed files"
