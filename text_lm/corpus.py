"""Raw text for `text-lm prepare`: find the input files, read them as documents, split by document.

Inputs are files, folders (searched recursively) and glob patterns. By extension:
- `.json`, `.jsonl`, `.parquet`, `.csv` are tables read with `datasets.load_dataset`; each row's
  `--text-field` is one document;
- anything else is UTF-8 plain text, one document per file (folders contribute `.txt` and `.md`
  files; hidden files and folders are skipped). A file that is not UTF-8 is an error naming it.

Validation never shares a document with training: whole sources (files) go to one side.
The rule, in order:
1. `--val-files NAME ...`: those sources (by file name or path).
2. the shipped Shakespeare corpus: hamlet, tempest and twelfth_night (ARCHITECTURE.md section 4).
3. several sources: whole sources from the end of the list sorted by name, until they hold
   `--val-fraction` of the bytes, always leaving one for training. If that would put more
   than half of the bytes in validation (a few files of very different sizes), rule 4 is
   applied to the last source instead and the others all train.
4. one source: its last rows until `--val-fraction` of its bytes; a single document is cut at
   the paragraph break (blank line) nearest to that point, else at a line break, and the
   tail validates. (Held-out text then comes from the same work as the training text.)
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shared.errors import UserError

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "data" / "shakespeare"
DEFAULT_VAL_FILES = ("hamlet_gut.txt", "tempest_gut.txt", "twelfth_night_gut.txt")
TABLE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
FOLDER_SUFFIXES = {".txt", ".md", *TABLE_FORMATS}


@dataclass
class Source:
    """One input: a file or a hub dataset. `name` appears in meta.json and matches `--val-files`."""

    name: str
    path: Path | None = None
    digest: str = ""  # sha256 of the file's bytes (or a hub dataset's fingerprint)
    docs: list[str] | None = None  # filled by `read_source`

    @property
    def n_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.docs or ())


@dataclass
class Part:
    """Documents of one split that come from one source; `label` says which ("a.jsonl[0:90]")."""

    label: str
    docs: list[str]


def default_sources() -> list[Source]:
    files = sorted(DEFAULT_CORPUS.glob("*_gut.txt"))
    if not files:
        raise UserError(f"the shipped corpus is missing: no *_gut.txt files in {DEFAULT_CORPUS}")
    return [Source(f"{DEFAULT_CORPUS.name}/{f.name}", f) for f in files]


def find_sources(inputs: list[str]) -> list[Source]:
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
            if m.is_dir():
                inside = sorted(
                    p
                    for p in m.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in FOLDER_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(m).parts)
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
            sources.append(Source(p.as_posix(), p))
    return sources


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return h.hexdigest()


def read_source(src: Source, text_field: str) -> None:
    """Fill `src.docs` (empty documents dropped) from a text or table file."""
    fmt = TABLE_FORMATS.get(src.path.suffix.lower())
    src.docs = _read_table(src.path, fmt, text_field) if fmt else _read_text(src.path)


def _read_text(path: Path) -> list[str]:
    data = path.read_bytes()
    if b"\x00" in data:
        raise UserError(f"{path} looks binary (it contains NUL bytes), not text; leave it out of --input")
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark is not text
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
            "convert it to UTF-8 or leave it out of --input"
        ) from None
    return [text] if text else []


def _quiet_datasets():
    import datasets

    datasets.utils.logging.set_verbosity_error()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # per-retry network warnings
    datasets.disable_progress_bars()
    return datasets


def _read_table(path: Path, fmt: str, text_field: str) -> list[str]:
    datasets = _quiet_datasets()
    # A private cache folder: reading a local file should leave nothing in ~/.cache behind.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as cache:
        try:
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=cache)
        except Exception as e:  # pyarrow/json errors differ by format; all mean "unreadable file"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{path}: cannot read it as {fmt}: {msg}") from None
        return _column(ds, text_field, str(path))


def _column(ds, text_field: str, where: str) -> list[str]:
    if text_field not in ds.column_names:
        raise UserError(f"{where} has no field {text_field!r} (it has {ds.column_names}); set --text-field")
    docs = []
    for i, value in enumerate(ds[text_field]):
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise UserError(f"{where}: row {i} field {text_field!r} is {type(value).__name__}, not text")
        docs.append(value)
    return docs


def read_hub(name: str, split: str, text_field: str) -> Source:
    """A Hugging Face Hub dataset (downloads, so it needs network access unless already cached)."""
    if not os.environ.get("HF_HUB_OFFLINE") and not os.environ.get("HF_DATASETS_OFFLINE"):
        _check_hub_reachable(name)
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, unknown split: the library's message says which
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"cannot load hub dataset {name!r} split {split!r}: {msg} "
            "(--hf-dataset needs network access; offline, pass local files with --input)"
        ) from None
    where = f"hub dataset {name!r} split {split!r}"
    return Source(f"hf:{name}:{split}", None, ds._fingerprint, _column(ds, text_field, where))


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


def split_sources(
    sources: list[Source], val_files: list[str] | None, val_fraction: float
) -> tuple[list[Part], list[Part], str]:
    """(train parts, val parts, the rule used) following the module docstring; never an empty side."""
    sources = [s for s in sources if s.docs]
    if val_files:
        val, rule = _match(sources, val_files), f"--val-files {' '.join(val_files)}"
        train = [s for s in sources if s not in val]
        return _whole(train), _whole(val), rule
    if len(sources) >= 2:
        ordered = sorted(sources, key=lambda s: s.name)
        total, target = sum(s.n_bytes for s in ordered), val_fraction * sum(s.n_bytes for s in ordered)
        n_val, acc = 0, 0
        while acc < target and n_val < len(ordered) - 1:
            n_val += 1
            acc += ordered[-n_val].n_bytes
        if acc <= total / 2:
            rule = f"last sources by name holding >= {val_fraction:g} of the bytes"
            return _whole(ordered[:-n_val]), _whole(ordered[-n_val:]), rule
        head, last = ordered[:-1], ordered[-1]
    else:
        head, last = [], sources[0]
    train, val = _split_one(last, val_fraction)
    return _whole(head) + [train], [val], f"tail of {last.name} holding ~{val_fraction:g} of its bytes"


def _whole(sources: list[Source]) -> list[Part]:
    return [Part(s.name, s.docs) for s in sources]


def _match(sources: list[Source], names: list[str]) -> list[Source]:
    picked = []
    for name in names:
        hits = [s for s in sources if s.name == name or s.name.endswith("/" + name.lstrip("/"))]
        if not hits:
            known = ", ".join(Path(s.name).name for s in sources[:8]) + (", ..." if len(sources) > 8 else "")
            raise UserError(f"--val-files: no input named {name!r} (inputs: {known})")
        picked += [s for s in hits if s not in picked]
    return picked


def _split_one(src: Source, fraction: float) -> tuple[Part, Part]:
    docs = src.docs
    if len(docs) > 1:  # rows: the last ones, at least one, never all
        target, acc, k = fraction * src.n_bytes, 0, 0
        while acc < target and k < len(docs) - 1:
            k += 1
            acc += len(docs[-k].encode("utf-8"))
        n = len(docs)
        return Part(f"{src.name}[0:{n - k}]", docs[: n - k]), Part(f"{src.name}[{n - k}:{n}]", docs[n - k :])
    text = docs[0]
    cut = cut_near_end(text, fraction)
    return Part(f"{src.name}[:{cut}]", [text[:cut]]), Part(f"{src.name}[{cut}:]", [text[cut:]])


def cut_near_end(text: str, fraction: float) -> int:
    """A character index that leaves about `fraction` of `text` after it, at a paragraph break if any.

    Breaks in the last half of the text are considered: the blank line nearest to the target
    point, else the nearest line break, else the target point itself.
    """
    want = len(text) - max(1, round(len(text) * fraction))
    lo = len(text) // 2
    for sep in ("\n\n", "\n"):
        before, after = text.rfind(sep, lo, want + len(sep)), text.find(sep, want)
        options = [i for i in (before, after) if i >= lo]
        if options:
            cut = min(options, key=lambda i: abs(i - want)) + len(sep)
            while cut < len(text) and text[cut] in "\r\n":
                cut += 1
            if 0 < cut < len(text):
                return cut
    if not 0 < want < len(text):
        raise UserError(f"{len(text)} characters of text cannot be split into training and validation")
    return want
