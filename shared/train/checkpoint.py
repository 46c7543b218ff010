"""Safe checkpoint reading for the light commands (generate, caption, zero-shot, export-hf).

Lightning `.ckpt` files are torch pickles; `torch.load(weights_only=True)` only rebuilds
tensors and plain containers, so a malicious checkpoint cannot run code. Our systems store
their model config and tokenizer as plain dicts for exactly this reason.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from shared.errors import UserError


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a Lightning checkpoint with weights_only=True; a clear error for bad files."""
    p = Path(path)
    ckpt = load_checked(p)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{p}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def load_checked(path: str | os.PathLike, map_location=None, weights_only: bool = True):
    """`torch.load` (on the CPU unless `map_location` says otherwise, weights only unless told) with
    every failure a UserError naming the file: missing, truncated, corrupt, or refused."""
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=weights_only)
    except Exception as e:  # a corrupt member, or an object weights_only refuses
        raise UserError(f"{path}: {load_error(e)}") from None


def check_checkpoint_file(path: str | os.PathLike) -> None:
    """Cheap checks before loading: the file exists and is a complete torch zip archive.

    A truncated file has lost the zip's central directory (it sits at the end), so this
    catches interrupted copies, downloads and saves without reading the whole file.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: checkpoint not found")
    if not p.is_file():
        raise UserError(f"{p}: is a folder, not a checkpoint file")
    if not zipfile.is_zipfile(p):
        raise UserError(f"{p}: not a readable checkpoint (truncated, or not a file written by torch.save)")


def load_error(e: Exception) -> str:
    """What went wrong in `torch.load(weights_only=True)`, in a few words."""
    refused = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(e))
    if refused:
        return (
            f"refused: it holds a Python object ({refused.group(1)}) that could run code when loaded; "
            "only tensors and plain data are accepted"
        )
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"not a readable checkpoint ({first[:160]})"


def submodule_state(ckpt: dict, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The state dict of one submodule of the LightningModule (keys without `prefix`)."""
    sd = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return {k.replace("_orig_mod.", ""): v for k, v in sd.items()}  # from torch.compile'd modules


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with one clear error line for missing/unexpected keys or shape mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"{source}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise UserError(
                f"{source}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
            )
    module.load_state_dict(state)
