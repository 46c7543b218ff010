"""Issue 13's decisive sanity check: can an image tower learn SHAPE from one-shape scenes in 200 steps,
told the shape directly (softmax over the 4 shapes)?

The first 3,000 one-shape scenes of the training stream (data seed 7; `--canonical`: exact colours, radii
and white backgrounds instead of the diverse look) are rendered once; 2,500 train, 500 are held out.
Batch 64 drawn with replacement, AdamW lr 1e-3, no warmup, no clipping, 200 steps; the held-out accuracy
is printed every 50 steps (chance 0.25).

Towers: `cnn` (3 x [3x3 conv, ReLU, 2x2 max pool], 16-32-64 channels, global max pool: 24k parameters),
or siglip-tiny's ViT (`vision_lm.vit.VisionTower`, 1.0M parameters) with `--stem patch|conv` and its
pooling (`--pooling map`: SigLIP's attention pooling; `max`: max over the patch tokens). The CNN is built
first in every run, so every variant draws its initialisation from the same random stream.

If the CNN learns shape and the ViT does not, the pixels are fine and the tower is what is slow.

python benchmarks/vision_shape_single.py --tower vit --stem patch --pooling map
"""

from __future__ import annotations

import argparse

import torch

from vision_lm.config import VisionConfig
from vision_lm.records import normalize
from vision_lm.shapes_scene import SHAPES
from vision_lm.shapes_stream import ShapesStream
from vision_lm.shapes_style import CANONICAL
from vision_lm.vit import VisionTower


class MaxPool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(1)  # (B, N, D) -> (B, D)


def one_shape_scenes(data_seed: int, n: int, canonical: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n one-shape scenes of the stream -> pixels (n, 3, 64, 64) in [-1, 1], shape index (n,)."""
    stream = ShapesStream(data_seed, 64, 10**9, CANONICAL if canonical else None)
    found = stream.one_shape_scenes(n)
    pixels, labels = [stream[k][0] for k, _ in found], [SHAPES.index(shape.shape) for _, shape in found]
    return normalize(torch.stack(pixels)), torch.tensor(labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tower", choices=["cnn", "vit"], default="vit")
    p.add_argument("--stem", choices=["patch", "conv"], default="patch")
    p.add_argument("--pooling", choices=["map", "max"], default="map")
    p.add_argument("--canonical", action="store_true")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--data-seed", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x, y = one_shape_scenes(args.data_seed, 3000, args.canonical)
    x_train, y_train, x_test, y_test = x[:2500], y[:2500], x[2500:], y[2500:]
    relu, pool = torch.nn.ReLU, torch.nn.MaxPool2d
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), relu(), pool(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), relu(), pool(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), relu(),
        torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, len(SHAPES)),
    )  # fmt: skip
    if args.tower == "vit":
        cfg = VisionConfig(stem=args.stem, pooling="map" if args.pooling == "map" else "none")
        net = torch.nn.Sequential(
            VisionTower(cfg),
            *([MaxPool()] if args.pooling == "max" else []),
            torch.nn.Linear(cfg.dim, len(SHAPES)),
        )
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    for step in range(args.steps + 1):
        i = torch.randint(0, len(x_train), (64,))
        loss = torch.nn.functional.cross_entropy(net(x_train[i]), y_train[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            with torch.no_grad():
                acc = (net(x_test).argmax(1) == y_test).float().mean().item()
            print(f"step {step} loss {loss.item():.3f} held-out shape accuracy {acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
