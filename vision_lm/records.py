"""Where image-text pairs come from: an imagefolder on disk or a Hugging Face `datasets` dataset.

A data folder (`data.data_dir`) is one of:
- an imagefolder (ARCHITECTURE.md section 3): `DIR/{train,val,test}/metadata.jsonl`, one JSON
  object per line with `file_name` and `text` (caption), optionally `question`, `answer`,
  `label` (the class zero-shot accuracy scores), `held_out` and `scene` (the shapes set writes
  all of them), images beside it. Without any `label` field, images kept in class folders
  (`file_name` "cat/001.jpg") take the folder name as label, as `datasets`' imagefolder does,
  when a split has at least two such folders;
- a `datasets.DatasetDict` saved with `save_to_disk`, with an image column and a text column;
- a dataset name on the Hugging Face hub (when online), e.g. `owner/name`.

Images come as real folders hold them: any size, any Pillow mode (L, I;16 scans, P, RGBA, CMYK)
to RGB, turned upright by their EXIF orientation, transparency onto white.

Reading never crashes on bad data: a metadata line that is not JSON, names a missing file
or has an empty caption is skipped and counted (`Split.skipped`); unreadable images are
found when the images are decoded (`vision_lm/image_dataset.py`). A folder without metadata is an
error naming it.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps

from shared.errors import UserError

SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
"""What Pillow raises for truncated, corrupt or non-image files (UnidentifiedImageError is an OSError)."""


@dataclass(slots=True)
class Record:
    """One image-text pair; the same image may appear in several records (several captions)."""

    image: str | int
    """Image file path, or row index into a `datasets` split."""
    text: str = ""
    question: str = ""
    answer: str = ""
    label: str | None = None
    """Class name for zero-shot classification, if the data has one."""
    single: bool = True
    """The label names the whole image (the shapes set: a one-shape scene), so zero-shot may use it."""
    held_out: bool = False
    """The image shows something training never shows (the shapes set's held-out colour-shape pairs)."""


@dataclass
class Split:
    records: list[Record]
    skipped: Counter = field(default_factory=Counter)
    """Reason -> lines skipped."""
    dataset: object | None = None
    """The `datasets.Dataset` the `int` images index into (None for an imagefolder)."""


def required_fields(mode: str) -> tuple[str, ...]:
    return ("question", "answer") if mode == "vqa" else ("text",)


def _record(image, row: dict, text_field: str) -> Record:
    label = row.get("label")
    scene = row.get("scene")
    return Record(
        image=image,
        text=str(row.get(text_field) or "").strip(),
        question=str(row.get("question") or "").strip(),
        answer=str(row.get("answer") or "").strip(),
        label=str(label) if label is not None and str(label).strip() else None,
        single=not isinstance(scene, list) or len(scene) == 1,
        held_out=row.get("held_out") is True,
    )


def _keep(rec: Record, mode: str, skipped: Counter) -> bool:
    for name in required_fields(mode):
        if not getattr(rec, name):
            skipped["empty caption" if name == "text" else f"empty {name}"] += 1
            return False
    return True


def read_imagefolder_split(split_dir: Path, mode: str, text_field: str = "text") -> Split:
    """Records of one imagefolder split (see the module docstring for what is skipped)."""
    meta = split_dir / "metadata.jsonl"
    if not meta.is_file():
        raise UserError(
            f"{split_dir}: no metadata.jsonl (an imagefolder split needs one JSON line per image with "
            f"'file_name' and '{text_field}')"
        )
    records, skipped, folders = [], Counter(), []
    with open(meta, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped["malformed metadata line"] += 1
                continue
            if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
                skipped["line without file_name"] += 1
                continue
            path = split_dir / row["file_name"]
            if not path.is_file():
                skipped["missing image file"] += 1
                continue
            rec = _record(str(path), row, text_field)
            if _keep(rec, mode, skipped):
                records.append(rec)
                folders.append(PurePosixPath(row["file_name"]).parent.name if "label" not in row else None)
    if folders and all(folders) and len(set(folders)) >= 2:  # class folders and no label field
        for rec, name in zip(records, folders):
            rec.label = name
    return Split(records, skipped)


def read_hf_split(ds, mode: str, image_field: str, text_field: str) -> Split:
    """Records of one `datasets.Dataset`; images are decoded later, from the raw bytes, by us."""
    import datasets

    if image_field not in ds.column_names:
        raise UserError(
            f"dataset has no image column {image_field!r} (columns: {', '.join(ds.column_names)})"
        )
    if isinstance(ds.features[image_field], datasets.Image):
        ds = ds.cast_column(image_field, datasets.Image(decode=False))  # corrupt files: our error, not theirs
    label_feature = ds.features.get("label")
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    records, skipped = [], Counter()
    for i, row in enumerate(ds.select_columns([c for c in ds.column_names if c != image_field])):
        if names is not None and isinstance(row.get("label"), int) and row["label"] >= 0:
            row["label"] = names[row["label"]]
        rec = _record(i, row, text_field)
        if _keep(rec, mode, skipped):
            records.append(rec)
    return Split(records, skipped, dataset=ds)


def open_image(rec: Record, dataset=None, image_field: str = "image") -> Image.Image:
    """The record's image as a loaded PIL image; raises one of IMAGE_ERRORS when unreadable."""
    value = rec.image if dataset is None else dataset[rec.image][image_field]
    if isinstance(value, dict):  # datasets.Image(decode=False): {"bytes", "path"}
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    if isinstance(value, Image.Image):
        img = value
    elif value is None:
        raise ValueError("no image")
    else:
        img = Image.open(value)
    img.load()  # decode now: truncated files fail here, not later in a worker
    ImageOps.exif_transpose(img, in_place=True)  # a phone photo stored sideways, tagged "rotate 90"
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white (the shapes background), grayscale is replicated.

    16-bit and float greyscale ("I;16", "I", "F": scans, medical images) is scaled from its own
    min-max range to 0-255; a plain convert would clip nearly every pixel to white.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        img = Image.fromarray(np.rint(a).astype(np.uint8))  # mode L
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


def image_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """(3, size, size) uint8: RGB, resized (bicubic, aspect ratio not kept, as SigLIP) when needed."""
    img = to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float in [-1, 1]: (x / 255 - 0.5) / 0.5, SigLIP's mean and std."""
    return pixels.float().div_(127.5).sub_(1.0)


def load_image_file(path: str | Path, size: int) -> torch.Tensor:
    """One image file -> (1, 3, size, size) normalised; UserError naming the file if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: image not found")
    try:
        img = open_image(Record(str(p)))
    except IMAGE_ERRORS as e:
        raise UserError(f"{p}: not a readable image ({e})") from None
    return normalize(image_tensor(img, size))[None]


def _is_imagefolder(p: Path) -> bool:
    return any((p / s).is_dir() for names in SPLIT_ALIASES.values() for s in names)


def _read_info(path: Path) -> dict:
    """An imagefolder's optional dataset_info.json (class names, the data set's name), or {}."""
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); fix or delete it") from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def open_splits(data_dir: str, mode: str, image_field: str, text_field: str) -> tuple[dict[str, Split], dict]:
    """All splits found in `data_dir` ({"train", "val", "test"} keys) and its dataset_info.json (or {})."""
    p = Path(data_dir)
    saved = (p / "dataset_dict.json").is_file()  # save_to_disk also writes train/, val/ folders
    if p.is_dir() and not saved and _is_imagefolder(p):
        splits = {}
        for split, names in SPLIT_ALIASES.items():
            found = next((p / n for n in names if (p / n).is_dir()), None)
            if found is not None:
                splits[split] = read_imagefolder_split(found, mode, text_field)
        return splits, _read_info(p / "dataset_info.json")
    if p.is_dir() and not saved:
        raise UserError(
            f"{p}: no metadata found: expected an imagefolder ({p}/train/metadata.jsonl, val/, test/) "
            "or a datasets.DatasetDict saved with save_to_disk"
        )
    if p.exists() and not p.is_dir():
        raise UserError(f"{p}: not a folder (data.data_dir must name an imagefolder or a dataset)")
    import datasets

    if p.is_dir():
        dd = datasets.load_from_disk(str(p))
    elif p.parent.exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", data_dir):
        raise UserError(f"{p}: not found (for the shapes set: vision-lm make-shapes --out {p})")
    else:
        try:
            dd = datasets.load_dataset(data_dir)
        except Exception as e:  # offline, unknown name, no access: all the user's to fix
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(
                f"{data_dir}: not a local folder and not loadable from the hub ({first[:160]})"
            ) from None
    if not isinstance(dd, datasets.DatasetDict):
        raise UserError(
            f"{data_dir}: a single dataset without splits; save a DatasetDict with a 'train' split"
        )
    splits = {}
    for split, names in SPLIT_ALIASES.items():
        name = next((n for n in names if n in dd), None)
        if name is not None:
            splits[split] = read_hf_split(dd[name], mode, image_field, text_field)
    return splits, {}
