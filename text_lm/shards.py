"""Token shards on disk: the `meta.json` contract between `text-lm prepare` and `TextDataModule`.

A prepared folder (ARCHITECTURE.md section 3) holds

    tokenizer.json   the tokenizer that produced the ids
    train.bin        flat little-endian uint16 (vocabulary <= 65536) or uint32 token ids
    val.bin          the same for the held-out documents
    meta.json        written last: a folder without a valid meta.json is incomplete

or, for a large corpus, numbered shards `train-00000.bin, train-00001.bin, ...` and
`val-00000.bin, ...` instead of the two files, listed in order in `meta["shards"]`:

    "shards": {"train": [{"file": "train-00000.bin", "n_tokens": N, "bytes": B,
                          "n_documents": D, "sources": [...]}, ...], "val": [...]}

The shards of a split are one stream, in listed order (`TokenStream`); the split's
`n_tokens`, `bytes` and `n_documents` are the sums over its shards. No "shards" key means
the one-file layout (the shipped default).

Every document is followed by `<|eos|>`, so the shards are one long stream in which the model
learns where documents end. `meta["bytes"]` counts the UTF-8 bytes of the text that was
encoded (the separators add no bytes), which makes bits per byte exact:
bpb = loss_nats_per_token / ln 2 / bytes_per_token.

numpy and the tokenizer only: `text-lm prepare` imports this and must start fast.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from shared.errors import UserError
from shared.tokenizer import Tokenizer

META_FILE, TOKENIZER_FILE = "meta.json", "tokenizer.json"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
SHARD_NAME = re.compile(r"^(train|val)-(\d{5})\.bin$")
SHARD_FIELDS = ("n_tokens", "bytes", "n_documents")


def shard_name(split: str, index: int) -> str:
    """`train-00003.bin`: the file of shard `index` of `split` in the sharded layout."""
    return f"{split}-{index:05d}.bin"


def dtype_for_vocab(vocab_size: int) -> str:
    """The smallest shard dtype name that holds every id of a `vocab_size` vocabulary."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def shard_path(data_dir: str | os.PathLike, split: str) -> Path:
    """The one-file layout's shard of `split`."""
    return Path(data_dir) / f"{split}.bin"


def shard_files(data_dir: str | os.PathLike, split: str, meta: dict) -> list[tuple[Path, int]]:
    """(path, n_tokens) of each shard of `split`, in stream order (one entry in the one-file layout)."""
    if "shards" not in meta:
        return [(shard_path(data_dir, split), meta["n_tokens"][split])]
    return [(Path(data_dir) / s["file"], s["n_tokens"]) for s in meta["shards"][split]]


def read_meta(data_dir: str | os.PathLike, name: str = META_FILE) -> dict:
    """`meta.json` (or another meta file, such as a part's) of a prepared folder, with its fields
    type-checked; UserError says what to run."""
    data_dir = Path(data_dir)
    hint = f"run `text-lm prepare --out {data_dir}` first"
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} not found: {hint}")
    path = data_dir / name
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
    return _shards_problem(meta) if "shards" in meta else None


def _shards_problem(meta: dict) -> str | None:
    shards = meta["shards"]
    if not isinstance(shards, dict) or any(not isinstance(shards.get(s), list) for s in SPLITS):
        return "field 'shards' must map 'train' and 'val' to lists"
    for split in SPLITS:
        for i, entry in enumerate(shards[split]):
            where = f"shards.{split}[{i}]"
            if not isinstance(entry, dict):
                return f"{where} is not an object"
            m = SHARD_NAME.match(str(entry.get("file")))
            if not m or m.group(1) != split:
                return f"{where}.file {entry.get('file')!r} is not a {split}-NNNNN.bin name"
            if any(type(entry.get(k)) is not int or entry[k] < 0 for k in ("n_tokens", "bytes")):
                return f"{where} needs non-negative integer n_tokens and bytes"
        for key in ("n_tokens", "bytes"):
            total = sum(e[key] for e in shards[split])
            if total != meta[key][split]:
                return f"{key}.{split} is {meta[key][split]} but its shards add up to {total}"
    return None


def check_shards(data_dir: str | os.PathLike, meta: dict) -> None:
    """Each shard exists and has exactly n_tokens * itemsize bytes (catches truncated copies)."""
    itemsize = DTYPES[meta["dtype"]].itemsize
    for split in SPLITS:
        for path, n in shard_files(data_dir, split, meta):
            expected = n * itemsize
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise UserError(f"{path} not found: run `text-lm prepare --out {data_dir}` again") from None
            if size != expected:
                raise UserError(
                    f"{path} has {size} bytes but {Path(data_dir) / META_FILE} promises {n} "
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


class TokenStream:
    """The shards of one split as one stream of `len(self)` tokens, read through memory maps.

    `read(start, n)` returns tokens [start, start + n) of the stream, joining the pieces of
    consecutive shards when the range crosses a boundary. Each shard is memory-mapped on first
    use (pages come from disk on demand); the maps are never pickled, so DataLoader workers
    open their own.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str, meta: dict):
        self.dtype = DTYPES[meta["dtype"]]
        files = [(p, n) for p, n in shard_files(data_dir, split, meta) if n > 0]
        self.paths, sizes = [p for p, _ in files], [n for _, n in files]
        self.starts = np.cumsum([0, *sizes])  # shard k holds stream positions [starts[k], starts[k+1])
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def _map(self, k: int) -> np.memmap:
        if k not in self._maps:
            n = int(self.starts[k + 1] - self.starts[k])
            self._maps[k] = np.memmap(self.paths[k], dtype=self.dtype, mode="r", shape=(n,))
        return self._maps[k]

    def read(self, start: int, n: int) -> np.ndarray:
        if start < 0 or start + n > len(self):
            raise IndexError(f"tokens [{start}, {start + n}) are outside a stream of {len(self)}")
        k = int(np.searchsorted(self.starts, start, side="right")) - 1
        parts, pos, end = [], start, start + n
        while pos < end:
            lo, hi = int(self.starts[k]), int(self.starts[k + 1])
            parts.append(self._map(k)[pos - lo : min(end, hi) - lo])
            pos, k = min(end, hi), k + 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
