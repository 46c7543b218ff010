"""Rebuild a `SigLIP`, its tokenizer and its zero-shot templates from a checkpoint alone, safely.

`shared.checkpoint.read_checkpoint` loads with `torch.load(weights_only=True)`: tensors and
plain containers only, so a checkpoint cannot run code; a truncated or foreign file is a
`UserError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.checkpoint import load_state_strict, read_checkpoint, submodule_state
from shared.errors import UserError
from shared.tokenizer import Tokenizer
from vision_lm.config import SigLIPConfig
from vision_lm.siglip import SigLIP


@dataclass
class Loaded:
    model: SigLIP
    tokenizer: Tokenizer | None
    templates: list[str] = field(default_factory=lambda: ["{}"])
    """Zero-shot prompt templates of the training data ("a small {}", "a large {}" for shapes)."""


def siglip_from_checkpoint(path: str | Path) -> Loaded:
    ckpt = read_checkpoint(path)
    cfg = ckpt.get("model_config") or ckpt.get("hyper_parameters", {}).get("config")
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: no model config stored in the checkpoint")
    try:
        config = SigLIPConfig.from_dict(cfg)
    except (TypeError, UserError) as e:
        raise UserError(f"{path}: not a SigLIP checkpoint ({e})") from None
    model = SigLIP(config)
    load_state_strict(model, submodule_state(ckpt), str(path))
    tok = Tokenizer.from_dict(ckpt["tokenizer"], source=str(path)) if "tokenizer" in ckpt else None
    templates = ckpt.get("zero_shot_templates") or ["{}"]
    return Loaded(model.eval(), tok, list(templates))
