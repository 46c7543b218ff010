"""Render shapes scenes with Pillow and write the data set as a Hugging Face imagefolder.

Layout written by `make_shapes(out_dir, ...)` (and `vision-lm make-shapes`):

    out_dir/dataset_info.json          seed, split sizes, colours, shapes, held-out labels, version
    out_dir/{train,val,test}/000000.png ...
    out_dir/{train,val,test}/metadata.jsonl

Each metadata line: {"file_name", "text" (caption), "question", "answer", "label"
("<colour> <shape>" of the largest shape), "held_out" (true when the scene shows a pair that
training never shows), "background" (RGB), "scene" (list of shapes: shape, color, size, x, y,
radius, rgb)}, so `datasets.load_dataset("imagefolder", data_dir=out_dir)` reads it.

What each split holds:
- train: diverse scenes (`shapes_style.Diversity()`: hues and tints, radii, backgrounds), never a
  pair of `shapes_scene.NOT_IN_TRAINING`. Image i is item i of the endless training stream
  (`vision_lm/shapes_stream.py`), so the folder is that stream's first `n_train` scenes.
- val: canonical look (the exact colours, radii, white background); even images show pairs seen
  in training, odd images one `VAL_HELD_OUT` pair ("held_out": true), for model selection.
- test: canonical look, each scene with one `HELD_OUT` pair; byte-identical to version 1's images.

Determinism: image i of a split draws everything from `random.Random("shapes-v1-<seed>-
<split>-<i>")`, so the same arguments give byte-identical files, and a larger
`--n-train` keeps the first images unchanged.

Crash safety: everything is written into the sibling `out_dir.tmp-<pid>`, with
`dataset_info.json` last, then renamed onto `out_dir` in one step. A killed run leaves
only the temporary folder (removed by the next run once its process is gone), never an
`out_dir` that looks complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from shared.errors import UserError
from vision_lm.shapes_questions import pick_question
from vision_lm.shapes_scene import (
    COLORS,
    HELD_OUT,
    RNG_KEY,
    SHAPES,
    SIZES,
    VAL_HELD_OUT,
    VERSION,
    Shape,
    caption,
    class_names,
    held_out_in,
    label,
    radius_px,
    sample_scene,
    scene_to_json,
)
from vision_lm.shapes_style import CANONICAL, WHITE, Diversity, draw_background

SPLITS = ("train", "val", "test")
BACKGROUND = WHITE
MIN_IMAGE_SIZE = 16
SUPERSAMPLE = 4
"""Draw at 4x and average 4x4 blocks: smooth edges, while the inside keeps its exact colour."""
INFO_FILE = "dataset_info.json"


def render(
    scene: Sequence[Shape], image_size: int, background: tuple[int, int, int] = BACKGROUND
) -> Image.Image:
    """Draw a scene on a plain background; each shape fits inside its `radius` circle.

    Pixel (x, y) of the result covers the 4x4 block whose centre is the shape centre,
    so the pixel at a shape's `(x, y)` has exactly the shape's colour (the tests check;
    a ring's centre is background, its band at 0.65 r has the colour).
    """
    f = SUPERSAMPLE
    img = Image.new("RGB", (image_size * f, image_size * f), background)
    draw = ImageDraw.Draw(img)
    for s in scene:
        cx, cy, r, fill = (s.x + 0.5) * f, (s.y + 0.5) * f, s.radius * f, s.fill
        if s.shape == "circle":
            rc = 0.85 * r  # a full-radius disc would look much heavier than the others
            draw.ellipse([cx - rc, cy - rc, cx + rc, cy + rc], fill=fill)
        elif s.shape == "square":
            h = 0.72 * r  # half side; corners reach ~r
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif s.shape == "triangle":  # equilateral, point up, centroid at (cx, cy)
            half_base = r * 3**0.5 / 2
            draw.polygon(
                [(cx, cy - r), (cx + half_base, cy + r / 2), (cx - half_base, cy + r / 2)], fill=fill
            )
        elif s.shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)], fill=fill)
        elif s.shape == "cross":  # a plus sign (training-only shape)
            a, w = 0.85 * r, 0.3 * r
            draw.rectangle([cx - a, cy - w, cx + a, cy + w], fill=fill)
            draw.rectangle([cx - w, cy - a, cx + w, cy + a], fill=fill)
        elif s.shape == "ring":  # training-only: a disc with a background hole
            ro, ri = 0.85 * r, 0.45 * r
            draw.ellipse([cx - ro, cy - ro, cx + ro, cy + ro], fill=fill)
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=background)
        else:
            raise ValueError(f"unknown shape {s.shape!r}")
    return img.reduce(f)


def scene_kind(split: str, index: int) -> str:
    """Which scenes a split draws (module docstring): val alternates seen and held-out pairs."""
    if split == "val":
        return "val_held_out" if index % 2 else "train"
    return "test" if split == "test" else "train"


def example(
    seed: int, split: str, index: int, image_size: int, diversity: Diversity | None = None
) -> tuple[Image.Image, dict]:
    """Image `index` of `split`: the rendered image and its metadata line (without file name).

    diversity: how training scenes vary (None: `Diversity()`); val and test are always canonical.
    """
    scene, background, meta = describe(seed, split, index, image_size, diversity)
    return render(scene, image_size, background), meta


def describe(
    seed: int, split: str, index: int, image_size: int, diversity: Diversity | None = None
) -> tuple[list[Shape], tuple[int, int, int], dict]:
    """`example` without drawing: (scene, background, metadata line); cheap, for texts alone."""
    rng = random.Random(f"{RNG_KEY}-{seed}-{split}-{index}")
    div = (diversity or Diversity()) if split == "train" else CANONICAL
    scene = sample_scene(rng, image_size, scene_kind(split, index), div)
    background = draw_background(rng, div)
    question, answer = pick_question(scene, rng)
    meta = {
        "text": caption(scene),
        "question": question,
        "answer": answer,
        "label": label(scene),
        "held_out": bool(held_out_in(scene)),
        "background": list(background),
        "scene": scene_to_json(scene),
    }
    return scene, background, meta


def dataset_info(n: dict[str, int], seed: int, image_size: int) -> dict:
    """The contents of `dataset_info.json`; equal dicts mean an identical folder."""
    return {
        "name": "shapes",
        "version": VERSION,
        "seed": seed,
        "image_size": image_size,
        "splits": dict(n),
        "colors": {name: list(rgb) for name, rgb in COLORS.items()},
        "shapes": list(SHAPES),
        "sizes": {size: radius_px(size, image_size) for size in SIZES},
        "held_out": list(HELD_OUT),
        "val_held_out": list(VAL_HELD_OUT),
        "train_diversity": Diversity().to_dict(),
        "classes": class_names(),
    }


def read_info(out_dir: str | os.PathLike) -> dict | None:
    """The `dataset_info.json` of a complete folder, or None if there is none."""
    path = Path(out_dir) / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); delete the folder or pass --force") from e


def _write_split(folder: Path, split: str, n: int, seed: int, image_size: int, bar: tqdm) -> None:
    folder.mkdir(parents=True)
    width = max(6, len(str(n - 1)))
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as meta_file:
        for i in range(n):
            img, meta = example(seed, split, i, image_size)
            name = f"{i:0{width}d}.png"
            img.save(folder / name, format="PNG")  # Pillow writes no timestamp: bytes are reproducible
            meta_file.write(json.dumps({"file_name": name, **meta}) + "\n")
            bar.update(1)


def _remove_stale_temps(out_dir: Path) -> None:
    """Delete `out_dir.tmp-<pid>` and `out_dir.old-<pid>` folders whose process no longer runs (killed runs)."""
    stale = [*out_dir.parent.glob(f"{out_dir.name}.tmp-*"), *out_dir.parent.glob(f"{out_dir.name}.old-*")]
    for tmp in stale:
        pid = tmp.name.rsplit("-", 1)[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def check_args(n_train: int, n_val: int, n_test: int, image_size: int) -> None:
    """Raise `UserError` naming the flag of the first bad argument."""
    for flag, value in (("--n-train", n_train), ("--n-val", n_val), ("--n-test", n_test)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    if image_size < MIN_IMAGE_SIZE:
        raise UserError(f"--image-size must be >= {MIN_IMAGE_SIZE} pixels, got {image_size}")


def make_shapes(
    out_dir: str | os.PathLike,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 200,
    seed: int = 0,
    image_size: int = 64,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write the shapes data set to `out_dir` (layout in the module docstring); return its path.

    A complete folder made with the same arguments is left alone ("already exists, up to
    date"); one made with the same arguments by an older `VERSION` is remade (so `make
    demo-vision` keeps working after an upgrade). A folder made with other arguments is
    replaced only with `force=True`; a non-empty folder that is not a shapes data set is
    never deleted.
    """
    check_args(n_train, n_val, n_test, image_size)
    out_dir = Path(out_dir)
    n = {"train": n_train, "val": n_val, "test": n_test}
    info = dataset_info(n, seed, image_size)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a folder")
    old_info = read_info(out_dir)
    if old_info == info:
        print(f"{out_dir} already exists, up to date")
        return out_dir
    same_args = old_info is not None and all(
        old_info.get(k) == info[k] for k in ("splits", "seed", "image_size")
    )
    if same_args and old_info.get("version") != VERSION:  # our own data from an older generator: remake it
        print(
            f"{out_dir} was made by make-shapes version {old_info.get('version')}; remaking it (version {VERSION})"
        )
    elif old_info is not None and not force:
        raise UserError(
            f"--out {out_dir} holds a shapes data set made with other arguments; pass --force to replace it"
        )
    if old_info is None and out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(
            f"--out {out_dir} is a non-empty folder that is not a shapes data set; choose another"
        )

    _remove_stale_temps(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tqdm(total=sum(n.values()), desc="make-shapes", unit="img", disable=not progress) as bar:
            for split in SPLITS:
                _write_split(tmp / split, split, n[split], seed, image_size, bar)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():  # empty, or a shapes set replaced under force: move aside, swap, delete
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(
        f"wrote {sum(n.values())} images to {out_dir} (test pairs, never in train or val: "
        f"{', '.join(HELD_OUT)}; validation's held-out pair, never in train: {', '.join(VAL_HELD_OUT)})"
    )
    return out_dir
