"""The layout of a `text-lm prepare` folder: which shards, what meta.json says, what is left over.

- `plan_shards`: each split's parts (whole inputs, in order) packed into shards that close
  once they hold `--shard-bytes` of text. It depends on the input list and sizes alone, so
  every machine of a multi-machine run computes the same plan.
- `build_meta`: meta.json from the shard records, the same function for one machine and for
  `text-lm prepare-merge`, so a merged folder equals a one-machine one byte for byte.
- `clean`: what a finished run removes (done records, progress file, temporary files, and on
  one machine the shard files of an older layout that meta.json no longer lists).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from text_lm import corpus
from text_lm.shards import META_FILE, SHARD_NAME, SPLITS, TOKENIZER_FILE

FORMAT_VERSION = 1  # bump when the same inputs and options would give different files
SEPARATOR = "<|eos|>"
PROGRESS_FILE = ".prepare-progress{}.json"  # the tokenizer a killed run trained, for its restart


def part_tag(part: tuple[int, int] | None) -> str:
    return "" if part is None else f".part-{part[0]}-of-{part[1]}"


def meta_name(part: tuple[int, int] | None) -> str:
    return META_FILE if part is None else f"meta{part_tag(part)}.json"


def plan_shards(parts: list[corpus.Part], shard_bytes: int) -> list[list[corpus.Part]]:
    """Consecutive parts packed into shards, a shard closing once it holds `shard_bytes` of text."""
    groups, size = [[]], 0
    for p in parts:
        if size >= shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += p.n_bytes
    return groups


def build_meta(listing: dict, sharded: bool, fields: dict) -> dict:
    """meta.json from the shard records of each split (the sums) and the run's fields."""
    sums = {
        k: {s: sum(e[k] for e in listing[s]) for s in SPLITS} for k in ("n_tokens", "bytes", "n_documents")
    }
    meta = {
        "format": "text_lm token shards",
        "format_version": FORMAT_VERSION,
        "dtype": fields["dtype"],
        "vocab_size": fields["vocab_size"],
        **sums,
        "tokenizer_sha256": fields["tokenizer_sha256"],
        "document_separator": SEPARATOR,
        "eos_id": fields["eos_id"],
        "sources": {s: [label for e in listing[s] for label in e["sources"]] for s in SPLITS},
        "split_rule": fields["split_rule"],
        "options": fields["options"],
        "inputs_sha256": fields["inputs_sha256"],
    }
    if sharded:
        meta["shards"] = listing
    return meta


def restarted_tokenizer(out: Path, progress_file: Path, inputs_sha256: str) -> Tokenizer | None:
    """The tokenizer a killed run of the same inputs trained and saved, if any."""
    try:
        record = json.loads(progress_file.read_text(encoding="utf-8"))
        if record.get("inputs_sha256") != inputs_sha256:
            return None
        tok = Tokenizer.load(out / TOKENIZER_FILE)
    except (OSError, ValueError, UserError):
        return None
    return tok if tok.sha256 == record.get("tokenizer_sha256") else None


def same_tokenizer(path: Path, tok: Tokenizer) -> bool:
    try:
        return Tokenizer.load(path).sha256 == tok.sha256
    except UserError:
        return False


def _owner(name: str) -> str:
    """The file a leftover belongs to: `.X.abc123.tmp` -> X, `.X.done.json` -> X (both: X)."""
    m = re.fullmatch(r"\.(.+)\.\w+\.tmp", name)
    name = m.group(1) if m else name
    m = re.fullmatch(r"\.(.+)\.done\.json", name)
    return m.group(1) if m else name


def clean(out: Path, meta: dict, part: tuple[int, int] | None) -> None:
    """Remove what a finished run leaves behind: done records, the progress file, temporary files
    and (one machine only) shard files the new meta.json does not list. A part removes only its
    own leftovers: other machines may be writing into the same folder."""
    listed = {e["file"] for s in SPLITS for e in meta.get("shards", {}).get(s, [])}
    listed |= set() if "shards" in meta else {f"{s}.bin" for s in SPLITS}
    progress = PROGRESS_FILE.format(part_tag(part))
    mine = {meta_name(part), progress} | ({META_FILE, TOKENIZER_FILE} if part is None else set())
    for p in out.iterdir():
        name, owner = p.name, _owner(p.name)
        is_shard = bool(SHARD_NAME.match(owner)) or owner in ("train.bin", "val.bin")
        leftover = name != owner or name == progress
        if leftover and ((is_shard and (part is None or owner in listed)) or owner in mine):
            p.unlink(missing_ok=True)
        elif part is None and is_shard and name not in listed:
            p.unlink(missing_ok=True)  # a shard of an older layout
