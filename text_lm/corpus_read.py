"""Reading the inputs of `text-lm prepare` as a stream: never a whole corpus in memory.

Each kind of source (`text_lm/corpus.py` finds them) is read in two passes:
- `scan` reads it once to check it (UTF-8, the text field, its type) and count its
  documents and UTF-8 bytes, which the split rule and the shard plan need;
- `iter_docs` / `iter_text` stream it again while it is encoded.

Kinds and how they stream:
- text files: read in blocks of `BLOCK_BYTES`, decoded incrementally, handed out in pieces
  cut only where cutting cannot change the encoding (`cut_point`), so memory is a few blocks
  whatever the file size;
- `.jsonl` (and JSON Lines `.json`): one `json.loads` per line (the `datasets` JSON loader
  is ~15x slower when streaming); a `.json` holding one array is read whole;
- `.parquet`: pyarrow record batches of the text column;
- `.csv`: `datasets` streaming;
- saved `datasets` folders (`save_to_disk`) and hub datasets: memory-mapped Arrow (or a
  `datasets` streaming iterator for `--hf-streaming`) read in batches.
A document is a non-empty value of the text field (or a whole text file); row indices
(`start`, `stop`) count documents, so empty rows never shift them.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from shared.errors import UserError

BLOCK_BYTES = 1 << 20  # text files are read, decoded and cut in blocks of about this size
BATCH_ROWS = 1024  # rows per Arrow batch


def cut_point(text: str, start: int = 0) -> int:
    """The last index > start at which `text` may be cut without changing its encoding, or -1.

    With the GPT-4 pre-split pattern no chunk holds a newline followed by a non-space
    character (newlines only end chunks or sit inside whitespace runs), so encoding the two
    sides of such a cut one by one gives exactly the ids of the whole.
    """
    i = text.rfind("\n", start, len(text) - 1)
    while i >= start and text[i + 1].isspace():
        i = text.rfind("\n", start, i)
    return i + 1 if i >= start else -1


def _open_text(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


def _decoded_blocks(path: Path, start: int = 0, stop: int | None = None) -> Iterator[str]:
    """Bytes [start, stop) of `path` as text, block by block; one error line for bad input."""
    decoder = codecs.getincrementaldecoder("utf-8-sig" if start == 0 else "utf-8")()
    with _open_text(path) as f:
        f.seek(start)
        offset, left = start, None if stop is None else stop - start
        while True:
            data = f.read(BLOCK_BYTES if left is None else min(BLOCK_BYTES, left))
            if left is not None:
                left -= len(data)
            if b"\x00" in data:
                raise UserError(
                    f"{path} looks binary (it contains NUL bytes), not text; leave it out of --input"
                )
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                at = max(0, min(e.start, len(data) - 1))
                shown = f"byte {data[at]:#04x} " if data else ""
                raise UserError(
                    f"{path} is not UTF-8 text ({shown}at offset {offset + e.start}); "
                    "convert it to UTF-8 or leave it out of --input"
                ) from None
            if text:
                yield text
            if not data:
                return
            offset += len(data)


def iter_text(path: Path, start: int = 0, stop: int | None = None, can_cut: bool = True) -> Iterator[str]:
    """The text of bytes [start, stop) of a UTF-8 file in pieces of about BLOCK_BYTES whose
    encodings concatenate to the encoding of the whole (one piece if `can_cut` is False)."""
    pending = ""
    for block in _decoded_blocks(path, start, stop):
        pending += block
        if can_cut and len(pending) >= BLOCK_BYTES:
            cut = cut_point(pending, len(pending) // 2)  # pieces of 0.5-1.5 blocks
            if cut > 0:
                yield pending[:cut]
                pending = pending[cut:]
    if pending:
        yield pending


def scan_text(path: Path) -> tuple[int, int, int]:
    """(documents, UTF-8 bytes of the text, bytes of a leading byte-order mark) of a text file."""
    for _ in _decoded_blocks(path):  # checks the whole file; valid UTF-8 re-encodes to its own bytes
        pass
    with _open_text(path) as f:
        bom = 3 if f.read(3) == codecs.BOM_UTF8 else 0
    n_bytes = path.stat().st_size - bom
    return int(n_bytes > 0), n_bytes, bom


def quiet_datasets():
    import datasets

    datasets.utils.logging.set_verbosity_error()
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # per-retry network warnings
    datasets.disable_progress_bars()
    return datasets


def _check_value(value, i: int, text_field: str, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: row {i} field {text_field!r} is {type(value).__name__}, not text")
    return value


def _json_rows(path: Path) -> Iterator[dict]:
    with _open_text(path) as f:
        head = f.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
    if head.startswith(b"["):  # one JSON array: read whole (such files are small by nature)
        try:
            rows = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read it as json: {e}") from None
        yield from (r if isinstance(r, dict) else {} for r in rows)
        return
    with open(path, encoding="utf-8-sig") as f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(
                            f"{path}: line {n} is not JSON ({e.msg}); one object per line"
                        ) from None
                    if not isinstance(row, dict):
                        raise UserError(f"{path}: line {n} is not a JSON object")
                    yield row
        except UnicodeDecodeError as e:
            raise UserError(f"{path} is not UTF-8 text (offset {e.start} of a line)") from None


def _arrow_batches(ds, text_field: str, where: str) -> Iterator[list]:
    names = ds.column_names
    if names is not None and text_field not in names:
        raise UserError(f"{where} has no field {text_field!r} (it has {names}); set --text-field")
    for batch in ds.iter(batch_size=BATCH_ROWS):
        if text_field not in batch:
            raise UserError(f"{where} has no field {text_field!r} (it has {list(batch)}); set --text-field")
        yield batch[text_field]


def _raw_values(src, text_field: str) -> Iterator:
    """Every row's value of `text_field` (None where a row lacks it), streaming."""
    where = src.where
    if src.kind == "jsonl":
        seen, keys = False, None
        for row in _json_rows(src.path):
            keys = keys if keys is not None else list(row)
            seen = seen or text_field in row
            yield row.get(text_field)
        if keys is not None and not seen:
            raise UserError(f"{where} has no field {text_field!r} (it has {keys}); set --text-field")
    elif src.kind == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(src.path)
        except Exception as e:  # pyarrow's errors for a file that is not parquet vary
            raise UserError(
                f"{where}: cannot read it as parquet: {str(e).strip() or type(e).__name__}"
            ) from None
        if text_field not in pf.schema_arrow.names:
            raise UserError(
                f"{where} has no field {text_field!r} (it has {pf.schema_arrow.names}); set --text-field"
            )
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[text_field]):
            yield from batch.column(0).to_pylist()
    else:  # csv, saved datasets folders, the hub
        for values in _arrow_batches(open_dataset(src), text_field, where):
            yield from values


