"""`text-lm prepare`: raw text -> tokenizer -> token shards that `TextDataModule` reads.

    text-lm prepare --out data/shakespeare_bpe                    # the shipped Shakespeare
    text-lm prepare --input books/ notes.jsonl --vocab-size 8192 --out data/mine
    text-lm prepare --input "corpus/**/*.txt" --tokenizer data/mine/tokenizer.json --out data/more

Steps, all streaming (memory is bounded by the options, never by the corpus):
1. find the inputs and read each once to check and count it (`text_lm/corpus.py`), then split (`corpus_split.py`)
   them by document into training and validation;
2. plan the shards: each split's parts (whole inputs, in order) are packed into shards that
   close once they hold `--shard-bytes` of text, so which input goes to which shard follows
   from the input list alone. One shard per split is written as `train.bin` / `val.bin`
   (the shipped default); more as `train-00000.bin, ...` listed in meta.json (`text_lm/shards.py`);
3. train a byte-level BPE tokenizer on the training split streamed (or on an even sample of
   `--tokenizer-sample-bytes`), or reuse one;
4. encode every document followed by `<|eos|>` in worker processes, shard by shard
   (`text_lm/prepare_stream.py`), and write meta.json last.

Every file is written to a temporary name and renamed, and an old meta.json is removed
before anything else changes, so an interrupted run leaves a folder that the DataModule
refuses. Each finished shard leaves a `.NAME.done.json` record: running the same command
again resumes from the last finished shard (and reuses the tokenizer it trained), and ends
with the files of an uninterrupted run. meta.json records `inputs_sha256`, a hash of the
inputs' names and bytes and of the options that change the output; re-running with the same
ones finds it and does nothing.

Several machines: `--part I/N` encodes only the shards k with k % N == I and writes
`meta.part-I-of-N.json` instead of meta.json; `text-lm prepare-merge` joins the parts
(`text_lm/prepare_merge.py`, README "Preparing a large corpus on several machines").
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from shared.errors import UserError, exit_on_user_error
from shared.io import write_json_atomic
from shared.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer
from text_lm import corpus, corpus_split, prepare_stream
from text_lm.corpus import pieces_of  # noqa: F401  (re-exported: the cut rule for long documents)
from text_lm.prepare_args import SHARD_BYTES, build_parser
from text_lm.prepare_layout import (
    FORMAT_VERSION,
    PROGRESS_FILE,
    SEPARATOR,
    build_meta,
    clean,
    meta_name,
    part_tag,
    plan_shards,
    restarted_tokenizer,
    same_tokenizer,
)
from text_lm.shards import SPLITS, TOKENIZER_FILE, check_shards, dtype_for_vocab, read_meta


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
    shard_bytes: int = SHARD_BYTES,
    tokenizer_sample_bytes: int | None = None,
    part: tuple[int, int] | None = None,
    hf_streaming: bool = False,
) -> dict:
    """Prepare `out` (see the module docstring) and return its meta.json (or part meta) contents."""
    out = Path(out)
    num_workers = num_workers or _cpus()
    _check_options(out, vocab_size, val_fraction, num_workers, shard_bytes, tokenizer_sample_bytes, part)
    if part is not None and tokenizer is None:
        raise UserError("--part needs --tokenizer: train the tokenizer once, then give it to every part")
    tok = Tokenizer.load(tokenizer) if tokenizer is not None else None
    if tok is not None and SEPARATOR not in tok.special_tokens:
        raise UserError(f"{tokenizer} has no {SEPARATOR} token to separate documents")

    sources = corpus.find_sources(inputs, split) if inputs else []
    if not inputs and not hf_dataset:
        sources = corpus.default_sources()
        val_files = val_files or list(corpus.DEFAULT_VAL_FILES)
    if hf_dataset:
        sources.append(corpus.hub_source(hf_dataset, split, hf_streaming))
    for src in sources:
        src.digest = corpus.digest(src, text_field)
    options = {
        "format_version": FORMAT_VERSION,
        "tokenizer": tok.sha256 if tok else {"train_vocab_size": vocab_size},
        "val_files": val_files,
        "val_fraction": None if val_files else val_fraction,
        "text_field": text_field,
    }
    if shard_bytes != SHARD_BYTES:  # options that change the output, recorded when not the default
        options["shard_bytes"] = shard_bytes
    if tokenizer_sample_bytes is not None and tok is None:
        options["tokenizer_sample_bytes"] = tokenizer_sample_bytes
    key = json.dumps({"options": options, "sources": [[s.name, s.digest] for s in sources]}, sort_keys=True)
    inputs_sha256 = hashlib.sha256(key.encode("utf-8")).hexdigest()
    meta_file = meta_name(part)
    if _up_to_date(out, inputs_sha256, meta_file):
        print(f"{out}: up to date (same inputs and options as its {meta_file}); nothing to do")
        clean(out, read_meta(out, meta_file), part)
        return read_meta(out, meta_file)

    for src in sources:
        if src.kind != "hub-stream":  # a hub stream was counted by its digest
            corpus.scan(src, text_field)
    if not any(src.n_docs for src in sources):
        names = ", ".join(s.name for s in sources[:5]) + (", ..." if len(sources) > 5 else "")
        raise UserError(f"empty corpus: the inputs hold no text ({names})")
    train, val, rule = corpus_split.split_sources(sources, val_files, val_fraction, text_field)
    for name, parts in (("training", train), ("validation", val)):
        if not any(p.n_docs for p in parts):
            raise UserError(f"the {name} split is empty ({rule}); give more inputs or change --val-files")
    plan = {"train": plan_shards(train, shard_bytes), "val": plan_shards(val, shard_bytes)}
    sharded = part is not None or any(len(groups) > 1 for groups in plan.values())

    (out / meta_file).unlink(missing_ok=True)  # from here on the folder is incomplete until the end
    t0 = time.perf_counter()
    progress_file = out / PROGRESS_FILE.format(part_tag(part))
    if tok is None:
        tok = restarted_tokenizer(out, progress_file, inputs_sha256)
    if tok is None:
        can_cut = True  # the tokenizer trained here uses GPT4_PATTERN
        n_train = sum(p.n_bytes for p in train)
        texts = prepare_stream.sample(
            prepare_stream.pieces_of_parts(train, text_field, can_cut), n_train, tokenizer_sample_bytes
        )
        tok = Tokenizer.train(texts, vocab_size, progress=progress)
    if not ((out / TOKENIZER_FILE).is_file() and same_tokenizer(out / TOKENIZER_FILE, tok)):
        tok.save(out / TOKENIZER_FILE)
    write_json_atomic(progress_file, {"inputs_sha256": inputs_sha256, "tokenizer_sha256": tok.sha256})

    dtype = dtype_for_vocab(tok.vocab_size)
    listing = prepare_stream.encode_plan(
        out, plan, sharded, part, tok, dtype, text_field, num_workers, inputs_sha256, progress
    )
    meta = build_meta(
        listing,
        sharded,
        {
            "dtype": dtype,
            "vocab_size": tok.vocab_size,
            "tokenizer_sha256": tok.sha256,
            "eos_id": tok.eos_id,
            "split_rule": rule,
            "options": options,
            "inputs_sha256": inputs_sha256,
        },
    )
    if part is not None:
        meta["part"] = {"index": part[0], "count": part[1], "n_shards": {s: len(plan[s]) for s in SPLITS}}
    write_json_atomic(out / meta_file, meta)
    clean(out, meta, part)
    n, b = meta["n_tokens"], meta["bytes"]
    print(
        f"{out}: vocabulary {tok.vocab_size}; train {n['train']:,} tokens ({b['train']:,} bytes, "
        f"{b['train'] / max(1, n['train']):.2f} bytes/token), val {n['val']:,} tokens ({b['val']:,} bytes) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return meta


def _cpus() -> int:
    """CPUs this process may use (the affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_options(out, vocab_size, val_fraction, num_workers, shard_bytes, sample_bytes, part) -> None:
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
    if shard_bytes < 1:
        raise UserError(f"--shard-bytes must be at least 1, got {shard_bytes}")
    if sample_bytes is not None and sample_bytes < 1:
        raise UserError(f"--tokenizer-sample-bytes must be at least 1, got {sample_bytes}")
    if part is not None and not 0 <= part[0] < part[1]:
        raise UserError(f"--part {part[0]}/{part[1]}: I must be in 0..N-1")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")


def _up_to_date(out: Path, inputs_sha256: str, meta_file: str) -> bool:
    """A complete folder (valid meta file, shards of the promised size) made from the same inputs."""
    try:
        meta = read_meta(out, meta_file)
        check_shards(out, meta)
        tok = Tokenizer.load(out / TOKENIZER_FILE)
    except UserError:
        return False
    return meta.get("inputs_sha256") == inputs_sha256 and tok.sha256 == meta["tokenizer_sha256"]


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
        shard_bytes=args.shard_bytes,
        tokenizer_sample_bytes=args.tokenizer_sample_bytes,
        part=args.part,
        hf_streaming=args.hf_streaming,
    )


if __name__ == "__main__":
    main()
