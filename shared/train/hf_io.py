"""The files of a Hugging Face export folder: `model.safetensors` + `config.json`, written atomically.

Every converter (`text_lm/hf_convert.py`, `vision_lm/hf_siglip.py`, `vision_lm/hf_paligemma.py`)
maps its config and renames its tensors (`shared/train/hf_names.py`); this module owns the
folder. Only safetensors and JSON are read: nothing in an export can run code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from shared.errors import UserError
from shared.io import atomic_path, write_json_atomic


def write_export(out_dir: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    """Write `tensors` to `model.safetensors` and `config` to `config.json` in `out_dir` (created)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json_atomic(out / "config.json", config)
    return out


def read_export(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of a folder written by `write_export` or a single-file `save_pretrained`."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise UserError(f"{f}: not found")
    try:
        return load_file(str(weights)), json.loads(cfg_file.read_text())
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: unreadable export ({e})") from None
