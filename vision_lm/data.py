"""`ImageTextDataModule`: image-text pairs -> batches for SigLIP (pairs) and the captioner (prefix, suffix, loss mask).

Pipeline: records (`vision_lm/records.py`: imagefolder, saved or hub `datasets`) -> images
(RGB, EXIF-upright, bicubic resize to `image_size`) decoded once and kept as uint8 tensors for a
small split, or read lazily per item for a large one (`cache_images`; `vision_lm/image_dataset.py`)
-> per batch: pixels normalised to [-1, 1] (mean = std = 0.5, as SigLIP), texts tokenised by
`text_batch`. Unreadable files are skipped and counted, reported once per split.

The shapes set trains on an endless stream instead (`train_stream`, `vision_lm/shapes_stream.py`):
a fresh scene per sample, deterministic from the folder's seed and the position, split over DDP
ranks and DataLoader workers and resumed exactly (`shared/train/stream_sampler.py`). Its val and
test splits are the folder's fixed images.

Batches (dicts):
- mode "contrastive": pixel_values (B, 3, S, S) float, input_ids (B, max_len), index (B,)
- mode "captioning" / "vqa" / "multitask": pixel_values, input_ids, prefix_len (B,),
  loss_mask (B, max_len), task (B,) (0 caption, 1 vqa: `text_batch.TASKS`), index (B,);
  prefixes "caption en" and "answer en {question}" (see `text_batch`). "multitask" shows each
  image twice per epoch, once per task (once if its record has no question and answer).
`index` is the record's position in its split (the stream position when streaming), so
evaluation can look texts and labels up.

Tokenizer: `tokenizer` names a tokenizer.json; without one, a small byte-level BPE
(`vocab_size`) is trained on the training texts at setup (deterministic, so every DDP rank
trains the same). The training system stores it in each checkpoint and saves it as
`tokenizer.json` in the run folder, so a checkpoint alone rebuilds the whole pipeline.

Zero-shot prompts: `zero_shot_templates` if given; for the shapes set its lone-shape captions;
for any other data the templates its own captions put labels into (`vision_lm/templates.py`).

The systems read it as `shared.train.data_contract.ImageTextData` (the captioner: `CaptionData`). Lightning calls `setup` (splits
and tokenizer) before the system's own `setup`, which `bind`s the model's image size and text
length; splits are decoded only when a loader asks for them, so nothing here waits on the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.train.stream_sampler import ResumableLoader, StreamSampler, lightning_batches_done
from vision_lm import caption_order as caption_orders
from vision_lm.image_dataset import Collate, ImageTextDataset
from vision_lm.records import Record, Split, open_splits
from vision_lm.shapes_scene import color_names, shape_names
from vision_lm.shapes_stream import ShapesStream, StreamRecords
from vision_lm.shapes_style import Diversity
from vision_lm.templates import class_names, dataset_templates
from vision_lm.text_batch import CAPTION_PREFIX, MODE_TASKS, VQA_PREFIX, TextEncoder
from vision_lm.text_lengths import warn_overlong

Mode = Literal["contrastive", "captioning", "vqa", "multitask"]
CACHE_LIMIT_BYTES = 1 << 30
"""`cache_images: null` keeps a split's decoded images in memory up to this size (1 GiB), else reads lazily."""


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
        cache_images: bool | None = None,
        image_field: str = "image",
        text_field: str = "text",
        zero_shot_templates: list[str] | None = None,
        train_stream: bool = False,
        stream_diversity: dict[str, bool] | None = None,
        samples_per_epoch: int | None = None,
        caption_order: str = "as_written",
        answer_after_caption: bool = False,
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
            cache_images: true keeps a split's decoded, resized images in memory (uint8, N * 3 * S * S
                bytes; unreadable files found and skipped at setup); false reads each image when a batch
                needs it (bounded memory for large data); null: cache splits up to 1 GiB decoded.
            image_field: image column of a `datasets` dataset.
            text_field: caption field (metadata.jsonl key or dataset column).
            zero_shot_templates: prompts a class name is put into for zero-shot classification,
                e.g. ["a photo of a {}"] (a class scores its best template). None: the shapes captions
                of a lone shape ("a small {}", "a large {}") for the shapes set; for other data the
                templates its training captions put their labels into (vision_lm/templates.py).
            train_stream: for a shapes folder, train on an endless stream of freshly drawn scenes
                (never a repeat; vision_lm/shapes_stream.py) instead of its train images; other data
                is read as it is.
            stream_diversity: how streamed scenes vary, e.g. {extra_colors: true}: colour_jitter,
                size_jitter, backgrounds (default true), extra_colors, extra_shapes (default false).
            samples_per_epoch: streamed pairs per epoch over all devices (None: as many as the
                folder's train split holds); only the validation schedule and the bar see epochs.
            caption_order: "shape_first" (shapes, the captioner): "a small circle red" (`vision_lm/caption_order.py`).
            answer_after_caption: VQA rows answer after the image's caption, "a small red circle => red"
                (the captioner; `vision_lm/text_batch.py`); readers score the answer alone.
        """
        super().__init__()
        if batch_size <= 0:
            raise UserError(f"data.batch_size must be positive, got {batch_size}")
        if mode not in MODE_TASKS:
            raise UserError(f"data.mode must be one of {', '.join(MODE_TASKS)}, got {mode!r}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise UserError(f"data.samples_per_epoch must be at least 1 or null, got {samples_per_epoch}")
        self.data_dir, self.batch_size, self.num_workers = data_dir, batch_size, num_workers
        self.image_size, self.max_len, self.mode = image_size, max_len, mode
        self.tokenizer_path, self.vocab_size, self.cache_images = tokenizer, vocab_size, cache_images
        self.image_field, self.text_field = image_field, text_field
        self.templates = zero_shot_templates
        self.train_stream, self.samples_per_epoch = train_stream, samples_per_epoch
        self.diversity = Diversity.from_dict(stream_diversity, "data.stream_diversity")
        caption_orders.check_setting(caption_order, mode)
        self.caption_order, self.answer_after_caption = caption_order, answer_after_caption
        self.splits: dict[str, Split] | None = None
        self.info: dict = {}
        self.tokenizer: Tokenizer | None = None
        self.tokenizer_trained = False
        """True when the tokenizer was trained here (and may be replaced by a checkpoint's)."""
        self._datasets: dict[str, Dataset] = {}
        self._templates: list[str] | None = None

    # ------------------------------------------------------------------ setup
    @property
    def streaming(self) -> bool:
        """True when training reads the shapes stream (`train_stream` on a shapes folder)."""
        return self.train_stream and self.info.get("name") == "shapes" and "seed" in self.info

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        self.splits, self.info = open_splits(self.data_dir, self.mode, self.image_field, self.text_field)
        if self.train_stream and not self.streaming:
            rank_zero_info(f"{self.data_dir} is not a shapes set: data.train_stream is ignored")
        caption_orders.reorder_splits(self.splits, self.info, self.caption_order, str(self.data_dir))
        if self.streaming:  # what training shows, for whoever builds texts from words (hard negatives)
            self.info = {
                **self.info,
                "train_colors": color_names(self.diversity),
                "train_shapes": shape_names(self.diversity),
            }
        if not self.streaming and ("train" not in self.splits or not self.splits["train"].records):
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
        if self.streaming:
            texts = self._stream(self.info["image_size"]).texts()
        else:
            texts = [t for r in self.splits["train"].records for t in (r.text, r.question, r.answer) if t]
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
    def _stream(self, image_size: int) -> ShapesStream:
        tasks = MODE_TASKS[self.mode]
        folder = self.info.get("splits", {}).get("train", 0) * len(tasks)
        n = self.samples_per_epoch or folder or 10_000 * len(tasks)  # a folder made with --n-train 0
        return ShapesStream(self.info["seed"], image_size, n, self.diversity, tasks, self.caption_order)

    def dataset(self, split: str) -> Dataset:
        """The split's dataset, built on first use (after `bind`, so the image size is known)."""
        if split not in self._datasets:
            self.setup()
            if self.image_size is None or self.max_len is None:
                raise UserError("data.image_size and data.max_len must be set (or bound to a model)")
            if split == "train" and self.streaming:
                self._datasets[split] = self._stream(self.image_size)
                rank_zero_info(f"training on an endless stream of shapes scenes ({self.diversity.to_dict()})")
                return self._datasets[split]
            if split not in self.splits:
                raise UserError(f"{self.data_dir}: no {split} split")
            records = self.splits[split].records
            cache = self.cache_images
            if cache is None:
                cache = len(records) * 3 * self.image_size**2 <= CACHE_LIMIT_BYTES
            ds = ImageTextDataset(
                self.splits[split], self.image_size, cache, self.image_field, MODE_TASKS[self.mode]
            )
            if ds.unreadable:
                rank_zero_warn(
                    f"{self.data_dir} {split}: skipped {ds.unreadable} unreadable or corrupt images"
                )
            if not len(ds):
                raise UserError(f"{self.data_dir}: the {split} split has no readable images")
            contrastive, after = self.mode == "contrastive", self.answer_after_caption
            warn_overlong(str(self.data_dir), split, ds, self.tokenizer, self.max_len, contrastive, after)
            self._datasets[split] = ds
        return self._datasets[split]

    def records(self, split: str) -> Sequence[Record]:
        ds = self.dataset(split)
        return StreamRecords(ds) if isinstance(ds, ShapesStream) else ds.records

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.dataset(split)
        encoder = TextEncoder(self.tokenizer, self.max_len, self.answer_after_caption)
        collate = Collate(encoder, self.mode)
        common = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
        )
        if isinstance(ds, ShapesStream):
            world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
            done = lightning_batches_done(self.trainer) if self.trainer else None
            if len(ds) // world < self.batch_size:
                raise UserError(
                    f"data.samples_per_epoch={len(ds)} gives no full batch of {self.batch_size} on each "
                    f"of {world} devices: raise it or lower data.batch_size"
                )
            sampler = StreamSampler(ds, world, rank, self.batch_size, done)
            return ResumableLoader(ds, sampler=sampler, drop_last=True, **common)
        if train and len(ds) < self.batch_size:
            raise UserError(
                f"the train split has {len(ds)} pairs, fewer than data.batch_size={self.batch_size}"
            )
        return DataLoader(
            ds,
            shuffle=train,
            drop_last=train,  # equal batches on every rank: the loss gathers them
            **common,
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
        """Class names to classify among (`templates.class_names`)."""
        self.setup()
        return class_names(self.info, self.splits.values())

    @property
    def zero_shot_templates(self) -> list[str]:
        if self.templates:
            return list(self.templates)
        self.setup()
        if self._templates is None:
            train = self.splits.get("train")
            self._templates = dataset_templates(self.info, train.records if train else [])
        return self._templates
