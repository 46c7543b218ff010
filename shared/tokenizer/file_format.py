"""The `tokenizer.json` file (ARCHITECTURE.md section 3): reading, checking and writing its fields.

    {"type": "byte_bpe", "version": 1, "pattern": "...", "merges": [[a, b], ...],
     "special_tokens": {"<|bos|>": 4352, ...}}

Plain JSON, so a tokenizer from a stranger is data, never code. Every problem is a UserError
naming the file (or `source`) and the field. `shared/tokenizer.py` builds the `Tokenizer`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.errors import UserError
from shared.io import write_text_atomic

FILE_TYPE, FILE_VERSION = "byte_bpe", 1


def read_tokenizer_json(path: str | os.PathLike) -> object:
    """The parsed JSON of a tokenizer file; a missing, unreadable or truncated file is a UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"tokenizer file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"tokenizer path is a folder, not a file: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file, so not a tokenizer.json") from None
    except OSError as e:
        raise UserError(f"cannot read tokenizer file {path}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path}: not valid JSON (truncated or corrupted?): {e.msg} at line {e.lineno} column {e.colno}"
        ) from None


def check_tokenizer_dict(d: object, source: str) -> dict:
    """`d` if it has the fields of the format with the right types (ids are checked by `Tokenizer`)."""
    if not isinstance(d, dict):
        raise UserError(f"{source}: expected a JSON object, got {type(d).__name__}")
    for key in ("type", "version", "pattern", "merges", "special_tokens"):
        if key not in d:
            raise UserError(f"{source}: missing field '{key}'")
    if d["type"] != FILE_TYPE:
        raise UserError(f"{source}: field 'type' is {d['type']!r}, expected {FILE_TYPE!r}")
    if d["version"] != FILE_VERSION:
        raise UserError(f"{source}: field 'version' is {d['version']!r}; this program reads {FILE_VERSION}")
    if not isinstance(d["pattern"], str):
        raise UserError(f"{source}: field 'pattern' must be a string")
    merges = d["merges"]
    if not isinstance(merges, list):
        raise UserError(f"{source}: field 'merges' must be a list of [left_id, right_id] pairs")
    for i, m in enumerate(merges):
        if not (isinstance(m, list) and len(m) == 2 and all(type(x) is int for x in m)):
            raise UserError(f"{source}: merges[{i}] must be a pair of integer ids, got {str(m)[:40]}")
    specials = d["special_tokens"]
    if not isinstance(specials, dict) or not all(type(v) is int for v in specials.values()):
        raise UserError(f"{source}: field 'special_tokens' must map names to integer ids")
    return d


def write_tokenizer_json(path: str | os.PathLike, d: dict) -> None:
    """Write `d` (the format's fields) atomically, one merge per line so it stays readable and diffable."""
    merges = ",\n".join(f"    [{a}, {b}]" for a, b in d["merges"])
    text = (
        "{\n"
        f'  "type": {json.dumps(d["type"])},\n'
        f'  "version": {d["version"]},\n'
        f'  "pattern": {json.dumps(d["pattern"], ensure_ascii=False)},\n'
        + (f'  "merges": [\n{merges}\n  ],\n' if merges else '  "merges": [],\n')
        + f'  "special_tokens": {json.dumps(d["special_tokens"], ensure_ascii=False)}\n'
        "}\n"
    )
    write_text_atomic(path, text)
