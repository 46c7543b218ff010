"""TextDataModule: windows, determinism across ranks and workers, exact resume, folder checks."""

import json
import math
import pickle
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from text_lm.data import TextDataModule, WindowSampler
from text_lm.prepare import prepare

PLAYS = Path(__file__).resolve().parents[2] / "data" / "shakespeare"
T, B = 16, 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "bpe"
    inputs = [str(PLAYS / "macbeth_gut.txt"), str(PLAYS / "sonnets_gut.txt")]
    prepare(out, inputs, vocab_size=300, val_files=["sonnets_gut.txt"], progress=False)
    return out


@pytest.fixture
def copy(data_dir, tmp_path) -> Path:
    """A private copy of the prepared folder, for tests that damage it."""
    return Path(shutil.copytree(data_dir, tmp_path / "bpe"))


def tokens(data_dir: Path, split: str) -> np.ndarray:
    return np.fromfile(data_dir / f"{split}.bin", dtype="<u2").astype(np.int64)


def datamodule(data_dir, **kw) -> TextDataModule:
    dm = TextDataModule(str(data_dir), **{"seq_len": T, "batch_size": B, **kw})
    dm.setup("fit")
    return dm


def test_training_batches_are_shifted_windows_of_the_shard(data_dir):
    dm = datamodule(data_dir)
    train = tokens(data_dir, "train")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    ds = dm.train_dataloader().dataset
    for j in range(B):  # one rank: row j of batch 0 is stream item j
        start = ds.start(j)
        assert 0 <= start <= len(train) - T - 1
        assert x[j].tolist() == train[start : start + T].tolist()
        assert y[j].tolist() == train[start + 1 : start + T + 1].tolist()


def test_module_facing_properties(data_dir):
    dm = TextDataModule(str(data_dir), seq_len=T, batch_size=B)  # no setup needed for these
    meta = json.loads((data_dir / "meta.json").read_text())
    assert dm.vocab_size == meta["vocab_size"] == dm.tokenizer.vocab_size == 300
    assert dm.meta == meta and isinstance(dm.tokenizer, Tokenizer)
    assert dm.bytes_per_token("train") == meta["bytes"]["train"] / meta["n_tokens"]["train"]
    assert (
        dm.bytes_per_token("val")
        == dm.bytes_per_token("test")
        == meta["bytes"]["val"] / meta["n_tokens"]["val"]
    )


def test_validation_is_fixed_contiguous_windows(data_dir):
    val = tokens(data_dir, "val")
    full = datamodule(data_dir).val_dataloader()
    assert len(full.dataset) == (len(val) - 1) // T and len(full) == math.ceil(len(full.dataset) / B)
    xs, ys = zip(*full)
    x, y = torch.cat(xs), torch.cat(ys)
    n = len(x) * T
    assert x.flatten().tolist() == val[:n].tolist() and y.flatten().tolist() == val[1 : n + 1].tolist()

    short = datamodule(data_dir, val_batches=2)
    assert len(short.val_dataloader()) == 2 and len(short.test_dataloader()) == len(full)
    assert torch.equal(next(iter(short.val_dataloader()))[0], xs[0])


