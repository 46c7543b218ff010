"""Where a captioner's image tower keeps each object: linear probes of shape, colour and size, per object, in
scenes of two or three shapes, on the tower's token states at every depth (issue 13's binding diagnosis).

python benchmarks/vision_object_probe.py --captioner CKPT --data data/shapes [--n-train 3000]

For each object the features are its patch tokens at one depth (0 = the stem's patch embeddings plus
positions, i = block i, the last after the final norm: `vision_feature_layers`' indices), taken two ways:
the token of the patch under the object's centre, and the feature-wise max over the patches its extent
covers. The probes (`vision_lm.evaluation.fit_linear_probe`) fit on objects of the first --n-train
multi-shape scenes of the training stream and score the seen-pair multi-shape scenes of the val folder.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vision_lm.checkpoint import captioner_from_checkpoint
from vision_lm.evaluation import fit_linear_probe
from vision_lm.records import normalize
from vision_lm.shapes_stream import ShapesStream
from vision_lm.shapes_style import Diversity

ATTRIBUTES = ("shape", "color", "size")


def object_features(tower, items, batch: int = 64) -> tuple[list[torch.Tensor], list[dict]]:
    """items: (uint8 pixels (3, S, S), scene objects) -> per depth and way (centre, box max) an (n_objects, D)
    tensor, in the order [centre_0 .. centre_L, box_0 .. box_L], and the objects."""
    cfg = tower.config
    g, p = cfg.image_size // cfg.patch_size, cfg.patch_size
    layers = list(range(cfg.n_layers + 1))
    centre, box, objects = [], [], []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        states = tower(normalize(torch.stack([px for px, _ in chunk])), layers)  # (B, N, D * (L + 1))
        states = states.unflatten(-1, (len(layers), cfg.dim))  # (B, N, L + 1, D)
        for b, (_, scene) in enumerate(chunk):
            for o in scene:
                cell = lambda y, x: min(y // p, g - 1) * g + min(x // p, g - 1)  # noqa: E731
                r, last = o["radius"], cfg.image_size - 1
                ys = range(max(0, o["y"] - r), min(last, o["y"] + r) + 1)
                xs = range(max(0, o["x"] - r), min(last, o["x"] + r) + 1)
                cells = sorted({cell(y, x) for y in ys for x in xs})
                centre.append(states[b, cell(o["y"], o["x"])])  # (L + 1, D)
                box.append(states[b, cells].amax(0))
                objects.append(o)
    ways = [torch.stack(centre), torch.stack(box)]  # (n, L + 1, D) each
    return [w[:, d] for w in ways for d in layers], objects


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captioner", required=True, help="a captioner .ckpt")
    ap.add_argument("--data", required=True, help="a make-shapes folder")
    ap.add_argument(
        "--n-train", type=int, default=3000, help="multi-shape stream scenes to fit the probes on"
    )
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tower = captioner_from_checkpoint(args.captioner).model.vision
    size = tower.config.image_size
    info = json.loads((Path(args.data) / "dataset_info.json").read_text())
    stream = ShapesStream(info["seed"], size, 10**9, Diversity(**info["train_diversity"]))
    train, k = [], 0
    while len(train) < args.n_train:
        scene, _, meta = stream.scene(k)
        if len(scene) >= 2:
            train.append((stream[k][0], meta["scene"]))
        k += 1
    val = []
    for line in (Path(args.data) / "val" / "metadata.jsonl").read_text().splitlines():
        m = json.loads(line)
        if len(m["scene"]) >= 2 and not m["held_out"]:
            img = Image.open(Path(args.data) / "val" / m["file_name"]).convert("RGB").resize((size, size))
            val.append(
                (torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1), m["scene"])
            )
    x_train, o_train = object_features(tower, train)
    x_val, o_val = object_features(tower, val)
    n = tower.config.n_layers + 1
    print(
        f"{len(o_train)} training objects ({args.n_train} stream scenes), {len(o_val)} val objects (seen pairs)\n"
    )
    print("| features | depth | " + " | ".join(ATTRIBUTES) + " |\n|---|---|" + "---|" * len(ATTRIBUTES))
    for j, (xt, xv) in enumerate(zip(x_train, x_val)):
        accs = []
        for key in ATTRIBUTES:
            classes = sorted({o[key] for o in o_train})
            y = torch.tensor([classes.index(o[key]) for o in o_train])
            pred = fit_linear_probe(xt, y, len(classes))(xv)
            accs.append(np.mean([classes[int(q)] == o[key] for q, o in zip(pred, o_val)]))
        depth = j % n
        name = (
            "stem + positions"
            if depth == 0
            else f"block {depth}" + (" (final norm)" if depth == n - 1 else "")
        )
        way = "centre patch" if j < n else "max over the object's patches"
        print(f"| {way} | {name} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")


if __name__ == "__main__":
    main()
