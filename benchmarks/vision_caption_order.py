"""Caption order ablation (issue 13): the captioner trained on shape-first phrases, "a small triangle green",
instead of the shapes grammar's "a small green triangle", so the shape word is not predicted after (and
conditioned on) the colour word, which is where a held-out pair turns into a seen one.

    python benchmarks/vision_caption_order.py fit -c configs/vision/paligemma-shapes-compose.yaml \\
        --data.data_dir DATA --model.init_args.vision_init_from TOWER [any vision-lm fit flag]
    python benchmarks/vision_caption_order.py report --data DATA --captioner RUN

`fit` is `vision-lm fit` with the training stream's phrases reordered (`Shape.phrase`; the fixed val and test
folders keep the canonical captions, so the validation loss during training is not comparable). `report` is
`demo_vision_report`'s captioner rows (greedy, no re-rank: the re-rank searches the captioner's own token
order) with each generated caption put back into the canonical order before it is scored.
"""

from __future__ import annotations

import re
import sys

from vision_lm.shapes_scene import SHAPES, Shape

_SHAPE_FIRST = re.compile(r"\ba (small|large) (" + "|".join(SHAPES) + r") (\w+)")


def shape_first(shape: Shape) -> str:
    return f"a {shape.size} {shape.shape} {shape.color}"


def canonical(caption: str) -> str:
    """Shape-first phrases back to the grammar: "a small triangle green" -> "a small green triangle"."""
    return _SHAPE_FIRST.sub(r"a \1 \3 \2", caption)


def main(argv: list[str]) -> None:
    command, rest = argv[0], argv[1:]
    if command == "fit":
        from vision_lm.cli import main as vision_lm

        Shape.phrase = property(shape_first)  # before the DataLoader's workers fork
        vision_lm(["fit", *rest])
    elif command == "report":
        import vision_lm.caption_generate as generate
        from vision_lm.demo_vision_report import main as report

        plain = generate.caption_images
        generate.caption_images = lambda *a, **k: [canonical(c) for c in plain(*a, **k)]
        report([*rest, "--no-probes"])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} fit|report ... (got {command!r})")


if __name__ == "__main__":
    main(sys.argv[1:])
