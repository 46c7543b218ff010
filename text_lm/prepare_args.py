"""The command line of `text-lm prepare` (`text_lm/prepare.py` runs it)."""

from __future__ import annotations

import argparse
import re

from shared.errors import ArgumentParser

SHARD_BYTES = 1 << 28  # default --shard-bytes: 268 MB of text, ~130 MB of uint16 ids


def _part(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"expected I/N (this machine's index and the machine count), got {text!r}"
        )
    return int(m.group(1)), int(m.group(2))


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
        help="text files, folders (recursive: .txt .md .json .jsonl .parquet .csv), folders written by "
        "datasets' save_to_disk, or glob patterns; table rows are documents (see --text-field), "
        "other files are one UTF-8 document each",
    )
    p.add_argument(
        "--hf-dataset", metavar="NAME", help="a Hugging Face Hub dataset to add (needs network access)"
    )
    p.add_argument(
        "--hf-streaming",
        action="store_true",
        help="stream --hf-dataset instead of downloading it first (read twice: counted, then encoded)",
    )
    p.add_argument(
        "--split", default="train", help="the split to read of --hf-dataset and saved DatasetDict folders"
    )
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
    p.add_argument(
        "--tokenizer-sample-bytes",
        type=int,
        metavar="N",
        help="train the tokenizer on about N bytes of the training split, taken evenly across it "
        "(default: all of it, streamed)",
    )
    p.add_argument(
        "--shard-bytes",
        type=int,
        default=SHARD_BYTES,
        metavar="N",
        help="a shard closes once it holds N bytes of text (inputs are never cut across shards); a split "
        "with one shard is written as train.bin/val.bin, more as train-00000.bin, ... listed in meta.json",
    )
    p.add_argument(
        "--part",
        type=_part,
        metavar="I/N",
        help="machine I of N (0-based): encode only shards k with k %% N == I and write "
        "meta.part-I-of-N.json; join the parts with `text-lm prepare-merge` (needs --tokenizer)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p
