"""Conversion between our `PaliGemma` and Hugging Face `transformers.PaliGemmaForConditionalGeneration`.

The layouts match one to one (the table `HF_NAMES`). The image tower's names are SigLIP's
(`hf_siglip.VISION_TOWER`, under `model.vision_tower.`); the projector is
`model.multi_modal_projector.linear`; the decoder is HF's `GemmaModel` under
`model.language_model.` with `attn_norm`/`mlp_norm` as `input_layernorm`/`post_attention_layernorm`.
The head is tied, so `lm_head.weight` is omitted on export (safetensors refuses shared tensors)
and flagged by `tie_word_embeddings`.

HF builds the same input: `image_token_index` placeholders (one per patch) before the text
ids, replaced by the projected patches; `token_type_ids` 0 on the image and prefix, 1 on
the suffix, give the prefix-LM mask. Its RoPE positions start at 1, ours at 0; rotary
attention depends only on distances, so logits agree to rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared.errors import UserError
from shared.nn.fused import split_sizes
from shared.train import hf_names
from shared.train.hf_io import read_export, write_export
from vision_lm.config import VisionConfig
from vision_lm.hf_siglip import VISION_TOWER, vision_hf_config
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig

# (ours, HF) of every exported tensor. HF nests the towers under `model.`: the image tower is
# SigLIP's (its table, under `model.vision_tower.` instead of `vision_model.`), the decoder a
# GemmaModel under `model.language_model.`. The tied `lm_head.weight` has no row: it is left
# out of both directions (`_untied`), HF ties it back from `embed_tokens`.
HF_NAMES = [
    *hf_names.nest(VISION_TOWER, "vision.", "model.vision_tower."),
    ("projector", "model.multi_modal_projector.linear"),
    ("embed", "model.language_model.embed_tokens"),
    *hf_names.nest(hf_names.DECODER_LAYER, "decoder.layers.{i}.", "model.language_model.layers.{i}."),
    ("decoder.norm", "model.language_model.norm"),
]


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` without `lm_head.weight`: the embedding itself, and safetensors refuses shared tensors."""
    return {k: v for k, v in state.items() if k != "lm_head.weight"}


def hf_config(c: PaliGemmaConfig, token_ids: dict[str, int] | None = None) -> dict:
    """config.json of a PaliGemmaForConditionalGeneration. token_ids may give our tokenizer's
    pad/bos/eos_token_id and image_token_index (else: the id just past the vocabulary, which HF
    maps to row 0 before replacing it with the image tokens)."""
    v, d, t = c.vision, c.decoder, c.transformer()
    ids = dict(token_ids or {})
    image_token = ids.pop("image_token_index", d.vocab_size)
    return {
        "model_type": "paligemma",
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "image_token_index": image_token,
        "vocab_size": d.vocab_size,
        "projection_dim": d.dim,
        "hidden_size": d.dim,
        "tie_word_embeddings": True,
        "dtype": "float32",
        "vision_config": {
            **vision_hf_config(v),
            "hidden_act": "gelu_pytorch_tanh",
            "attention_dropout": 0.0,
            "vision_use_head": False,
            "projection_dim": d.dim,
        },
        "text_config": {
            "model_type": "gemma",
            "vocab_size": d.vocab_size,
            "hidden_size": d.dim,
            "intermediate_size": t.hidden_dim,
            "num_hidden_layers": d.n_layers,
            "num_attention_heads": d.n_heads,
            "num_key_value_heads": d.n_kv_heads,
            "head_dim": t.head_dim,
            "hidden_act": "gelu_pytorch_tanh",
            "max_position_embeddings": t.max_seq_len,
            "rms_norm_eps": d.norm_eps,
            "rope_parameters": {"rope_type": "default", "rope_theta": d.rope_theta},
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": True,
            "use_bidirectional_attention": True,
            "pad_token_id": None,  # HF's defaults are ids of its own 257k-token vocabulary
            "bos_token_id": None,
            "eos_token_id": None,
            **ids,
        },
    }


