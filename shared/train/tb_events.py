"""Reading finished runs back: the newest `version_N` folder and the scalars TensorBoard logged in it.

Used by the reports (`make demo`, `text-lm ladder`) and the benchmarks that score runs.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError


def latest_version(run_dir: Path) -> Path:
    """The `version_N` folder of `run_dir` with the largest N."""
    versions = sorted(run_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not versions:
        raise UserError(f"{run_dir}: no version_* folder (did training run?)")
    return versions[-1]


def read_scalars(version_dir: Path, tag: str) -> list[tuple[int, float, float]]:
    """(step, wall_time, value) of every event of `tag` in a TensorBoard run folder ([] if none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(version_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return []
    return [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)]
