"""Rebuild a `Llama` (and its tokenizer) from a checkpoint alone, safely."""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.train.checkpoint import load_state_strict, read_checkpoint, submodule_state
from shared.train.finetune import load_adapters
from text_lm.config import LlamaConfig
from text_lm.model import Llama


def model_from_checkpoint(path: str | Path) -> tuple[Llama, Tokenizer | None]:
    """The model (LoRA adapters unmerged: `shared.nn.lora.merge_lora` folds them) and its tokenizer."""
    ckpt = read_checkpoint(path)
    kind = ckpt.get("model_type", "llama")  # text checkpoints written before the type was stored: none
    if kind != "llama":
        raise UserError(f"{path}: a {kind} checkpoint (vision-lm), not a text-lm one")
    cfg = ckpt.get("model_config") or ckpt.get("hyper_parameters", {}).get("config")
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: no model config stored in the checkpoint")
    try:
        config = LlamaConfig.from_dict(cfg)
    except (TypeError, UserError) as e:
        raise UserError(f"{path}: not a text-lm checkpoint ({e})") from None
    model = Llama(config)
    if "finetune" in ckpt:  # LoRA: base weights from the base it names (by hash), then the adapters
        load_adapters(model, ckpt, load_model_weights, str(path))
    else:
        load_state_strict(model, submodule_state(ckpt), str(path))
    tok = Tokenizer.from_dict(ckpt["tokenizer"], source=str(path)) if "tokenizer" in ckpt else None
    return model.eval(), tok


def load_model_weights(model: Llama, path: str | Path) -> None:
    """Fine-tuning: copy weights from a .ckpt or an export-hf folder into `model` (shapes must match)."""
    p = Path(path)
    if p.is_dir():
        from text_lm.hf_convert import load_hf

        state = load_hf(p).state_dict()
    else:
        state = submodule_state(read_checkpoint(p))
    load_state_strict(model, state, str(p))
