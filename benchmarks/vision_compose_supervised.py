"""Issue 13: does the image tower compose? Told colour and shape directly, is shape read right on pairs it never saw?

The first 4,000 one-shape scenes of the training stream (data seed 7; held-out pairs never appear) train
siglip-tiny's ViT with two linear heads on its pooled vector, colour and shape (cross-entropy each),
batch 64, AdamW lr 1e-3, one thread. Every 100 steps the shape head is scored on canonical one-shape
scenes (exact colours and radii, white background): 150 of seen pairs (validation split) and 150 of
the test's held-out pairs (green triangle, red square, blue circle). Chance is 0.25.

A tower whose shape features are tied to the colours each shape was drawn in scores high on seen pairs
and near zero on held-out ones; `--gray` (the image averaged over its channels, so colour cannot be
seen) shows what the same tower does when it cannot tie them.

python benchmarks/vision_compose_supervised.py --pooling max [--extra-colors] [--stem factored] [--gray]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from vision_lm.config import VisionConfig
from vision_lm.records import normalize
from vision_lm.shapes import describe, render
from vision_lm.shapes_scene import COLORS, SHAPES
from vision_lm.shapes_stream import ShapesStream
from vision_lm.shapes_style import EXTRA_COLORS, EXTRA_SHAPES, Diversity
from vision_lm.vit import VisionTower

ALL_COLOURS, ALL_SHAPES = [*COLORS, *EXTRA_COLORS], [*SHAPES, *EXTRA_SHAPES]


def pixels_of(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def train_set(seed: int, n: int, div: Diversity):
    """The first n one-shape stream scenes: normalised pixels, colour index, shape index."""
    stream = ShapesStream(seed, 64, 10**9, div)
    found = stream.one_shape_scenes(n)
    xs = [stream[k][0] for k, _ in found]
    colours = [ALL_COLOURS.index(shape.color) for _, shape in found]
    shapes = [ALL_SHAPES.index(shape.shape) for _, shape in found]
    return normalize(torch.stack(xs)), torch.tensor(colours), torch.tensor(shapes)


def eval_set(seed: int, split: str, n: int, held_out: bool):
    """n canonical one-shape scenes of `split` whose pair is held out (or not): pixels, shape index."""
    xs, shapes, i = [], [], 0
    while len(xs) < n:
        scene, background, meta = describe(seed, split, i, 64)
        i += 1
        if len(scene) == 1 and meta["held_out"] == held_out:
            xs.append(pixels_of(render(scene, 64, background)))
            shapes.append(ALL_SHAPES.index(scene[0].shape))
    return normalize(torch.stack(xs)), torch.tensor(shapes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pooling", choices=["map", "max"], default="max")
    p.add_argument("--stem", choices=["patch", "conv", "factored"], default="patch")
    p.add_argument("--extra-colors", action="store_true", help="the training-only colours in the stream")
    p.add_argument("--extra-shapes", action="store_true", help="the training-only shapes in the stream")
    p.add_argument("--gray", action="store_true", help="the tower sees the channel mean only")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--data-seed", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    div = Diversity(extra_colors=args.extra_colors, extra_shapes=args.extra_shapes)
    x, colour, shape = train_set(args.data_seed, 4000, div)
    seen = eval_set(args.data_seed, "val", 150, held_out=False)
    held = eval_set(args.data_seed, "test", 150, held_out=True)
    pooling = "map" if args.pooling == "map" else "none"
    tower = VisionTower(VisionConfig(stem=args.stem, pooling=pooling))
    colour_head, shape_head = torch.nn.Linear(128, len(ALL_COLOURS)), torch.nn.Linear(128, len(ALL_SHAPES))
    params = [*tower.parameters(), *colour_head.parameters(), *shape_head.parameters()]
    opt = torch.optim.AdamW(params, 1e-3)

    def embed(images: torch.Tensor) -> torch.Tensor:
        if args.gray:
            images = images.mean(1, keepdim=True).expand_as(images)
        h = tower(images)
        return h.amax(1) if args.pooling == "max" else h

    def accuracy(images: torch.Tensor, truth: torch.Tensor) -> float:
        with torch.no_grad():  # among the four named shapes
            return (shape_head(embed(images))[:, : len(SHAPES)].argmax(1) == truth).float().mean().item()

    start = time.perf_counter()
    for step in range(args.steps + 1):
        i = torch.randint(0, len(x), (64,))
        e = embed(x[i])
        loss = F.cross_entropy(shape_head(e), shape[i]) + F.cross_entropy(colour_head(e), colour[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(
                f"step {step} loss {loss.item():.3f} shape accuracy: seen pairs {accuracy(*seen):.3f} "
                f"held-out pairs {accuracy(*held):.3f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
