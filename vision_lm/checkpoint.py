"""Rebuild a `SigLIP` or a `PaliGemma` (with its tokenizer) from a checkpoint alone, safely.

`shared.train.checkpoint.read_checkpoint` loads with `torch.load(weights_only=True)`: tensors and
plain containers only, so a checkpoint cannot run code; a truncated or foreign file is a
`UserError` naming it. Every system's checkpoint names its kind (`"model_type"`: "siglip",
"paligemma", or "llama" for text-lm's; `shared/train/system.py`); SigLIP checkpoints written
before SigLIP stored its type carry none, so no type means SigLIP. A LoRA captioner checkpoint
holds its adapters alone and names its base by path and hash (`shared/train/finetune.py`): it is
rebuilt from that base (`load_captioner_weights`, also the `init_from` of a fine-tuning run).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from shared.errors import UserError
from shared.nn.lora import merge_lora
from shared.tokenizer import Tokenizer
from shared.train.checkpoint import load_state_strict, read_checkpoint, submodule_state
from shared.train.finetune import load_adapters
from vision_lm.caption_order import answer_order_of, order_of, readable, reorder
from vision_lm.config import SigLIPConfig, VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.siglip import SigLIP
from vision_lm.text_batch import AFTER_CAPTION_KEY


@dataclass
class Loaded:
    model: SigLIP
    tokenizer: Tokenizer | None
    templates: list[str] = field(default_factory=lambda: ["{}"])
    """Zero-shot prompt templates of the training data ("a small {}", "a large {}" for shapes)."""


@dataclass
class LoadedCaptioner:
    model: PaliGemma
    tokenizer: Tokenizer | None
    caption_order: str = "as_written"
    """The order its training captions put words in (`data.caption_order`; `readable` undoes it)."""

    answer_order: str = "as_written"
    """The order its training answers put a pair in (`caption_order.answer_order_of`)."""

    answer_after_caption: bool = False
    """Its answers follow a caption it writes first (`data.answer_after_caption`); `readable` drops it."""

    def readable(self, captions: list[str], prompts: list[str] | None = None) -> list[str]:
        """Generated captions in the grammar's order ("a small circle red" -> "a small red circle"); with
        `prompts` (one per text), the answers of "answer en ..." prompts too ("circle red" -> "red circle")."""
        if prompts is None:
            return reorder(captions, self.caption_order)
        return readable(captions, prompts, self.caption_order, self.answer_order, self.answer_after_caption)

    def own_order(self, captions: list[str]) -> list[str]:
        """Captions in the grammar's order -> in the captioner's own (the inverse of `readable`)."""
        return reorder(captions, self.caption_order)  # the swap is its own inverse


def model_type(ckpt: dict) -> str:
    """ "paligemma", "siglip" (also when the checkpoint names no type) or "llama" (a text-lm one)."""
    kind = ckpt.get("model_type")
    return kind if kind in LABELS else "siglip"


def _config_dict(ckpt: dict, path) -> dict:
    cfg = ckpt.get("model_config") or ckpt.get("hyper_parameters", {}).get("config")
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: no model config stored in the checkpoint")
    return cfg


LABELS = {"siglip": "SigLIP", "paligemma": "captioner (PaliGemma)", "llama": "text-lm (Llama)"}


def _checked_config(ckpt: dict, path, kind: str, config_cls):
    """The stored config of a `kind` checkpoint as `config_cls`; another kind or a bad config is one line."""
    if model_type(ckpt) != kind:
        raise UserError(f"{path}: a {LABELS[model_type(ckpt)]} checkpoint, not a {LABELS[kind]} one")
    try:
        return config_cls.from_dict(_config_dict(ckpt, path))
    except (TypeError, UserError) as e:
        raise UserError(f"{path}: not a {LABELS[kind]} checkpoint ({e})") from None


def _tokenizer(ckpt: dict, path) -> Tokenizer | None:
    return Tokenizer.from_dict(ckpt["tokenizer"], source=str(path)) if "tokenizer" in ckpt else None


def siglip_from_checkpoint(path: str | Path, ckpt: dict | None = None) -> Loaded:
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    model = SigLIP(_checked_config(ckpt, path, "siglip", SigLIPConfig))
    load_state_strict(model, submodule_state(ckpt), str(path))
    templates = ckpt.get("zero_shot_templates") or ["{}"]
    return Loaded(model.eval(), _tokenizer(ckpt, path), list(templates))


def captioner_from_checkpoint(path: str | Path, ckpt: dict | None = None) -> LoadedCaptioner:
    """The captioner and its tokenizer. A LoRA checkpoint (`finetune` key) is rebuilt from the base
    it names, hash checked, plus its adapters, unmerged (`shared.nn.lora.merge_lora` folds them)."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    model = PaliGemma(_checked_config(ckpt, path, "paligemma", PaliGemmaConfig))
    if "finetune" in ckpt:
        load_adapters(model, ckpt, load_captioner_weights, str(path))
    else:
        state = submodule_state(ckpt)
        state.setdefault("lm_head.weight", state.get("embed.weight"))  # tied: stored once or twice
        load_state_strict(model, state, str(path))
    after = bool(ckpt.get(AFTER_CAPTION_KEY, False))
    return LoadedCaptioner(model.eval(), _tokenizer(ckpt, path), order_of(ckpt), answer_order_of(ckpt), after)


