"""One split of image-text records as a Dataset, decoded up front (small data) or lazily (large data),
and the collate function that lays a batch out for its mode.

Cached (small splits, the shapes set): every image is decoded once at setup, in threads (Pillow
decodes without the GIL), resized and kept as one uint8 tensor (N, 3, S, S) filled in place (no
second copy); unreadable files are skipped and counted (`unreadable`, reported once by the DataModule).

Lazy (large splits, issue 15): nothing is decoded at setup; an item opens and decodes its one image
(a file, or one row's bytes of a memory-mapped `datasets` table), so memory holds the records (text
only) and a batch, whatever the number of images. A broken file is met only when read: the next
readable image of the split stands in for it, and the first one each process meets is named in a
warning (the count so far in `unreadable`).

Items: (uint8 (3, S, S) pixels, record index, record, task); the index lets evaluation look the
record up (`ImageTextDataModule.records`).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from shared.errors import UserError
from vision_lm.records import IMAGE_ERRORS, Record, Split, image_tensor, normalize, open_image
from vision_lm.text_batch import TASKS, TextEncoder, row_texts

MAX_SUBSTITUTES = 100
"""Lazy reading gives up (one UserError) after this many unreadable images in a row."""


class ImageTextDataset(Dataset):
    """One split's images, each once per task (VQA only where a record has a question and answer)."""

    def __init__(
        self,
        split: Split,
        image_size: int,
        cache: bool = True,
        image_field: str = "image",
        tasks: tuple[str, ...] = ("caption",),
        progress: bool = True,
    ):
        self.image_size, self.cache, self.image_field = image_size, cache, image_field
        self.source = split.dataset
        self.unreadable = 0
        self.pixels: torch.Tensor | None = None  # (N, 3, S, S) uint8 when cached
        records = split.records
        if cache:
            records = self._decode_all(records, progress)
        self.records: list[Record] = records
        has_qa = np.fromiter((bool(r.question and r.answer) for r in records), bool, len(records))
        rec, task = [], []
        for name in tasks:  # (record, task) pairs as two arrays, tasks interleaved
            idx = np.arange(len(records)) if name != "vqa" else np.flatnonzero(has_qa)
            rec.append(idx)
            task.append(np.full(len(idx), TASKS.index(name), np.int8))
        order = np.argsort(np.concatenate(rec), kind="stable")
        self.item_record = np.concatenate(rec)[order]
        self.item_task = np.concatenate(task)[order]

    def _decode(self, rec: Record) -> torch.Tensor | None:
        try:
            return image_tensor(open_image(rec, self.source, self.image_field), self.image_size)
        except IMAGE_ERRORS:
            return None

    def _decode_all(self, records: list[Record], progress: bool) -> list[Record]:
        n, S = len(records), self.image_size
        with torch.inference_mode(False):  # `test` builds it under inference mode; the threads write outside
            pixels = torch.empty(n, 3, S, S, dtype=torch.uint8)
        ok = np.zeros(n, bool)

        def fill(i: int) -> None:
            x = self._decode(records[i])
            if x is not None:
                pixels[i], ok[i] = x, True

        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            bar = tqdm(total=n, desc="decoding images", disable=not progress or n < 2000)
            for _ in pool.map(fill, range(n)):
                bar.update(1)
            bar.close()
        self.unreadable = int(n - ok.sum())
        if self.unreadable:
            keep = torch.from_numpy(np.flatnonzero(ok))
            pixels = pixels.index_select(0, keep)
        self.pixels = pixels
        return [r for r, good in zip(records, ok) if good]

    def __len__(self) -> int:
        return len(self.item_record)

    def __getitem__(self, j: int):
        i, task = int(self.item_record[j]), TASKS[self.item_task[j]]
        if self.pixels is not None:
            return self.pixels[i], i, self.records[i], task
        for step in range(MAX_SUBSTITUTES):
            k = (i + step) % len(self.records)
            pixels = self._decode(self.records[k])
            if pixels is not None:
                return pixels, k, self.records[k], task
            self.unreadable += 1
            if self.unreadable == 1:
                warnings.warn(
                    f"{self.records[k].image}: unreadable or corrupt image, replaced by the next readable "
                    "one (lazy reading meets broken files as it reads them; warned once per process)",
                    stacklevel=2,
                )
        raise UserError(f"{MAX_SUBSTITUTES} unreadable images in a row from {self.records[i].image}")

    def pairs(self):
        """(record, task) of every item, in item order (to check text lengths without any image)."""
        return ((self.records[int(i)], TASKS[t]) for i, t in zip(self.item_record, self.item_task))


class Collate:
    """Stacks images, normalises them and lays the texts out for the mode."""

    def __init__(self, encoder: TextEncoder, mode: str):
        self.encoder, self.mode = encoder, mode

    def __call__(self, items) -> dict[str, torch.Tensor]:
        pixels, index, recs, tasks = zip(*items)
        batch = {"pixel_values": normalize(torch.stack(pixels)), "index": torch.tensor(index)}
        return {**batch, **self.texts(recs, tasks)}

    def texts(self, recs, tasks) -> dict[str, torch.Tensor]:
        if self.mode == "contrastive":
            return {"input_ids": self.encoder.captions([r.text for r in recs])}
        after = self.encoder.answer_after_caption
        prefixes, suffixes = zip(*(row_texts(r, t, after) for r, t in zip(recs, tasks)))
        out = self.encoder.prefix_suffix_batch(list(prefixes), list(suffixes))
        out["task"] = torch.tensor([TASKS.index(t) for t in tasks])
        return out
