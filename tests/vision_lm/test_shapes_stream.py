"""The endless shapes stream: the folder's train split is its prefix, deterministic per position, held-out
pairs never drawn, disjoint across DDP ranks, the same through DataLoader workers, resumed exactly."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from shared.errors import UserError
from shared.train.stream_sampler import StreamSampler
from vision_lm.data import ImageTextDataModule
from vision_lm.shapes_scene import NOT_IN_TRAINING, scene_from_json
from vision_lm.shapes_stream import ShapesStream
from vision_lm.shapes_style import EXTRA_COLORS, EXTRA_SHAPES, Diversity


def test_folder_train_split_is_the_stream_prefix(shapes):
    """Image k of make-shapes' train folder is scene k of the stream (same seed, size, Diversity())."""
    info = json.loads((shapes / "dataset_info.json").read_text())
    rows = [json.loads(line) for line in (shapes / "train" / "metadata.jsonl").read_text().splitlines()]
    stream = ShapesStream(info["seed"], 64, 10**9, tasks=("caption", "vqa"))
    for k in (0, 1, 47):
        pixels, j, rec, task = stream[2 * k + 1]  # odd positions: the question of scene k
        folder = np.array(Image.open(shapes / "train" / rows[k]["file_name"]).convert("RGB"))
        assert torch.equal(pixels, torch.from_numpy(folder).permute(2, 0, 1)) and j == 2 * k + 1
        assert (rec.text, rec.question, rec.answer, task) == (
            rows[k]["text"],
            rows[k]["question"],
            rows[k]["answer"],
            "vqa",
        )
    far = stream[10**8]  # any position, drawn on demand, the same every time
    assert torch.equal(far[0], stream[10**8][0]) and far[2].text == stream[10**8][2].text


def test_held_out_pairs_never_drawn_and_extras_appear():
    div = Diversity(extra_colors=True, extra_shapes=True)
    stream = ShapesStream(seed=1, image_size=64, samples_per_epoch=600, diversity=div)
    words, pairs = set(), set()
    for k in range(600):
        scene, background, meta = stream.scene(k)
        pairs |= {s.label for s in scene}
        words |= set(" ".join((meta["text"], meta["question"], meta["answer"])).split())
        assert not any(
            h in " ".join((meta["text"], meta["question"], meta["answer"])) for h in NOT_IN_TRAINING
        )
    assert not pairs & NOT_IN_TRAINING
    assert set(EXTRA_COLORS) <= words and set(EXTRA_SHAPES) <= words
    for k in range(
        40
    ):  # every shape, extras included, drawn in its own fill at its centre (a ring on its band)
        pixels, _, _, _ = stream[k]
        _, _, meta = stream.scene(k)
        for s in scene_from_json(meta["scene"]):
            x = s.x + (round(0.65 * s.radius) if s.shape == "ring" else 0)
            assert tuple(pixels[:, s.y, x].tolist()) == s.fill, s


def test_ranks_read_disjoint_positions_and_resume_where_they_stopped():
    ds = ShapesStream(0, 16, samples_per_epoch=24)
    per_rank = [list(StreamSampler(ds, 3, r, batch_size=2)) for r in range(3)]
    assert sorted(sum(per_rank, [])) == list(range(24))  # one epoch: every position once, no rank shares
    done = {"n": 0}
    s = StreamSampler(ds, 3, 1, batch_size=2, batches_done=lambda: done["n"])
    first = list(s)
    done["n"] = 4  # 4 batches of 2 trained: the next epoch continues at this rank's position 8
    assert list(s)[0] == 8 * 3 + 1 and first[0] == 1 and len(first) == 8


class Recorder(L.LightningModule):
    """Trains one weight on the batches' pixel means and remembers which positions it saw."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen += batch["index"].tolist()
        return ((batch["pixel_values"].mean() - self.w) ** 2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(shapes, root, steps, ckpt=None, workers=0) -> list[int]:
    dm = ImageTextDataModule(
        str(shapes), batch_size=4, image_size=16, max_len=24, train_stream=True, num_workers=workers
    )
    model = Recorder()
    trainer = L.Trainer(
        max_steps=steps,
        default_root_dir=root,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    return model.seen


@pytest.mark.slow
def test_resume_reads_exactly_the_positions_of_an_uninterrupted_run(shapes, tmp_path):
    """samples_per_epoch defaults to the folder's 48 train pairs: 12 batches an epoch, so 15 steps
    cross an epoch boundary, and the stream goes on (positions 48..59), never repeating."""
    straight = fit(shapes, tmp_path / "a", 15)
    assert straight == list(range(60))
    fit(shapes, tmp_path / "b", 7)
    ckpt = next((tmp_path / "b").rglob("*.ckpt"))
    resumed = fit(shapes, tmp_path / "b", 15, ckpt=str(ckpt), workers=2)  # and through 2 workers
    assert resumed == straight[28:]


def test_stream_options_are_checked_and_name_the_field(shapes):
    with pytest.raises(
        UserError, match=r"data\.stream_diversity\.hues: unknown option \(known: colour_jitter"
    ):
        ImageTextDataModule(str(shapes), stream_diversity={"hues": True})
    with pytest.raises(UserError, match=r"data\.stream_diversity\.backgrounds must be true or false"):
        ImageTextDataModule(str(shapes), stream_diversity={"backgrounds": "yes"})
    dm = ImageTextDataModule(str(shapes), train_stream=True, stream_diversity={"extra_colors": True})
    dm.setup("fit")
    assert "cyan" in dm.info["train_colors"] and dm.info["train_shapes"] == [
        "circle",
        "square",
        "triangle",
        "diamond",
    ]
