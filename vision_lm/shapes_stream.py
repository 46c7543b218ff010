"""Training data that never repeats: an endless stream of freshly drawn shapes scenes.

A fixed training folder of 2,000 images seen 30+ times lets a model memorise which colours come
with which shapes; a stream draws a new scene for every sample, with the variations of
`vision_lm/shapes_style.py`, and never a pair of `shapes_scene.NOT_IN_TRAINING` (in no image,
caption, question or answer).

Position j of the stream (any j >= 0) is scene k = j // n_tasks, task `tasks[j % n_tasks]` (for
"multitask": consecutive positions are the caption and the question of one scene). Scene k draws
everything from `random.Random("shapes-v1-<seed>-train-<k>")`, exactly as image k of the folder's
train split, so the stream is a pure function of (seed, position): `make-shapes` writes its first
`n_train` scenes as the train folder (with the same image size and `Diversity()`), DataLoader
workers render in parallel, and `shared/train/stream_sampler.StreamSampler` splits positions over
DDP ranks and resumes exactly from Lightning's batch count.

Items are those of `vision_lm.image_dataset.ImageTextDataset`: (uint8 (3, S, S) pixels, position, record, task).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vision_lm.caption_order import rewrite
from vision_lm.records import Record
from vision_lm.shapes import describe, render
from vision_lm.shapes_scene import Shape
from vision_lm.shapes_style import Diversity

STREAM_SPLIT = "train"
TOKENIZER_SCENES = 5000
"""Scenes whose texts train the tokenizer of a streamed run (every word of the grammar appears)."""


def stream_record(meta: dict, k: int) -> Record:
    return Record(
        image=f"stream:{k}",
        text=meta["text"],
        question=meta["question"],
        answer=meta["answer"],
        label=meta["label"],
        single=len(meta["scene"]) == 1,
        held_out=meta["held_out"],
    )


class ShapesStream(Dataset):
    """Position j -> a freshly rendered scene (module docstring); len = one epoch of positions.
    caption_order "shape_first": its captions' noun phrases shape first (`vision_lm/caption_order.py`)."""

    def __init__(
        self,
        seed: int,
        image_size: int,
        samples_per_epoch: int,
        diversity: Diversity | None = None,
        tasks: tuple[str, ...] = ("caption",),
        caption_order: str = "as_written",
    ):
        self.seed, self.image_size, self.samples_per_epoch = seed, image_size, samples_per_epoch
        self.diversity, self.tasks = diversity or Diversity(), tuple(tasks)
        self.caption_order = caption_order  # `vision_lm/caption_order.py`

    def __len__(self) -> int:
        return self.samples_per_epoch

    def scene(self, k: int):
        """(scene, background, metadata line) of scene k, without drawing it."""
        scene, background, meta = describe(self.seed, STREAM_SPLIT, k, self.image_size, self.diversity)
        if self.caption_order != "as_written":
            text, answer = rewrite(meta["text"], meta["answer"], self.caption_order)
            meta = {**meta, "text": text, "answer": answer}
        return scene, background, meta

    def record(self, j: int) -> Record:
        k = j // len(self.tasks)
        return stream_record(self.scene(k)[2], k)

    def __getitem__(self, j: int):
        j = int(j)
        k, task = divmod(j, len(self.tasks))
        scene, background, meta = self.scene(k)
        img = render(scene, self.image_size, background)
        pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, S, S)
        return pixels, j, stream_record(meta, k), self.tasks[task]

    def one_shape_scenes(self, n: int, keep=None) -> list[tuple[int, Shape]]:
        """(scene index k, its shape) of the first n scenes that hold one shape (one `keep(shape)` accepts);
        the pixels of scene k are `self[k][0]` when the stream has one task. For probes and diagnoses."""
        out, k = [], 0
        while len(out) < n:
            scene = self.scene(k)[0]
            if len(scene) == 1 and (keep is None or keep(scene[0])):
                out.append((k, scene[0]))
            k += 1
        return out

    def texts(self, n_scenes: int = TOKENIZER_SCENES) -> list[str]:
        """Captions, questions and answers of the first `n_scenes` scenes (to train a tokenizer)."""
        out = []
        for k in range(n_scenes):
            meta = self.scene(k)[2]
            out += [meta["text"], meta["question"], meta["answer"]]
        return out


class StreamRecords(Sequence):
    """`records("train")` of a streamed run: record j built on access, never stored."""

    def __init__(self, stream: ShapesStream):
        self.stream = stream

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self.stream.record(i) for i in range(*j.indices(len(self)))]
        if not -len(self) <= j < len(self):
            raise IndexError(j)
        return self.stream.record(j % len(self))
