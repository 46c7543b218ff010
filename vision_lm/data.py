"""`ImageTextDataModule`: image-text pairs -> batches for SigLIP (pairs) and the captioner (prefix, suffix, loss mask).

Pipeline: records (`vision_lm/records.py`: imagefolder, saved or hub `datasets`) ->
decode every image once (RGB, bicubic resize to `image_size`; unreadable files skipped
and counted) -> uint8 tensors kept in memory (`cache_images`) -> per batch: pixels
normalised to [-1, 1] (mean = std = 0.5, as SigLIP), texts tokenised by `text_batch`.

Batches (dicts):
- mode "contrastive": pixel_values (B, 3, S, S) float, input_ids (B, max_len), index (B,)
- mode "captioning" / "vqa" / "multitask": pixel_values, input_ids, prefix_len (B,),
  loss_mask (B, max_len), task (B,) (0 caption, 1 vqa: `text_batch.TASKS`), index (B,);
  prefixes "caption en" and "answer en {question}" (see `text_batch`). "multitask" shows each
  image twice per epoch, once per task (once if its record has no question and answer).
`index` is the record's position in its split, so evaluation can look texts and labels up.

Tokenizer: `tokenizer` names a tokenizer.json; without one, a small byte-level BPE
(`vocab_size`) is trained on the training texts at setup (deterministic, so every DDP rank
trains the same). The training system stores it in each checkpoint and saves it as
`tokenizer.json` in the run folder, so a checkpoint alone rebuilds the whole pipeline.

The systems read it as `shared.train.data_contract.ImageTextData`. Lightning calls `setup` (splits
and tokenizer) before the system's own `setup`, which `bind`s the model's image size and text
length; splits are decoded only when a loader asks for them, so nothing here waits on the model.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from vision_lm.records import IMAGE_ERRORS, Record, Split, image_tensor, normalize, open_image, open_splits
from vision_lm.shapes_scene import zero_shot_prompts
from vision_lm.text_batch import CAPTION_PREFIX, TASKS, VQA_PREFIX, TextEncoder

Mode = Literal["contrastive", "captioning", "vqa", "multitask"]
MODE_TASKS = {"contrastive": ("caption",), "captioning": ("caption",), "vqa": ("vqa",), "multitask": TASKS}


class ImageTextDataset(Dataset):
    """One split's decodable images, each once per task: item -> (uint8 (3, S, S) pixels, record index,
    record, task)."""

    def __init__(
        self,
        split: Split,
        image_size: int,
        cache: bool = True,
        image_field: str = "image",
        tasks: tuple[str, ...] = ("caption",),
    ):
        self.image_size, self.cache, self.image_field = image_size, cache, image_field
        self.source = split.dataset
        n = len(split.records)
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
            decoded = list(
                tqdm(pool.map(self._decode, split.records), total=n, desc="decoding images", disable=n < 2000)
            )
        keep = [i for i, x in enumerate(decoded) if x is not None]
        self.unreadable = n - len(keep)
        self.records: list[Record] = [split.records[i] for i in keep]
        self.pixels = torch.stack([decoded[i] for i in keep]) if cache and keep else None  # (N, 3, S, S)
        self.items = [  # (record index, task), tasks interleaved; VQA only where there is a question and answer
            (k, task)
            for k, rec in enumerate(self.records)
            for task in tasks
            if task != "vqa" or (rec.question and rec.answer)
        ]

    def _decode(self, rec: Record) -> torch.Tensor | None:
        try:
            return image_tensor(open_image(rec, self.source, self.image_field), self.image_size)
        except IMAGE_ERRORS:
            return None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int):
        i, task = self.items[j]
        pixels = self.pixels[i] if self.pixels is not None else self._decode(self.records[i])
        return pixels, i, self.records[i], task


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
        vqa = [t == "vqa" for t in tasks]
        prefixes = [
            VQA_PREFIX.format(question=r.question) if q else CAPTION_PREFIX for r, q in zip(recs, vqa)
        ]
        suffixes = [r.answer if q else r.text for r, q in zip(recs, vqa)]
        out = self.encoder.prefix_suffix_batch(prefixes, suffixes)
        out["task"] = torch.tensor([TASKS.index(t) for t in tasks])
        return out


class ImageTextDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/shapes",
        batch_size: int = 64,
        num_workers: int = 0,
        image_size: int | None = None,
        max_len: int | None = None,
        tokenizer: str | None = None,
        vocab_size: int = 512,
        mode: Mode = "contrastive",
        cache_images: bool = True,
        image_field: str = "image",
        text_field: str = "text",
        zero_shot_templates: list[str] | None = None,
    ):
        """
        Args:
            data_dir: an imagefolder (DIR/{train,val,test}/metadata.jsonl + images), a datasets
                DatasetDict saved with save_to_disk, or a hub dataset name (online).
            batch_size: pairs per batch and device (the sigmoid loss also sees the other devices' texts).
            num_workers: DataLoader worker processes (0: load in the training process).
            image_size: image side in pixels (None: the model's vision.image_size).
            max_len: text length in tokens (None: the model's text.max_len).
            tokenizer: a tokenizer.json to use; None trains one on the training texts.
            vocab_size: size of the tokenizer trained when `tokenizer` is None (fewer if the
                texts run out of merges: the shapes captions use about 330).
            mode: "contrastive" (SigLIP); "captioning", "vqa" or "multitask" (both: each image once
                per task) for the captioner.
            cache_images: keep the decoded, resized images in memory (uint8, N * 3 * S * S bytes);
                false decodes them again in each batch (every image is still checked once at setup).
            image_field: image column of a `datasets` dataset.
            text_field: caption field (metadata.jsonl key or dataset column).
            zero_shot_templates: prompts a class name is put into for zero-shot classification,
                e.g. ["a photo of a {}"], averaged over templates (None: the shapes captions of a lone
                shape, "a small {}" and "a large {}", for the shapes set; else "{}").
        """
        super().__init__()
        if batch_size <= 0:
            raise UserError(f"data.batch_size must be positive, got {batch_size}")
        if mode not in MODE_TASKS:
            raise UserError(f"data.mode must be one of {', '.join(MODE_TASKS)}, got {mode!r}")
        self.data_dir, self.batch_size, self.num_workers = data_dir, batch_size, num_workers
        self.image_size, self.max_len, self.mode = image_size, max_len, mode
        self.tokenizer_path, self.vocab_size, self.cache_images = tokenizer, vocab_size, cache_images
        self.image_field, self.text_field = image_field, text_field
        self.templates = zero_shot_templates
        self.splits: dict[str, Split] | None = None
        self.info: dict = {}
        self.tokenizer: Tokenizer | None = None
        self.tokenizer_trained = False
        """True when the tokenizer was trained here (and may be replaced by a checkpoint's)."""
        self._datasets: dict[str, ImageTextDataset] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.splits, self.info = open_splits(self.data_dir, self.mode, self.image_field, self.text_field)
        if "train" not in self.splits or not self.splits["train"].records:
            raise UserError(
                f"{self.data_dir}: no usable training pairs (a train split with images and texts)"
            )
        for name, split in self.splits.items():
            if split.skipped:
                what = ", ".join(f"{n} {reason}" for reason, n in sorted(split.skipped.items()))
                rank_zero_warn(
                    f"{self.data_dir} {name}: skipped {sum(split.skipped.values())} lines ({what})"
                )
        if self.tokenizer_path:
            self.set_tokenizer(Tokenizer.load(self.tokenizer_path))
        else:
            self.set_tokenizer(self._train_tokenizer(), trained=True)

    def _train_tokenizer(self) -> Tokenizer:
        recs = self.splits["train"].records
        texts = [t for r in recs for t in (r.text, r.question, r.answer) if t]
        with warnings.catch_warnings():  # a small caption language runs out of merges: expected
            warnings.filterwarnings("ignore", message=".*only supports.*merges.*")
            tok = Tokenizer.train([CAPTION_PREFIX, VQA_PREFIX, *texts], self.vocab_size, progress=False)
        rank_zero_info(f"trained a {tok.vocab_size}-token tokenizer on {len(texts)} training texts")
        return tok

    def set_tokenizer(self, tok: Tokenizer, trained: bool = False) -> None:
        """Use `tok` from now on (a checkpoint's tokenizer replaces one trained here)."""
        needed = ("<|eos|>", "<|pad|>") + (("<|bos|>", "<|sep|>") if self.mode != "contrastive" else ())
        for name in needed:
            tok.token_id(name)  # UserError naming a missing special token
        self.tokenizer, self.tokenizer_trained = tok, trained

    def bind(self, image_size: int, max_len: int) -> None:
        """Take the model's image size and text length where not set; a conflicting setting is an error."""
        for name, model_value in (("image_size", image_size), ("max_len", max_len)):
            own = getattr(self, name)
            if own is None:
                setattr(self, name, model_value)
            elif own != model_value:
                raise UserError(f"data.{name}={own} differs from the model's {model_value}; leave it unset")

    # ------------------------------------------------------------------ data
    def dataset(self, split: str) -> ImageTextDataset:
        """The decoded split, built on first use (after `bind`, so the image size is known)."""
        if split not in self._datasets:
            self.setup()
            if split not in self.splits:
                raise UserError(f"{self.data_dir}: no {split} split")
            if self.image_size is None or self.max_len is None:
                raise UserError("data.image_size and data.max_len must be set (or bound to a model)")
            ds = ImageTextDataset(
                self.splits[split],
                self.image_size,
                self.cache_images,
                self.image_field,
                MODE_TASKS[self.mode],
            )
            if ds.unreadable:
                rank_zero_warn(
                    f"{self.data_dir} {split}: skipped {ds.unreadable} unreadable or corrupt images"
                )
            if not len(ds):
                raise UserError(f"{self.data_dir}: the {split} split has no readable images")
            check = Collate(TextEncoder(self.tokenizer, self.max_len), self.mode)
            check.texts(*zip(*[(ds.records[i], t) for i, t in ds.items]))  # warn about texts that are cut
            if check.encoder.truncated:
                n, m = check.encoder.truncated, self.max_len
                rank_zero_warn(
                    f"{self.data_dir} {split}: {n} texts are longer than max_len={m} tokens and are cut"
                )
            self._datasets[split] = ds
        return self._datasets[split]

    def records(self, split: str) -> list[Record]:
        return self.dataset(split).records

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.dataset(split)
        if train and len(ds) < self.batch_size:
            raise UserError(
                f"the train split has {len(ds)} pairs, fewer than data.batch_size={self.batch_size}"
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train,  # equal batches on every rank: the loss gathers them
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=Collate(TextEncoder(self.tokenizer, self.max_len), self.mode),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # ------------------------------------------------------------------ zero-shot
    @property
    def zero_shot_classes(self) -> list[str]:
        """Class names to classify among: dataset_info.json's "classes" (held-out ones included), else
        every label in the data."""
        self.setup()
        if self.info.get("classes"):
            return list(self.info["classes"])
        return sorted({r.label for s in self.splits.values() for r in s.records if r.label})

    @property
    def zero_shot_templates(self) -> list[str]:
        if self.templates:
            return list(self.templates)
        self.setup()
        return zero_shot_prompts("{}") if self.info.get("name") == "shapes" else ["{}"]