def test_ranks_and_workers_read_different_windows(data_dir):
    ds = datamodule(data_dir).train_dataloader().dataset
    per_rank = [list(WindowSampler(ds, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == len(ds) // 2
    assert not set(per_rank[0]) & set(per_rank[1])
    starts = [{ds.start(j) for j in idx[:50]} for idx in per_rank]
    assert len(starts[0] & starts[1]) <= 2  # random windows may coincide by chance, rarely

    # Workers split a rank's batches between them; the batches are the same as without workers.
    def first_batches(num_workers):
        sampler = WindowSampler(ds, num_replicas=2, rank=1)
        loader = DataLoader(ds, batch_size=B, sampler=sampler, num_workers=num_workers, drop_last=True)
        it = iter(loader)
        return [next(it)[0] for _ in range(4)]

    assert all(torch.equal(a, b) for a, b in zip(first_batches(0), first_batches(2)))


def test_seed_and_epoch_choose_the_windows(data_dir):
    ds = datamodule(data_dir).train_dataloader().dataset
    other = datamodule(data_dir, seed=7).train_dataloader().dataset
    assert [ds.start(j) for j in range(20)] == [ds.start(j) for j in range(20)]
    assert [ds.start(j) for j in range(20)] != [other.start(j) for j in range(20)]
    sampler = WindowSampler(ds)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert epoch0[0] == 0 and list(sampler)[0] == len(ds) and len(list(sampler)) == len(ds)


def test_dataset_pickles_without_its_memory_map(data_dir):
    ds = datamodule(data_dir).train_dataloader().dataset
    first = ds[0]
    assert ds._tokens is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._tokens is None and all(torch.equal(a, b) for a, b in zip(clone[0], first))


class _Recorder(L.LightningModule):
    """Trains nothing; remembers the first tokens of every window it is given."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0][:, :8].tolist())
        return self.w * batch[0].float().mean()

    def validation_step(self, batch, batch_idx):
        self.log("v", float(self.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(data_dir, root, max_steps, ckpt_path=None, validate_every=None):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = _Recorder()
    dm = TextDataModule(str(data_dir), seq_len=T, batch_size=2, samples_per_epoch=10)  # 5 batches an epoch
    val = dict(val_check_interval=validate_every, check_val_every_n_epoch=None, limit_val_batches=1)
    trainer = L.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=root, save_last=True)],
        **(val if validate_every else dict(limit_val_batches=0)),
    )
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return module.seen


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.parametrize("validate_every", [3, None], ids=["ckpt-at-validation", "ckpt-at-train-end"])
def test_resume_sees_the_same_batches_as_an_uninterrupted_run(data_dir, tmp_path, validate_every):
    """2N steps == N steps + resume + N steps, across an epoch boundary (epochs of 5 batches)."""
    full = _fit(data_dir, tmp_path / "full", 12, validate_every=validate_every)
    first = _fit(data_dir, tmp_path / "split", 6, validate_every=validate_every)
    second = _fit(data_dir, tmp_path / "split", 12, tmp_path / "split" / "last.ckpt", validate_every)
    assert len(first) == 6 and first + second == full
    assert len({tuple(row) for b in full for row in b}) == 2 * len(full)  # epochs read fresh windows


def test_missing_or_incomplete_folder_says_run_prepare(data_dir, copy, tmp_path):
    with pytest.raises(UserError, match=r"not found: run `text-lm prepare --out .*nowhere` first"):
        TextDataModule(str(tmp_path / "nowhere")).setup("fit")
    (copy / "meta.json").unlink()
    with pytest.raises(UserError, match=r"meta.json not found.*text-lm prepare"):
        TextDataModule(str(copy)).setup("fit")


def test_corrupt_meta_is_a_user_error(copy):
    (copy / "meta.json").write_text('{"dtype": "uint16", "vocab_')
    with pytest.raises(UserError, match="meta.json is corrupt"):
        TextDataModule(str(copy)).setup("fit")
    (copy / "meta.json").write_text(json.dumps({"dtype": "float32"}))
    with pytest.raises(UserError, match="missing field"):
        TextDataModule(str(copy)).setup("fit")


def test_truncated_shard_is_a_user_error(copy):
    data = (copy / "train.bin").read_bytes()
    (copy / "train.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"train.bin has \d+ bytes but .*meta.json promises"):
        TextDataModule(str(copy)).setup("fit")


def test_tokenizer_hash_mismatch_names_both_files(copy):
    Tokenizer.train(["some other text entirely"], 270, progress=False).save(copy / "tokenizer.json")
    with pytest.raises(UserError, match=r"tokenizer.json .*is not the tokenizer .*meta.json"):
        TextDataModule(str(copy)).setup("fit")


def test_bad_arguments_are_user_errors(data_dir):
    with pytest.raises(UserError, match="seq_len must be at least 1"):
        TextDataModule(str(data_dir), seq_len=0)
    with pytest.raises(UserError, match="fewer than data.seq_len"):
        TextDataModule(str(data_dir), seq_len=10_000_000).setup("fit")
    with pytest.raises(UserError, match="no full batch"):
        TextDataModule(str(data_dir), batch_size=8, samples_per_epoch=4).train_dataloader()
