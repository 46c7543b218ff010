"""Issue 13's sanity check: can siglip-tiny's ViT learn shape at all when told the shape directly?

The contrastive run leaves shape at chance in a linear probe after 200-500 steps. This trains the same
image tower (`vision_lm.vit.VisionTower`, the config's vision block) with a plain multi-label head on
the shapes stream: which of the 4 shapes (and, optionally, which of the 6 colours) the scene shows, binary
cross-entropy, AdamW, linear warmup then cosine, for a fixed step budget. It then scores the one-shape
images of the canonical val and test splits (argmax over shapes; the test ones are all held-out pairs).

If this reaches high shape accuracy in the same few hundred steps, the tower and the rendering are fine
and the contrastive signal is what starves shape; if it stays near chance, the tower or the pixels are.

python benchmarks/vision_shape_supervised.py --steps 200 --seed 0 [--patch 4] [--colour]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from vision_lm.config import VisionConfig
from vision_lm.records import normalize
from vision_lm.shapes import describe, render
from vision_lm.shapes_scene import COLORS, SHAPES
from vision_lm.shapes_stream import ShapesStream
from vision_lm.shapes_style import CANONICAL
from vision_lm.vit import VisionTower


def cnn(dim: int) -> torch.nn.Module:
    """A reference with the locality a ViT lacks: 4 x (3x3 conv, GELU, 2x2 max pool), global max pool."""
    layers, c_in = [], 3
    for c_out in (32, 64, 128, dim):
        layers += [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.GELU(), torch.nn.MaxPool2d(2)]
        c_in = c_out
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten())


class Pool(torch.nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1) if self.kind == "mean" else x.amax(1)  # (B, N, D) -> (B, D)


def batch(stream: ShapesStream, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes start..start+n -> pixels (n, 3, S, S) in [-1, 1], shape targets (n, 4), colour targets (n, 6)."""
    pixels, shapes, colours = [], [], []
    for k in range(start, start + n):
        px, _, _, _ = stream[k]
        scene = stream.scene(k)[0]
        pixels.append(px)
        shapes.append([float(any(s.shape == name for s in scene)) for name in SHAPES])
        colours.append([float(any(s.color == name for s in scene)) for name in COLORS])
    return normalize(torch.stack(pixels)), torch.tensor(shapes), torch.tensor(colours)


def eval_set(seed: int, split: str, n: int, image_size: int):
    """The one-shape images among the first n of a canonical split -> pixels, shape index, is-large."""
    pixels, labels, large = [], [], []
    for i in range(n):
        scene, background, _ = describe(seed, split, i, image_size)
        if len(scene) != 1:
            continue
        img = np.asarray(render(scene, image_size, background), dtype=np.uint8)
        pixels.append(torch.from_numpy(img.copy()).permute(2, 0, 1))
        labels.append(SHAPES.index(scene[0].shape))
        large.append(scene[0].size == "large")
    return normalize(torch.stack(pixels)), torch.tensor(labels), torch.tensor(large)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="model seed")
    p.add_argument("--data-seed", type=int, default=7)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--shape-stem", action="store_true")
    p.add_argument("--stem", default="patch", choices=["patch", "conv"])
    p.add_argument("--pooling", default="map", help="map, or mean / max over the patch tokens")
    p.add_argument(
        "--canonical", action="store_true", help="train on canonical scenes (no colour/size jitter, white)"
    )
    p.add_argument("--cnn", action="store_true", help="a plain 4-layer CNN instead of the ViT (data check)")
    p.add_argument("--colour", action="store_true", help="also predict the colours (a second head)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    size = 64
    cfg = VisionConfig(
        image_size=size,
        patch_size=args.patch,
        dim=args.dim,
        n_layers=args.layers,
        n_heads=4,
        shape_stem=args.shape_stem,
        stem=args.stem,
        pooling="map" if args.pooling == "map" else "none",
    )
    tower = cnn(args.dim) if args.cnn else VisionTower(cfg)
    head = torch.nn.Linear(args.dim, len(SHAPES) + len(COLORS))
    if args.pooling in ("mean", "max"):
        head = torch.nn.Sequential(Pool(args.pooling), head)
    params = [*tower.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=1e-4)
    stream = ShapesStream(args.data_seed, size, 10**9, CANONICAL if args.canonical else None)
    start = time.perf_counter()
    for step in range(args.steps):
        warm = min(1.0, (step + 1) / args.warmup)
        cos = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm * cos
        x, ys, yc = batch(stream, step * args.batch, args.batch)
        logits = head(tower(x))
        loss = shape_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, : len(SHAPES)], ys)
        if args.colour:
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(logits[:, len(SHAPES) :], yc)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(
                f"step {step} loss {loss.item():.4f} shape part {shape_loss.item():.4f} (chance 0.693)",
                flush=True,
            )
    tower.eval()
    out = {}
    with torch.no_grad():
        for split in ("val", "test"):
            x, y, large = eval_set(args.data_seed, split, 200, size)
            hit = (head(tower(x))[:, : len(SHAPES)].argmax(1) == y).float()
            out[split] = (hit.mean().item(), len(y))
            print(f"{split}: small {hit[~large].mean().item():.3f}, large {hit[large].mean().item():.3f}")
    print(
        f"patch {args.patch} dim {args.dim} layers {args.layers} lr {args.lr} steps {args.steps} seed {args.seed} "
        f"colour {args.colour} shape_stem {args.shape_stem} stem {args.stem} pooling {args.pooling} cnn {args.cnn}: shape acc one-shape val {out['val'][0]:.3f} (n={out['val'][1]}), "
        f"test (held-out pairs) {out['test'][0]:.3f} (n={out['test'][1]}); {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
