"""Safe checkpoint reading for the light commands (generate, caption, zero-shot, export-hf).

Lightning `.ckpt` files are torch pickles; `torch.load(weights_only=True)` only rebuilds
tensors and plain containers, so a malicious checkpoint cannot run code. Our systems store
their model config and tokenizer as plain dicts for exactly this reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from shared.errors import UserError


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a Lightning checkpoint with weights_only=True; a clear error for bad files."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a checkpoint, or an object weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{p}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{p}: not a Lightning checkpoint (no state_dict)")
    return ckpt


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
