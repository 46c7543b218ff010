"""What a training system reads from its DataModule, as typed Protocols (PEP 544), checked once.

A system (`shared/train/system.py`) names its contract (`System.data_contract`) and reads the
trainer's DataModule through `System.data`, which checks it here: a DataModule that lacks a
member the system reads is one `UserError` naming the members, at the first read, instead of an
`AttributeError` deep in a validation loop (or, as `hasattr` probing did, a metric that silently
goes missing). Any class with these members satisfies a contract; none needs to inherit from it.

- `TextData`: the text system (`text_lm/module.py`) over `text_lm.data.TextDataModule`.
- `ImageTextData`: both vision systems over `vision_lm.data.ImageTextDataModule`; the captioner reads
  `CaptionData`, which adds the order its captions are trained in.
- `TrainableTokenizerData`: a DataModule that may train its own tokenizer. Its system then saves
  the tokenizer in the run folder and adopts a checkpoint's tokenizer on resume (`System`).

The check is static (`inspect.getattr_static`): it never runs a property, so checking a DataModule
does not load its data. (`typing.runtime_checkable` would, with Python 3.11's `hasattr`.)
"""

from __future__ import annotations

import inspect
from typing import Protocol

from shared.errors import UserError
from shared.tokenizer import Tokenizer


class TokenizedData(Protocol):
    """Every system's data: the tokenizer its texts are encoded with (None before setup)."""

    tokenizer: Tokenizer | None


class TextData(TokenizedData, Protocol):
    """Next-token windows of `seq_len` tokens from prepared shards."""

    vocab_size: int
    """Tokens of the data's tokenizer (the model's vocabulary must hold them)."""
    seq_len: int
    """Tokens per training window (T)."""

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes per token of `split`: bits per byte = nats / ln 2 / bytes_per_token."""
        ...


class TrainableTokenizerData(TokenizedData, Protocol):
    """A DataModule that trains its tokenizer when none is given, and can take a checkpoint's."""

    tokenizer_trained: bool
    """True when the tokenizer was trained here (a checkpoint's may then replace it)."""

    def set_tokenizer(self, tok: Tokenizer, trained: bool = False) -> None: ...


class ImageTextData(TrainableTokenizerData, Protocol):
    """Image-text pairs for SigLIP ("contrastive") or the captioner ("captioning", "vqa", "multitask")."""

    mode: str
    zero_shot_classes: list[str]
    """Class names zero-shot accuracy classifies among."""
    zero_shot_templates: list[str]
    """Prompts a class name is put into, e.g. "a photo of a {}"."""

    def bind(self, image_size: int, max_len: int) -> None:
        """Take the model's image size and text length (before any split is decoded)."""
        ...

    def records(self, split: str) -> list:
        """The split's records in batch `index` order (`vision_lm.records.Record`: text, label, ...)."""
        ...


class CaptionData(ImageTextData, Protocol):
    """The captioner's data: image-text pairs whose captions may be trained in another word order."""

    caption_order: str
    """"as_written", or "shape_first" (`vision_lm.caption_order.CAPTION_ORDERS`); the checkpoint records it."""

    answer_after_caption: bool
    """VQA rows write the caption, " => ", then the answer (`vision_lm.text_batch`); the checkpoint records it."""


def contract_members(contract: type) -> list[str]:
    """The names a Protocol (and the Protocols it extends) declares: annotations and methods."""
    names: dict[str, None] = {}
    for cls in reversed(contract.__mro__):
        if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
            continue
        for name in [*getattr(cls, "__annotations__", {}), *vars(cls)]:
            if not name.startswith("_"):
                names[name] = None
    return list(names)


def check_contract(datamodule: object, contract: type, reader: str) -> None:
    """Raise one UserError naming every member of `contract` that `datamodule` lacks.

    reader: who reads the data, for the message ("the text system").
    """
    missing = [
        name
        for name in contract_members(contract)
        if inspect.getattr_static(datamodule, name, _MISSING) is _MISSING
    ]
    if missing:
        raise UserError(
            f"data: {type(datamodule).__name__} lacks {', '.join(missing)}, which {reader} reads "
            f"({contract.__name__} in shared/train/data_contract.py)"
        )


_MISSING = object()
