"""Contrastive decoding's alpha and plausibility beta for a captioner (issue 13), greedy captions only.

    python benchmarks/vision_contrast_sweep.py --data DATA --captioner RUN [--settings 0:0.1 0.5:0.1 1:0.1 ...]

Each setting ALPHA:BETA decodes every image of the report's three columns (`demo_vision_report`: seen,
val pair, test) with `caption_eval.captions_of(..., contrast=ALPHA, plausibility=BETA)` and prints exact-match
(one-object and several-object images apart) and held-out pair recall. Choose on the seen and val pair
columns; the test column is read once, after the choice (BENCHMARKS.md, "Contrastive decoding").
"""

from __future__ import annotations

import argparse

from vision_lm.caption_eval import caption_scores, captions_of
from vision_lm.checkpoint import captioner_from_checkpoint
from vision_lm.demo_vision_report import PARTS, checkpoint_of, load_part


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--captioner", required=True, help="run folder or .ckpt")
    p.add_argument(
        "--settings", nargs="+", default=["0:0.1", "0.5:0.1", "0.5:0.3", "1:0.1", "1:0.3", "2:0.3"]
    )
    args = p.parse_args()
    cap = captioner_from_checkpoint(checkpoint_of(args.captioner))
    size = cap.model.config.vision.image_size
    parts = {}
    for part in PARTS:
        got = load_part(args.data, part, size)
        if got is not None:
            recs, pixels, info = got
            parts[part] = (
                recs,
                pixels,
                list(info.get("val_held_out" if part == "val pair" else "held_out", [])),
            )
    print("| alpha | beta | " + " | ".join(f"{p}: exact (one / several), recall" for p in parts) + " |")
    print("|---|---|" + "---|" * len(parts))
    for setting in args.settings:
        alpha, beta = map(float, setting.split(":"))
        cells = []
        for recs, pixels, pairs in parts.values():
            captions = captions_of(cap, recs, pixels, contrast=alpha, plausibility=beta)
            sc = caption_scores(captions, recs, pairs)
            cells.append(
                f"{sc['caption_exact']:.3f} ({sc['caption_exact_one']:.2f} / {sc['caption_exact_several']:.2f}), "
                f"{sc['held_out_pair_recall']:.3f}"
            )
        print(f"| {alpha:g} | {beta:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
