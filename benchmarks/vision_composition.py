"""Issue 13's SigLIP ablations at equal steps: the shipped config against hard negatives, the edge shape stem
the choice of stem (linear patches or convolutions) and max pooling over patch tokens,
each scored by `vision_lm.demo_vision_report` (zero-shot on seen pairs, the validation pair and the test's
held-out pairs, plus the colour/shape probes).

python benchmarks/vision_composition.py --data data/shapes --steps 1000 --seeds 1337 1 2 --out runs/composition

Each variant trains in its own `vision-lm fit` process, in turn (never two at once, so a busy machine
slows them alike), with the same seed, data and step budget; `uptime` is printed before and after each
run, because its wall time says nothing when other jobs share the cores. Results: one report per run
under --out, and a summary table on stdout for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {
    "shipped": [],
    "hard negatives": ["--model.init_args.hard_negatives", "true"],
    # every hard negative a shape change: in a batch, colours alone tell the captions apart, shape rarely matters
    "shape negatives": [
        "--model.init_args.hard_negatives",
        "true",
        "--model.init_args.hard_negative_groups",
        "{shape: [circle, diamond, square, triangle]}",
    ],
    "shape stem": ["--model.init_args.config.vision.shape_stem", "true"],
    # vision.stem (BENCHMARKS.md issue 13): the linear patchifier, convolutions, or colour and outline apart
    "patch stem": ["--model.init_args.config.vision.stem", "patch"],
    "conv stem": ["--model.init_args.config.vision.stem", "conv"],
    "factored stem": ["--model.init_args.config.vision.stem", "factored"],
    "max pooling": ["--model.init_args.config.vision.pooling", "max"],  # vision.pooling
    # the training-only colours that fill the hue circle (shapes_style.EXTRA_COLORS)
    "extra colours": ["--data.stream_diversity", "{extra_colors: true}"],
    "text mean pooling": ["--model.init_args.config.text.pooling", "mean"],  # text.pooling
}
"""A variant is options joined by ", " (e.g. "extra colours, factored stem, max pooling"): their flags together."""


def variant_args(name: str) -> list[str]:
    parts = name.split(", ")
    unknown = [p for p in parts if p not in OPTIONS]
    if unknown:
        raise SystemExit(f"--variants: unknown option {unknown[0]!r} (options: {', '.join(OPTIONS)})")
    return [flag for p in parts for flag in OPTIONS[p]]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(name: str, seed: int, args) -> tuple[float, str]:
    """Fit one variant, then report it; (fit wall seconds, report text)."""
    folder = Path(args.out) / f"{re.sub(r'[^a-z]+', '_', name)}-{seed}"
    fit = [sys.executable, "-m", "vision_lm.cli", "fit", "-c", "configs/vision/siglip-shapes.yaml",
           "--data.data_dir", args.data, "--trainer.default_root_dir", str(folder), "--seed_everything", str(seed),
           "--trainer.max_steps", str(args.steps), "--trainer.max_time", "00:02:00:00",
           "--trainer.val_check_interval", str(args.steps), "--trainer.enable_progress_bar", "false",
           *variant_args(name)]  # fmt: skip
    print(f"[{name}, seed {seed}] {uptime()}", flush=True)
    start = time.perf_counter()
    subprocess.run(fit, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    report = subprocess.run(
        [sys.executable, "-m", "vision_lm.demo_vision_report", "--data", args.data, "--siglip", str(folder / "siglip-tiny")],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    (folder / "report.txt").write_text(report)
    print(f"[{name}, seed {seed}] fit {wall:.0f} s; {uptime()}\n{report}", flush=True)
    return wall, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", default="data/shapes", help="a make-shapes folder (version 2: the stream trains)"
    )
    p.add_argument("--steps", type=int, default=1000, help="training steps of every run (default 1000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337], help="seeds (default 1337)")
    p.add_argument(
        "--variants", nargs="+", default=["shipped", "hard negatives", "shape stem", "max pooling"],
        help=f"options joined by ', ' per variant; options: {', '.join(OPTIONS)}",
    )  # fmt: skip
    p.add_argument("--out", default="runs/composition", help="run folders and reports")
    args = p.parse_args()
    for name in args.variants:
        variant_args(name)  # every name checked before the first run
    rows = []
    for seed in args.seeds:
        for name in args.variants:
            _, report = run(name, seed, args)
            zero_shot = re.search(r"SigLIP zero-shot accuracy\s+(.*)", report)
            shape = re.search(r"SigLIP shape probe\s+(.*)", report)
            rows.append((name, seed, zero_shot and zero_shot.group(1), shape and shape.group(1)))
    print("| variant | seed | zero-shot seen / val pair / test | shape probe seen / val pair / test |")
    print("|---|---:|---|---|")
    for name, seed, zs, sp in rows:
        print(f"| {name} | {seed} | {' / '.join((zs or '').split())} | {' / '.join((sp or '').split())} |")


if __name__ == "__main__":
    main()