def open_dataset(src):
    """A `datasets` Dataset (memory-mapped) or IterableDataset (streaming) for a csv, saved or hub source."""
    datasets = quiet_datasets()
    try:
        if src.kind == "csv":
            return datasets.load_dataset("csv", data_files=str(src.path), split="train", streaming=True)
        if src.kind == "saved":
            ds = datasets.load_from_disk(str(src.path))
            if isinstance(ds, datasets.DatasetDict):
                if src.split not in ds:
                    raise UserError(f"{src.path} has no split {src.split!r} (it has {list(ds)}); set --split")
                ds = ds[src.split]
            return ds
        return datasets.load_dataset(src.hub_name, split=src.split, streaming=src.kind == "hub-stream")
    except UserError:
        raise
    except (
        Exception
    ) as e:  # offline, unknown name or split, unreadable file: the library's message says which
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = (
            " (--hf-dataset needs network access; offline, pass local files with --input)"
            if src.hub_name
            else ""
        )
        raise UserError(f"cannot read {src.where}: {msg}{hint}") from None


def iter_docs(src, text_field: str, start: int = 0, stop: int | None = None) -> Iterator[str]:
    """Documents [start, stop) of a table, saved or hub source (empty values skipped, not counted)."""
    k = 0
    for i, value in enumerate(_raw_values(src, text_field)):
        doc = _check_value(value, i, text_field, src.where)
        if doc is None:
            continue
        if stop is not None and k >= stop:
            return
        if k >= start:
            yield doc
        k += 1


def scan_rows(src, text_field: str) -> tuple[int, int]:
    """(documents, UTF-8 bytes) of a table, saved or hub source; checks every row."""
    n_docs = n_bytes = 0
    for doc in iter_docs(src, text_field):
        n_docs += 1
        n_bytes += len(doc.encode("utf-8", "surrogatepass"))
    return n_docs, n_bytes


def rows_split_point(src, text_field: str, fraction: float) -> tuple[int, int]:
    """(m, bytes of documents [0, m)): the last documents, at least one and never all, hold
    `fraction` of the source's bytes. m is the largest index in [1, n - 1] with
    bytes(0:m) <= total - fraction * total (the tail [m, n) is the shortest reaching the target)."""
    target, prefix, m, m_prefix = fraction * src.n_bytes, 0, 0, 0
    for k, doc in enumerate(iter_docs(src, text_field, 0, src.n_docs - 1)):
        prefix += len(doc.encode("utf-8", "surrogatepass"))
        if k > 0 and src.n_bytes - prefix < target:
            break  # prefixes only grow: no larger m qualifies
        m, m_prefix = k + 1, prefix
    return m, m_prefix