def load_captioner_weights(model: PaliGemma, path: str | Path) -> None:
    """Fine-tuning (`init_from`) and LoRA bases: copy a whole captioner into `model`, from a `.ckpt`
    (a LoRA one merged) or an `export-hf` folder. Its config must equal `model.config` (name and
    `zero_init_projector`, which only sets the start of training, aside); an export folder's
    config.json resolves sizes ours may leave None, so there only the tensors' shapes are checked."""
    p = Path(path)
    if p.is_dir():
        from vision_lm.hf_paligemma import load_hf

        load_state_strict(model, load_hf(p).state_dict(), str(p))
        return
    base = captioner_from_checkpoint(p).model
    merge_lora(base)
    ours, theirs = _flat(model.config.to_dict()), _flat(base.config.to_dict())
    for key in ours:
        if key not in ("name", "zero_init_projector") and ours[key] != theirs.get(key):
            raise UserError(
                f"{p}: its {key} is {theirs.get(key)!r}, model.config.{key} is {ours[key]!r} "
                "(the config must describe the base captioner)"
            )
    load_state_strict(model, base.state_dict(), str(p))


def base_tokenizer(path: str | Path) -> Tokenizer | None:
    """The tokenizer a fine-tuning base was trained with: a `.ckpt`'s own, an export folder's
    bpe_tokenizer.json; None when it has none."""
    p = Path(path)
    if p.is_dir():
        return Tokenizer.load(p / "bpe_tokenizer.json") if (p / "bpe_tokenizer.json").is_file() else None
    return _tokenizer(read_checkpoint(p), p)


def use_base_tokenizer(dm, path: str | Path) -> None:
    """A fine-tuned captioner reads the ids its base learnt: the base's tokenizer replaces one the
    data (`CaptionData`) trained; a different one named by data.tokenizer is refused."""
    tok = base_tokenizer(path)
    if tok is None or (dm.tokenizer is not None and dm.tokenizer.sha256 == tok.sha256):
        return
    if dm.tokenizer is not None and not dm.tokenizer_trained:
        raise UserError(
            f"data.tokenizer differs from the tokenizer of model.init_from {path}; leave data.tokenizer unset"
        )
    dm.set_tokenizer(tok, trained=True)


def _flat(d: dict, prefix: str = "") -> dict:
    """{"decoder": {"dim": 128}} -> {"decoder.dim": 128}."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def vision_tower_state(path: str | Path, vision: VisionConfig) -> dict[str, torch.Tensor]:
    """The image tower's weights (MAP head excluded) of a SigLIP or captioner checkpoint, checked
    against `vision` (every field but `pooling` must agree; one the checkpoint predates takes its
    default)."""
    ckpt = read_checkpoint(path)
    saved = _config_dict(ckpt, path).get("vision")
    if not isinstance(saved, dict):
        raise UserError(f"{path}: no vision tower config in the checkpoint")
    try:
        saved = VisionConfig(**saved)
    except (TypeError, UserError) as e:  # a field this version does not know, or a bad value
        raise UserError(f"{path}: not a vision tower config ({e})") from None
    for f in dataclasses.fields(VisionConfig):
        ours, theirs = getattr(vision, f.name), getattr(saved, f.name)
        if f.name != "pooling" and ours != theirs:
            raise UserError(
                f"{path}: its vision.{f.name} is {theirs!r}, model.config.vision.{f.name} is {ours!r}"
            )
    return {
        k.removeprefix("vision."): v
        for k, v in submodule_state(ckpt).items()
        if k.startswith("vision.") and not k.startswith("vision.head.")
    }
