"""`TextDataModule`: (input, target) token windows from a `text-lm prepare` folder.

Shapes: B batch, T = `seq_len`. A batch is `(x, y)`, both (B, T) int64, where `y` is `x`
shifted left by one: `y[:, t]` is the token that follows `x[:, t]`, the next-token target.
Both come from one window of T + 1 consecutive tokens of the shard, which is a stream of
documents separated by `<|eos|>` (windows may cross a separator; the model learns that a
new document starts after it, as in GPT-2 training).

Training windows are random, yet reproducible and resumable. Stream item `j` is the window
starting at `splitmix64(mix(seed) + j) mod (n - T)`: a hash, not a stateful generator, so
the window depends on (seed, j) alone. Rank r of R reads j = p * R + r for its positions
p = 0, 1, 2, ..., so DDP ranks and DataLoader workers (which split a rank's batches) never
read the same item. Each epoch continues the stream where the batches trained so far left
it, which is also what makes resuming exact: `shuffle=True` would not be (a RandomSampler's
state is not in Lightning checkpoints, and Lightning 2.x replays an interrupted epoch from
its first batch), whereas Lightning does restore its count of trained batches, so N steps +
checkpoint + N steps sees the same batches as 2N steps.
Windows are drawn with replacement (they may overlap), as in nanoGPT; an epoch is just
`samples_per_epoch` windows, by default as many as fit end to end in the training shard.

Validation and test read the held-out split in fixed, contiguous, non-overlapping windows
from its start (the last partial window is left out), so losses compare across runs.

A split written as several numbered shards (`text_lm/shards.py`) is read as the one stream
of its shards in listed order (`TokenStream`): positions, and so every guarantee above, are
those of the concatenation; a window may cross from one shard into the next.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.train.stream_sampler import ResumableLoader, StreamSampler
from text_lm.shards import TokenStream, load_prepared

_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """SplitMix64 (Steele, Lea & Flood 2014): consecutive inputs give independent-looking 64-bit outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _Windows(Dataset):
    """Windows of T + 1 tokens of one split's stream. Its memory maps open lazily in each process
    and are never pickled, so DataLoader workers (spawned or forked) each open their own."""

    def __init__(self, data_dir: str, split: str, meta: dict, seq_len: int):
        self.data_dir, self.split, self.meta, self.seq_len = data_dir, split, meta, seq_len
        self.n_tokens = meta["n_tokens"][split]
        self._tokens: TokenStream | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None}

    def window(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tokens is None:
            self._tokens = TokenStream(self.data_dir, self.split, self.meta)
        w = torch.from_numpy(self._tokens.read(start, self.seq_len + 1).astype(np.int64))
        return w[:-1], w[1:]  # (T,), (T,)


class RandomWindows(_Windows):
    """Item j (any j >= 0) is the window at `splitmix64(mix(seed) + j) mod (n - T)`; len = one epoch."""

    def __init__(
        self, data_dir: str, split: str, meta: dict, seq_len: int, seed: int, samples_per_epoch: int
    ):
        super().__init__(data_dir, split, meta, seq_len)
        self.key, self.samples_per_epoch = splitmix64(seed & _MASK64), samples_per_epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def start(self, j: int) -> int:
        return splitmix64((self.key + j) & _MASK64) % (self.n_tokens - self.seq_len)

    def __getitem__(self, j: int):
        return self.window(self.start(int(j)))


class ContiguousWindows(_Windows):
    """Window k starts at k * T: non-overlapping, in order; at most `limit` of them."""

    def __init__(self, data_dir: str, split: str, meta: dict, seq_len: int, limit: int | None = None):
        super().__init__(data_dir, split, meta, seq_len)
        n = (self.n_tokens - 1) // seq_len
        self.n_windows = n if limit is None else min(n, limit)

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, k: int):
        if not 0 <= k < self.n_windows:
            raise IndexError(k)
        return self.window(int(k) * self.seq_len)


WindowSampler = StreamSampler
"""Training windows are a position-addressed stream: the shared exact-resume sampler reads them."""


