"""Token shards on disk: the `meta.json` contract between `text-lm prepare` and `TextDataModule`.

A prepared folder (ARCHITECTURE.md section 3) holds

    tokenizer.json   the tokenizer that produced the ids
    train.bin        flat little-endian uint16 (vocabulary <= 65536) or uint32 token ids
    val.bin          the same for the held-out documents
    meta.json        written last: a folder without a valid meta.json is incomplete

Every document is followed by `<|eos|>`, so the shards are one long stream in which the model
learns where documents end. `meta["bytes"]` counts the UTF-8 bytes of the text that was
encoded (the separators add no bytes), which makes bits per byte exact:
bpb = loss_nats_per_token / ln 2 / bytes_per_token.

numpy and the tokenizer only: `text-lm prepare` imports this and must start fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from shared.errors import UserError
from shared.tokenizer import Tokenizer

META_FILE, TOKENIZER_FILE = "meta.json", "tokenizer.json"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def dtype_for_vocab(vocab_size: int) -> str:
    """The smallest shard dtype name that holds every id of a `vocab_size` vocabulary."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def shard_path(data_dir: str | os.PathLike, split: str) -> Path:
    return Path(data_dir) / f"{split}.bin"


def read_meta(data_dir: str | os.PathLike) -> dict:
    """`meta.json` of a prepared folder, with its fields type-checked; UserError says what to run."""
    data_dir = Path(data_dir)
    hint = f"run `text-lm prepare --out {data_dir}` first"
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} not found: {hint}")
    path = data_dir / META_FILE
    if not path.is_file():
        raise UserError(f"{path} not found (the folder is incomplete or not prepared): {hint}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({e}): {hint}") from None
    problem = _meta_problem(meta)
    if problem:
        raise UserError(f"{path}: {problem}: {hint}")
    return meta


def _meta_problem(meta: object) -> str | None:
    if not isinstance(meta, dict):
        return "not a JSON object"
    for key in ("dtype", "vocab_size", "n_tokens", "bytes", "tokenizer_sha256"):
        if key not in meta:
            return f"missing field {key!r}"
    if meta["dtype"] not in DTYPES:
        return f"dtype {meta['dtype']!r} is not one of {sorted(DTYPES)}"
    if type(meta["vocab_size"]) is not int or meta["vocab_size"] <= 0:
        return f"vocab_size {meta['vocab_size']!r} is not a positive integer"
    if DTYPES[meta["dtype"]].itemsize < DTYPES[dtype_for_vocab(meta["vocab_size"])].itemsize:
        return f"dtype {meta['dtype']} cannot hold a vocabulary of {meta['vocab_size']}"
    for key in ("n_tokens", "bytes"):
        counts = meta[key]
        if not (
            isinstance(counts, dict) and all(type(counts.get(s)) is int and counts[s] >= 0 for s in SPLITS)
        ):
            return f"field {key!r} must map 'train' and 'val' to non-negative integers"
    return None


def check_shards(data_dir: str | os.PathLike, meta: dict) -> None:
    """Each shard exists and has exactly n_tokens * itemsize bytes (catches truncated copies)."""
    itemsize = DTYPES[meta["dtype"]].itemsize
    for split in SPLITS:
        path = shard_path(data_dir, split)
        expected = meta["n_tokens"][split] * itemsize
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise UserError(f"{path} not found: run `text-lm prepare --out {data_dir}` again") from None
        if size != expected:
            raise UserError(
                f"{path} has {size} bytes but {Path(data_dir) / META_FILE} promises {meta['n_tokens'][split]} "
                f"{meta['dtype']} tokens = {expected} bytes (truncated or replaced?): "
                f"run `text-lm prepare --out {data_dir}` again"
            )


def load_tokenizer(data_dir: str | os.PathLike, meta: dict) -> Tokenizer:
    """The folder's tokenizer, checked against meta.json: same hash, same vocabulary size."""
    tok_path, meta_path = Path(data_dir) / TOKENIZER_FILE, Path(data_dir) / META_FILE
    tok = Tokenizer.load(tok_path)
    if tok.sha256 != meta["tokenizer_sha256"]:
        raise UserError(
            f"{tok_path} (sha256 {tok.sha256[:12]}...) is not the tokenizer that produced the shards "
            f"({meta_path} says {str(meta['tokenizer_sha256'])[:12]}...): run `text-lm prepare` again"
        )
    if tok.vocab_size != meta["vocab_size"]:
        raise UserError(f"{tok_path} has {tok.vocab_size} tokens but {meta_path} says {meta['vocab_size']}")
    return tok


def load_prepared(data_dir: str | os.PathLike) -> tuple[dict, Tokenizer]:
    """meta.json and tokenizer of a complete prepared folder, after every consistency check."""
    meta = read_meta(data_dir)
    check_shards(data_dir, meta)
    return meta, load_tokenizer(data_dir, meta)


def open_shard(data_dir: str | os.PathLike, split: str, meta: dict) -> np.memmap:
    """A read-only memory map of one shard (pages are read from disk on demand)."""
    n = meta["n_tokens"][split]
    return np.memmap(shard_path(data_dir, split), dtype=DTYPES[meta["dtype"]], mode="r", shape=(n,))
