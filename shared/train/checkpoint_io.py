"""Crash-safe checkpoint files for every `fit`: write beside the target, fsync, then rename.

Why not Lightning's default (`TorchCheckpointIO`, 2.6): it writes through an fsspec
transaction whose temporary file lives in the system temp folder, so when that is another
file system (tmpfs, a container layer) the final "rename" is a copy, and a kill during the
copy leaves a truncated `last.ckpt`, the very file `--ckpt_path last` reaches for; nothing is
fsynced, and a killed save leaves its temporary file behind in /tmp.

`AtomicCheckpointIO` writes `.<name>.<random>.tmp` in the checkpoint's own folder, fsyncs it,
`os.replace`s it onto the target (atomic on POSIX and Windows) and fsyncs the folder so the
rename itself is durable. A kill at any moment leaves the previous checkpoint intact, plus a
stray temporary file that the next save of the same name deletes (its name never ends in
`.ckpt`, so Lightning never mistakes it for a checkpoint).

`LastAndBest` is Lightning's `ModelCheckpoint` with `last.ckpt` always the newest state. Lightning
2.6 writes `last.ckpt` only at a step where it also writes a top-k file, so once the monitored loss
stops improving `last.ckpt` stays at the best step (a captioner whose val loss rose over its last
2,000 of 6,000 steps kept a step-4000 `last.ckpt`, and `--ckpt_path last` would have resumed 2,000
steps back), and a run ending between validations (`max_steps` off the validation grid) never writes
its final steps at all.

Loading turns every failure into a `UserError` naming the file (missing, truncated, not a
checkpoint, or refused by `torch.load(weights_only=True)`, which is the default here: our
systems keep their state as tensors and plain data, so a checkpoint cannot run code).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from shared.io import atomic_path
from shared.train.checkpoint import load_checked


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with crash-safe saves and one-line errors on bad files (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a save that was killed
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        with atomic_path(path) as tmp:  # fsyncs the file, then os.replace
            self.write(checkpoint, tmp)
        _fsync_dir(path.parent)

    def write(self, checkpoint: dict[str, Any], tmp: Path) -> None:
        """Serialise `checkpoint` into the temporary file (a hook: tests slow it down to kill mid-write)."""
        torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checked(path, map_location, True if weights_only is None else weights_only)


class LastAndBest(ModelCheckpoint):
    """`ModelCheckpoint` whose `last.ckpt` is written at every checkpoint event and at the end of
    training, whether or not the monitored metric improved (module docstring); the top-k files
    are Lightning's own."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer) -> None:
        # skips when this step is saved already (the step's top-k save wrote last.ckpt too),
        # while sanity checking and outside fit, as Lightning's own saves do
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; Windows cannot open folders and needs no such step)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def newest_run(root: str | os.PathLike, name: str) -> tuple[int, Path] | None:
    """`--ckpt_path last`: (version, newest last checkpoint) of the newest `root/name/version_N`, or None.

    Only the newest run folder counts: if it holds no last checkpoint (killed before its first
    save), the run before it is another run, not something to resume. `last-v1.ckpt` and the
    like (Lightning's names when `last.ckpt` was taken) compete by modification time.
    """
    runs = [
        (int(d.name[len("version_") :]), d)
        for d in Path(root, name).glob("version_*")
        if d.is_dir() and d.name[len("version_") :].isdigit()
    ]
    if not runs:
        return None
    version, folder = max(runs)
    lasts = [p for p in (folder / "checkpoints").glob("last*.ckpt") if re.fullmatch(r"last(-v\d+)?", p.stem)]
    return (version, max(lasts, key=lambda p: p.stat().st_mtime)) if lasts else None