def config_from_hf(cfg: dict) -> PaliGemmaConfig:
    """Our config from a PaliGemma config.json dict; what we cannot represent is a UserError."""
    if cfg.get("model_type") != "paligemma":
        raise UserError(f"config.json model_type must be 'paligemma', got {cfg.get('model_type')!r}")
    v, t = cfg.get("vision_config") or {}, cfg.get("text_config") or {}
    problems = []
    if t.get("model_type", "gemma") != "gemma":
        problems.append(f"text_config.model_type={t['model_type']!r} (only gemma: PaliGemma 1)")
    for name, sub in (("vision_config", v), ("text_config", t)):
        if sub.get("hidden_act", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu"):
            problems.append(f"{name}.hidden_act={sub['hidden_act']!r}")
    if v.get("vision_use_head", False):
        problems.append("vision_config.vision_use_head=true")
    if not cfg.get("tie_word_embeddings", True) or not t.get("tie_word_embeddings", True):
        problems.append("untied output head")
    if t.get("attention_bias", False):
        problems.append("attention biases")
    rope = t.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope_type={rope['rope_type']!r}")
    if problems:
        raise UserError("this PaliGemma config has no equivalent here: " + "; ".join(problems))
    dim = t.get("hidden_size", 2048)
    if cfg.get("projection_dim", dim) != dim:
        raise UserError(f"projection_dim={cfg['projection_dim']} must equal text hidden_size={dim}")
    vision = VisionConfig(
        image_size=v.get("image_size", 224),
        patch_size=v.get("patch_size", 14),
        dim=v.get("hidden_size", 1152),
        n_layers=v.get("num_hidden_layers", 27),
        n_heads=v.get("num_attention_heads", 16),
        hidden_dim=v.get("intermediate_size", 4304),
        norm_eps=v.get("layer_norm_eps", 1e-6),
        pooling="none",
    )
    n_image = vision.n_patches
    decoder = DecoderConfig(
        vocab_size=t.get("vocab_size", 257152),
        max_len=max(1, t.get("max_position_embeddings", 8192) - n_image),
        dim=dim,
        n_layers=t.get("num_hidden_layers", 18),
        n_heads=t.get("num_attention_heads", 8),
        n_kv_heads=t.get("num_key_value_heads", 1),
        head_dim=t.get("head_dim", 256),
        hidden_dim=t.get("intermediate_size", 16384),
        norm_eps=t.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", t.get("rope_theta", 10000.0)),
    )
    return PaliGemmaConfig(vision=vision, decoder=decoder, zero_init_projector=False, name="hf-paligemma")


def to_hf_state_dict(model: PaliGemma) -> dict[str, torch.Tensor]:
    """HF-named tensors, without the tied `lm_head.weight`."""
    return hf_names.to_hf(HF_NAMES, _untied(model.state_dict()), split_sizes(model))


def from_hf(state_dict: dict[str, torch.Tensor], hf_cfg: dict) -> PaliGemma:
    """Our model from an HF PaliGemma state dict and its config.json dict (strict)."""
    model = PaliGemma(config_from_hf(hf_cfg))
    ours = hf_names.from_hf(HF_NAMES, _untied(state_dict), _untied(model.state_dict()), split_sizes(model))
    model.load_state_dict(ours, strict=False)  # lm_head.weight is the embedding itself
    return model


def save_hf(model: PaliGemma, out_dir: str | Path, token_ids: dict[str, int] | None = None) -> Path:
    """Write `model.safetensors` + `config.json`, loadable by
    `transformers.PaliGemmaForConditionalGeneration.from_pretrained`."""
    return write_export(out_dir, to_hf_state_dict(model), hf_config(model.config, token_ids))


def load_hf(path: str | Path) -> PaliGemma:
    """Read a folder written by `save_hf` (or a single-file `save_pretrained` of the same layout)."""
    tensors, cfg = read_export(path)
    return from_hf(tensors, cfg)
