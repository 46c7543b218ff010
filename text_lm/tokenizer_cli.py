"""`text-lm tokenizer train|encode|decode`: the byte-level BPE tokenizer from the shell.

    text-lm tokenizer train --input data/shakespeare --vocab-size 4096 --out tok.json
    echo "To be, or not to be" | text-lm tokenizer encode --tokenizer tok.json
    echo "2514 387 11 ..." | text-lm tokenizer decode --tokenizer tok.json

Light on purpose: imports neither torch nor lightning, so it starts in well under a second.
Runs as `python -m text_lm.tokenizer_cli ...` too.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Iterator
from pathlib import Path

from shared.errors import ArgumentParser, UserError, exit_on_user_error


def resolve_inputs(specs: list[str]) -> list[Path]:
    """Files named by `specs`: files, folders (all files below, recursively, hidden ones
    skipped) or glob patterns (`**` recurses). Sorted within each spec, duplicates dropped.
    A spec that names nothing is a UserError."""
    files: dict[Path, None] = {}
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            found = []
            for match in sorted(glob.glob(spec, recursive=True)):
                found.extend(resolve_inputs([match]) if Path(match).is_dir() else [Path(match)])
        if not found:
            raise UserError(f"--input {spec}: no such file, folder or matching files")
        files.update(dict.fromkeys(found))
    return list(files)


def read_texts(files: list[Path]) -> Iterator[str]:
    """The contents of `files` as UTF-8 text, one at a time (never all in memory)."""
    for f in files:
        try:
            yield f.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{f}: not UTF-8 text (byte {e.start}); pass text files only") from None
        except OSError as e:
            raise UserError(f"cannot read {f}: {e.strerror}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="text-lm tokenizer",
        description="Train, apply and invert the byte-level BPE tokenizer (file format: ARCHITECTURE.md section 3).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,encode,decode}")

    train = sub.add_parser(
        "train",
        help="learn BPE merges from text files",
        description="Learn byte-level BPE merges from text and write tokenizer.json.",
    )
    train.add_argument(
        "--input",
        nargs="+",
        action="extend",
        required=True,
        metavar="PATH",
        help="training text: files, folders (every file below them) or glob patterns; repeatable",
    )
    train.add_argument(
        "--vocab-size",
        type=int,
        required=True,
        metavar="N",
        help="total vocabulary: 256 bytes + merges + special tokens (so N - 256 - specials merges)",
    )
    train.add_argument("--out", required=True, metavar="FILE", help="where to write the tokenizer JSON")
    train.add_argument(
        "--special-tokens",
        default=None,
        metavar="A,B,...",
        help="comma-separated special tokens, ids after the merges "
        "(default: <|bos|>,<|eos|>,<|pad|>,<image>,<|sep|>,<|system|>,<|user|>,<|assistant|>; '' for none)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars on stderr")

    encode = sub.add_parser(
        "encode",
        help="text on stdin -> token ids on stdout",
        description="Read UTF-8 text on stdin, print its token ids on one line, separated by spaces.",
    )
    encode.add_argument(
        "--tokenizer", required=True, metavar="FILE", help="tokenizer JSON written by 'train'"
    )
    encode.add_argument(
        "--allow-special",
        action="store_true",
        help="turn special-token strings in the text (e.g. <|eos|>) into their ids; by default they are "
        "encoded as ordinary text",
    )

    decode = sub.add_parser(
        "decode",
        help="token ids on stdin -> text on stdout",
        description="Read whitespace-separated token ids on stdin, print the text (invalid UTF-8 becomes U+FFFD).",
    )
    decode.add_argument(
        "--tokenizer", required=True, metavar="FILE", help="tokenizer JSON written by 'train'"
    )
    return parser


def _read_stdin_text() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"stdin is not UTF-8 text (byte {e.start})") from None


def _parse_ids(text: str) -> list[int]:
    ids = []
    for i, word in enumerate(text.split()):
        try:
            ids.append(int(word))
        except ValueError:
            shown = word if len(word) <= 20 else word[:20] + "..."
            raise UserError(f"stdin: item {i + 1} is not an integer token id: {shown!r}") from None
    return ids


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = _build_parser().parse_args(argv)
    from shared.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

    if args.command == "train":
        specials = DEFAULT_SPECIAL_TOKENS
        if args.special_tokens is not None:
            specials = tuple(s for s in args.special_tokens.split(",") if s)
        files = resolve_inputs(args.input)
        tok = Tokenizer.train(read_texts(files), args.vocab_size, specials, progress=not args.quiet)
        tok.save(args.out)
        print(
            f"wrote {args.out}: vocab {tok.vocab_size} ({len(tok.merges)} merges, "
            f"{len(tok.special_tokens)} special tokens) from {len(files)} files; sha256 {tok.sha256[:12]}",
            file=sys.stderr,
        )
    elif args.command == "encode":
        tok = Tokenizer.load(args.tokenizer)
        ids = tok.encode(_read_stdin_text(), allowed_special="all" if args.allow_special else "none")
        sys.stdout.write(" ".join(map(str, ids)) + "\n")
    else:
        tok = Tokenizer.load(args.tokenizer)
        ids = _parse_ids(sys.stdin.buffer.read().decode("utf-8", errors="replace"))
        sys.stdout.buffer.write(tok.decode(ids).encode("utf-8"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