class TextDataModule(L.LightningDataModule):
    """(x, y) next-token batches of `seq_len` tokens from a `text-lm prepare` folder (see the module doc).

    It satisfies `shared.train.data_contract.TextData`, what the text system reads: `tokenizer`,
    `vocab_size`, `seq_len` and `bytes_per_token(split)` (bits per byte = nats / ln 2 / bytes_per_token).
    """

    def __init__(
        self,
        data_dir: str = "data/shakespeare_bpe",
        seq_len: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        val_batches: int | None = None,
        seed: int = 1337,
        samples_per_epoch: int | None = None,
    ):
        """
        Args:
            data_dir: Folder written by `text-lm prepare`: tokenizer.json, train.bin, val.bin, meta.json.
            seq_len: Tokens per training example (the context length T); windows hold T + 1 tokens.
            batch_size: Windows per batch on each device.
            num_workers: DataLoader worker processes (0 reads in the training process).
            val_batches: Validate on the first this many batches of held-out windows (None: all of them).
            seed: Picks the random training windows; the same seed gives the same batches.
            samples_per_epoch: Training windows per epoch over all devices (None: train tokens // seq_len).
        """
        super().__init__()
        for name, value, least in (
            ("seq_len", seq_len, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < least:
                raise UserError(f"data.{name} must be at least {least}, got {value}")
        for name, value in (("val_batches", val_batches), ("samples_per_epoch", samples_per_epoch)):
            if value is not None and value < 1:
                raise UserError(f"data.{name} must be at least 1 or null, got {value}")
        self.data_dir, self.seq_len, self.batch_size = str(data_dir), seq_len, batch_size
        self.num_workers, self.val_batches = num_workers, val_batches
        self.seed, self.samples_per_epoch = seed, samples_per_epoch
        self._meta: dict | None = None
        self._tokenizer: Tokenizer | None = None

    # ---------------------------------------------------------------- what the LightningModule reads
    def _load(self) -> None:
        if self._meta is None:
            self._meta, self._tokenizer = load_prepared(self.data_dir)

    @property
    def meta(self) -> dict:
        self._load()
        return self._meta

    @property
    def tokenizer(self) -> Tokenizer:
        self._load()
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes of text per token of `split` ("train", or "val"/"test" for the held-out split)."""
        key = "train" if split in ("train", "fit") else "val"
        return self.meta["bytes"][key] / self.meta["n_tokens"][key]

    # ---------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        n = self.meta["n_tokens"]
        for split in ("train", "val"):
            if n[split] < self.seq_len + 1:
                raise UserError(
                    f"{self.data_dir}: the {split} split holds {n[split]} tokens, fewer than data.seq_len + 1 = "
                    f"{self.seq_len + 1}: lower data.seq_len or prepare more text"
                )

    def train_dataloader(self) -> DataLoader:
        n_samples = self.samples_per_epoch or self.meta["n_tokens"]["train"] // self.seq_len
        ds = RandomWindows(self.data_dir, "train", self.meta, self.seq_len, self.seed, n_samples)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if n_samples // world < self.batch_size:
            raise UserError(
                f"data.samples_per_epoch={n_samples} gives no full batch of {self.batch_size} on each of "
                f"{world} devices: raise it or lower data.batch_size"
            )
        sampler = WindowSampler(
            ds, world, rank, self.batch_size, self._batches_done if self.trainer else None
        )
        return self._loader(ds, sampler=sampler, drop_last=True, loader_cls=ResumableLoader)

    def val_dataloader(self) -> DataLoader:
        limit = None if self.val_batches is None else self.val_batches * self.batch_size
        return self._loader(ContiguousWindows(self.data_dir, "val", self.meta, self.seq_len, limit))

    def test_dataloader(self) -> DataLoader:
        """The whole held-out split (`val_batches` only shortens validation during training)."""
        return self._loader(ContiguousWindows(self.data_dir, "val", self.meta, self.seq_len))

    def _loader(self, ds: Dataset, loader_cls: type[DataLoader] = DataLoader, **kw) -> DataLoader:
        return loader_cls(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kw,
        )

    def _batches_done(self) -> int:
        """Training batches this rank has trained on so far, restored from checkpoints by Lightning.

        The sampler reads it when an epoch's iteration starts, so windows follow from the number
        of batches trained alone, whatever Lightning's epoch numbering does on a restart.
        """
        return self.trainer.fit_loop.epoch_loop.batch_progress.total.processed
