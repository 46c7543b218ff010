"""`text-lm prepare`: raw text -> tokenizer -> token shards that `TextDataModule` reads.

    text-lm prepare --out data/shakespeare_bpe                    # the shipped Shakespeare
    text-lm prepare --input books/ notes.jsonl --vocab-size 8192 --out data/mine
    text-lm prepare --input "corpus/**/*.txt" --tokenizer data/mine/tokenizer.json --out data/more

Steps: read the inputs as documents and split them by document (`text_lm/corpus.py` states
the rule), train a byte-level BPE tokenizer on the training documents only (or reuse one),
encode every document followed by `<|eos|>` in parallel processes, and write
`tokenizer.json`, `train.bin`, `val.bin` and finally `meta.json` (format: `text_lm/shards.py`).

Every file is written to a temporary name and renamed, and an old meta.json is removed
before anything else changes, so an interrupted run leaves a folder that the DataModule
refuses instead of a mix of old and new files. meta.json records `inputs_sha256`, a hash of
the inputs' names and bytes and of the options that change the output; re-running with
the same ones finds it and does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shared.errors import ArgumentParser, UserError, exit_on_user_error
from shared.io import atomic_path, write_json_atomic
from shared.tokenizer import DEFAULT_SPECIAL_TOKENS, GPT4_PATTERN, Tokenizer
from text_lm import corpus
from text_lm.shards import DTYPES, META_FILE, TOKENIZER_FILE, check_shards, dtype_for_vocab, read_meta

FORMAT_VERSION = 1  # bump when the same inputs and options would give different files
SEPARATOR = "<|eos|>"
PIECE_CHARS = 1 << 20  # long documents are encoded in pieces of about this many characters...
GROUP_CHARS = 1 << 24  # ...and handed to the worker pool in groups of about this many


def prepare(
    out: str | os.PathLike,
    inputs: list[str] | None = None,
    hf_dataset: str | None = None,
    split: str = "train",
    text_field: str = "text",
    vocab_size: int = 4096,
    tokenizer: str | os.PathLike | None = None,
    val_files: list[str] | None = None,
    val_fraction: float = 0.05,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Prepare `out` (see the module docstring) and return its meta.json contents."""
    out = Path(out)
    num_workers = num_workers or _cpus()
    _check_options(out, vocab_size, val_fraction, num_workers)
    tok = Tokenizer.load(tokenizer) if tokenizer is not None else None
    if tok is not None and SEPARATOR not in tok.special_tokens:
        raise UserError(f"{tokenizer} has no {SEPARATOR} token to separate documents")

    sources = corpus.find_sources(inputs) if inputs else []
    if not inputs and not hf_dataset:
        sources = corpus.default_sources()
        val_files = val_files or list(corpus.DEFAULT_VAL_FILES)
    for src in sources:
        src.digest = corpus.file_digest(src.path)
    if hf_dataset:
        sources.append(corpus.read_hub(hf_dataset, split, text_field))
    options = {
        "format_version": FORMAT_VERSION,
        "tokenizer": tok.sha256 if tok else {"train_vocab_size": vocab_size},
        "val_files": val_files,
        "val_fraction": None if val_files else val_fraction,
        "text_field": text_field,
    }
    key = json.dumps({"options": options, "sources": [[s.name, s.digest] for s in sources]}, sort_keys=True)
    inputs_sha256 = hashlib.sha256(key.encode("utf-8")).hexdigest()
    if _up_to_date(out, inputs_sha256):
        print(f"{out}: up to date (same inputs and options as its {META_FILE}); nothing to do")
        return read_meta(out)

    for src in sources:
        if src.docs is None:
            corpus.read_source(src, text_field)
    if not any(src.docs for src in sources):
        names = ", ".join(s.name for s in sources[:5]) + (", ..." if len(sources) > 5 else "")
        raise UserError(f"empty corpus: the inputs hold no text ({names})")
    train, val, rule = corpus.split_sources(sources, val_files, val_fraction)
    for name, parts in (("training", train), ("validation", val)):
        if not any(p.docs for p in parts):
            raise UserError(f"the {name} split is empty ({rule}); give more inputs or change --val-files")

    (out / META_FILE).unlink(missing_ok=True)  # from here on the folder is incomplete until the end
    for name in (META_FILE, TOKENIZER_FILE, "train.bin", "val.bin"):  # halves left by a killed run
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    if tok is None:
        tok = Tokenizer.train((d for p in train for d in p.docs), vocab_size, progress=progress)
    tok.save(out / TOKENIZER_FILE)
    dtype = dtype_for_vocab(tok.vocab_size)
    counts = {
        split_name: _encode_split(tok, parts, out / f"{split_name}.bin", dtype, num_workers, progress)
        for split_name, parts in (("train", train), ("val", val))
    }
    meta = {
        "format": "text_lm token shards",
        "format_version": FORMAT_VERSION,
        "dtype": dtype,
        "vocab_size": tok.vocab_size,
        "n_tokens": {s: c[0] for s, c in counts.items()},
        "bytes": {s: c[1] for s, c in counts.items()},
        "n_documents": {s: c[2] for s, c in counts.items()},
        "tokenizer_sha256": tok.sha256,
        "document_separator": SEPARATOR,
        "eos_id": tok.eos_id,
        "sources": {"train": [p.label for p in train], "val": [p.label for p in val]},
        "split_rule": rule,
        "options": options,
        "inputs_sha256": inputs_sha256,
    }
    write_json_atomic(out / META_FILE, meta)
    n, b = meta["n_tokens"], meta["bytes"]
    print(
        f"{out}: vocabulary {tok.vocab_size}; train {n['train']:,} tokens ({b['train']:,} bytes, "
        f"{b['train'] / n['train']:.2f} bytes/token), val {n['val']:,} tokens ({b['val']:,} bytes) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return meta


def _cpus() -> int:
    """CPUs this process may use (the affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_options(out: Path, vocab_size: int, val_fraction: float, num_workers: int) -> None:
    smallest = 256 + len(DEFAULT_SPECIAL_TOKENS)
    if vocab_size < smallest:
        raise UserError(
            f"--vocab-size {vocab_size} is too small: it must be at least 256 bytes + "
            f"{len(DEFAULT_SPECIAL_TOKENS)} special tokens = {smallest}"
        )
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if num_workers < 1:
        raise UserError(f"--num-workers must be at least 1, got {num_workers}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")


def _up_to_date(out: Path, inputs_sha256: str) -> bool:
    """A complete folder (valid meta.json, shards of the promised size) made from the same inputs."""
    try:
        meta = read_meta(out)
        check_shards(out, meta)
        tok = Tokenizer.load(out / TOKENIZER_FILE)
    except UserError:
        return False
    return meta.get("inputs_sha256") == inputs_sha256 and tok.sha256 == meta["tokenizer_sha256"]


def _encode_split(tok: Tokenizer, parts, path: Path, dtype: str, num_workers: int, progress: bool):
    """Encode every document + <|eos|> into `path`; return (tokens, UTF-8 bytes, documents)."""
    from tqdm import tqdm

    docs = [d for p in parts for d in p.docs]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    total_chars, n_tokens = sum(map(len, docs)), 0
    np_dtype = DTYPES[dtype]
    bar = tqdm(
        total=total_chars, desc=f"encoding {path.stem}", unit="char", unit_scale=True, disable=not progress
    )
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for group in _groups(docs, tok.pattern == GPT4_PATTERN):
            texts = [text for text, _ in group]
            for (text, ends_doc), ids in zip(group, tok.encode_batch(texts, num_workers=num_workers)):
                if ends_doc:
                    ids.append(tok.eos_id)
                f.write(np.asarray(ids, dtype=np_dtype).tobytes())
                n_tokens += len(ids)
                bar.update(len(text))
    bar.close()
    return n_tokens, n_bytes, len(docs)


def _groups(docs: list[str], can_cut: bool) -> Iterator[list[tuple[str, bool]]]:
    """Batches of (piece, is the last piece of its document), about GROUP_CHARS each."""
    group, size = [], 0
    for doc in docs:
        pieces = list(pieces_of(doc)) if can_cut else [doc]
        for i, piece in enumerate(pieces):
            group.append((piece, i == len(pieces) - 1))
            size += len(piece)
            if size >= GROUP_CHARS:
                yield group
                group, size = [], 0
    if group:
        yield group


def pieces_of(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """Cut a long text into pieces of about `size` characters without changing its encoding.

    Cuts fall after a newline that is followed by a non-space character: with the GPT-4
    pre-split pattern no chunk contains such a pair (newlines only end chunks or sit inside
    whitespace runs), so encoding the pieces one by one gives exactly the ids of the whole.
    """
    start = 0
    while len(text) - start > size:
        cut = start + size
        while cut < len(text) and not (text[cut - 1] == "\n" and not text[cut].isspace()):
            cut += 1
        if cut >= len(text):
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="text-lm prepare",
        description="Tokenize raw text into train.bin/val.bin token shards plus tokenizer.json and meta.json. "
        "With no --input and no --hf-dataset it prepares the shipped Shakespeare corpus "
        "(validation: Hamlet, The Tempest, Twelfth Night). Every document ends with <|eos|>. "
        "Re-running with the same inputs and options does nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--input",
        nargs="+",
        metavar="PATH",
        help="text files, folders (recursive: .txt .md .json .jsonl .parquet .csv) or glob patterns; "
        ".json/.jsonl/.parquet/.csv rows are documents (see --text-field), other files are one UTF-8 document each",
    )
    p.add_argument(
        "--hf-dataset", metavar="NAME", help="a Hugging Face Hub dataset to add (needs network access)"
    )
    p.add_argument("--split", default="train", help="the --hf-dataset split to read")
    p.add_argument(
        "--text-field", default="text", help="the column holding the text in table inputs and --hf-dataset"
    )
    tok = p.add_mutually_exclusive_group()
    tok.add_argument(
        "--vocab-size",
        type=int,
        default=4096,
        help="train a tokenizer of this many tokens (256 bytes + merges + 5 special tokens) on the training split",
    )
    tok.add_argument("--tokenizer", metavar="FILE", help="reuse this tokenizer.json instead of training one")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument(
        "--val-files",
        nargs="+",
        metavar="NAME",
        help="inputs (file names or paths) that form the validation split; default: the last files by name "
        "holding --val-fraction of the bytes (a single file: its tail, cut at a paragraph break)",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.05, help="share of the bytes to hold out when no --val-files"
    )
    p.add_argument("--num-workers", type=int, default=None, help="encoding processes (default: all CPUs)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    val_files = [n for item in args.val_files or [] for n in item.split(",") if n] or None
    prepare(
        args.out,
        inputs=args.input,
        hf_dataset=args.hf_dataset,
        split=args.split,
        text_field=args.text_field,
        vocab_size=args.vocab_size,
        tokenizer=args.tokenizer,
        val_files=val_files,
        val_fraction=args.val_fraction,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )


if __name__ == "__main__":
    main()
