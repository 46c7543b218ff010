"""Which tags a run logged to TensorBoard: the one reader the CLI tests share.

Values are read with `shared.train.tb_events.read_scalars` (the reports' reader); the vision tests also
check the logged images, which that reader leaves out, so the tag names come from here.
"""

from __future__ import annotations

from pathlib import Path


def logged_tags(folder: Path) -> set[str]:
    """Scalar and image tags of every event file under `folder` (a `version_N` run folder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: set[str] = set()
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        found |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return found
