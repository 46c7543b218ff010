"""Exact-resume sampling of an endless, position-addressed stream, split over DDP ranks and workers.

A stream here is a map-style dataset whose item `j` (any j >= 0) is a pure function of (seed, j):
a random text window (`text_lm/data.py`, whose `WindowSampler` this generalises) or a freshly
drawn image (`vision_lm/shapes_stream.py`). Nothing about the stream then needs saving:

- DDP: rank r of R reads positions j = p * R + r for p = p0, p0 + 1, ..., so ranks never share an item.
- DataLoader workers: the sampler runs in the main process and hands each worker whole batches
  of indices, so workers split a rank's batches and never read the same item either.
- Resume: `p0 = batches_done() * batch_size`, with Lightning's own count of trained batches
  (restored from checkpoints), so N steps + checkpoint + N steps reads exactly the items of 2N
  steps. A shuffling sampler would not be exact: its state is not in Lightning checkpoints, and
  Lightning 2.x replays an interrupted epoch from its first batch.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class StreamSampler(DistributedSampler):
    """Hands rank r of R the stream positions j = p * R + r, p = p0 .. p0 + len(self) - 1 (one epoch).

    `p0` is `batches_done() * batch_size` when a `batches_done` callable is given (under Lightning:
    its training batch count), else `epoch * len(self)` from `set_epoch`. A DistributedSampler, so
    Lightning keeps it under DDP instead of wrapping it.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        batch_size: int = 1,
        batches_done: Callable[[], int] | None = None,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=True)
        self.per_rank = len(dataset) // num_replicas
        self.batch_size, self.batches_done = batch_size, batches_done

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        p0 = self.batches_done() * self.batch_size if self.batches_done else self.epoch * self.per_rank
        R = self.num_replicas
        return iter(range(p0 * R + self.rank, (p0 + self.per_rank) * R, R))


class ResumableLoader(DataLoader):
    """A DataLoader that tells Lightning it resumes mid-epoch (its `_Stateful` check), which it does:
    `StreamSampler` restarts from Lightning's own restored batch count, so there is no state to save."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


def lightning_batches_done(trainer) -> Callable[[], int]:
    """Training batches this rank has trained on so far (restored from checkpoints by Lightning)."""
    return lambda: trainer.fit_loop.epoch_loop.batch_progress.total.processed
