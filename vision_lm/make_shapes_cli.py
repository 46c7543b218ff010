"""`vision-lm make-shapes`: generate the synthetic shapes image-text data set.

Light on purpose: Pillow, numpy-free scene code and tqdm only, no torch or Lightning,
so the command starts in well under a second.
"""

from __future__ import annotations

import argparse

from shared.errors import ArgumentParser, exit_on_user_error
from vision_lm.shapes import make_shapes
from vision_lm.shapes_scene import HELD_OUT, VAL_HELD_OUT


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="vision-lm make-shapes",
        description=(
            "Draw 1-3 coloured shapes per image with captions and question/answer pairs that are true "
            "by construction, as a Hugging Face imagefolder (DIR/{train,val,test}/*.png + metadata.jsonl). "
            "Train images vary in hue, tint, size and background (they are the first scenes of the endless "
            "stream data.train_stream trains on); val and test keep one canonical look. "
            f"The test split holds out {', '.join(HELD_OUT)}: they never appear in train or val. "
            f"Odd val images show {', '.join(VAL_HELD_OUT)}, also never in train, for model selection."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--n-train", type=int, default=2000, metavar="N", help="training images (default 2000)")
    p.add_argument("--n-val", type=int, default=200, metavar="N", help="validation images (default 200)")
    p.add_argument("--n-test", type=int, default=200, metavar="N", help="test images (default 200)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same bytes")
    p.add_argument(
        "--image-size", type=int, default=64, metavar="PX", help="image side in pixels, >= 16 (default 64)"
    )
    p.add_argument("--force", action="store_true", help="replace a shapes folder made with other arguments")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    make_shapes(
        args.out,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        image_size=args.image_size,
        force=args.force,
        progress=not args.no_progress,
    )


if __name__ == "__main__":
    main()
