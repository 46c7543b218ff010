"""`InstructDataModule`: packed instruction / chat windows (x, y, segments) from jsonl files.

    DATA_DIR/train.jsonl, DATA_DIR/val.jsonl [, DATA_DIR/test.jsonl]   (`text-lm make-task` writes them)

Each line `{"prompt", "response"}` or `{"messages": [...]}` (`text_lm/instruct.py`), encoded with
the chat template of the base model's tokenizer (`data.tokenizer`: its `tokenizer.json`, or the
base checkpoint itself) and packed into windows of `seq_len` tokens. A batch is (x, y, segments),
each (B, T) int64; y is -100 wherever the token is not part of a response.

Training reads the windows as an endless stream, reshuffled each epoch (`ShuffledEpochs`), through
`StreamSampler`, so a run resumed with `--ckpt_path` reads exactly the batches an uninterrupted one
would (tests/text_lm/test_finetune_resume.py).

It satisfies `shared.train.data_contract.TextData`: `bytes_per_token(split)` is the UTF-8 bytes
per trained (response) token of the split, so the text system's `val/bpb` (and `test/bpb`) is
the responses' bits per byte, the fine-tuning task's metric.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.train.stream_sampler import ResumableLoader, StreamSampler, lightning_batches_done
from text_lm.instruct import encode_example, pack, read_conversations, response_bytes


def load_tokenizer(path: str) -> Tokenizer:
    """A tokenizer.json, or the tokenizer stored in a .ckpt."""
    p = Path(path)
    if p.suffix == ".ckpt":
        from shared.train.checkpoint import read_checkpoint

        ckpt = read_checkpoint(p)
        if "tokenizer" not in ckpt:
            raise UserError(f"data.tokenizer {p}: no tokenizer stored in this checkpoint")
        return Tokenizer.from_dict(ckpt["tokenizer"], source=str(p))
    return Tokenizer.load(p)


class ShuffledEpochs(Dataset):
    """Packed windows as an endless stream: position j is window perm_e[j mod N] of epoch e = j // N,
    perm_e a shuffle seeded by (seed, e). A pure function of (seed, j), so `StreamSampler` resumes it
    exactly from Lightning's own batch count; a shuffling DataLoader would replay an interrupted
    epoch from its first batch (`shared/train/stream_sampler.py`)."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], seed: int):
        self.tensors, self.seed = tensors, seed
        self._perm: tuple[int, torch.Tensor] | None = None  # (epoch, its permutation): one kept

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, j: int) -> tuple[torch.Tensor, ...]:
        epoch, i = divmod(j, len(self))
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self), generator=g))
        k = int(self._perm[1][i])
        return tuple(t[k] for t in self.tensors)


class InstructDataModule(L.LightningDataModule):
    """Packed chat-template windows with response-only targets (module docstring)."""

    def __init__(
        self,
        data_dir: str = "data/shakespeare_nextline",
        tokenizer: str = "data/shakespeare_bpe/tokenizer.json",
        seq_len: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 1337,
    ):
        """
        Args:
            data_dir: Folder with train.jsonl and val.jsonl (test.jsonl for `text-lm test`; else val).
            tokenizer: The base model's tokenizer: a tokenizer.json or the base .ckpt.
            seq_len: Tokens per packed window (T); a longer example is cut to T.
            batch_size: Windows per batch on each device.
            num_workers: DataLoader worker processes (0 reads in the training process).
            seed: Order in which examples are packed and windows shuffled.
        """
        super().__init__()
        for name, value, least in (
            ("seq_len", seq_len, 2),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < least:
                raise UserError(f"data.{name} must be at least {least}, got {value}")
        self.data_dir, self.tokenizer_path, self.seq_len = Path(data_dir), tokenizer, seq_len
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._tokenizer: Tokenizer | None = None
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._bytes: dict[str, float] = {}

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, segments) of a split ("train", "val", "test"), each (N, T), encoded once."""
        if name not in self._splits:
            path = self.data_dir / f"{name}.jsonl"
            if name == "test" and not path.is_file():
                path = self.data_dir / "val.jsonl"
            tok = self.tokenizer
            examples = [encode_example(tok, m) for m in read_conversations(path)]
            n_tok, n_bytes = response_bytes(tok, examples)
            if n_tok == 0:
                raise UserError(f"{path}: no response tokens to train or score on")
            self._bytes[name] = n_bytes / n_tok
            self._splits[name] = pack(examples, self.seq_len, tok.pad_id, self.seed)
        return self._splits[name]

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes per response token of `split` (bits per byte = nats / ln 2 / this)."""
        key = "train" if split in ("train", "fit") else split
        self.split(key)
        return self._bytes[key]

    def setup(self, stage: str | None = None) -> None:
        self.split("val" if stage in ("fit", "validate", None) else "test")

    def train_dataloader(self) -> DataLoader:
        ds = ShuffledEpochs(self.split("train"), self.seed)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if len(ds) // world < self.batch_size:
            raise UserError(
                f"{self.data_dir}: train.jsonl packs into {len(ds)} windows of {self.seq_len} tokens, no full "
                f"batch of {self.batch_size} on each of {world} devices: lower data.batch_size"
            )
        done = lightning_batches_done(self.trainer) if self.trainer else None
        sampler = StreamSampler(ds, world, rank, self.batch_size, done)
        return ResumableLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # _loader's note
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def _loader(self, name: str) -> DataLoader:
        """Each loader has its own generator: starting one then draws nothing from torch's global RNG,
        which adapter dropout uses, so validation does not shift the masks of later steps."""
        return DataLoader(
            TensorDataset(*self.split(name)),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )
