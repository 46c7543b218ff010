"""Conversion between our `SigLIP` and Hugging Face `transformers.SiglipModel`.

The layouts match one to one: the shared stack's `attn_norm`/`mlp_norm` are HF's
`layer_norm1`/`layer_norm2`, our fused `qkv_proj` is split into HF's `q_proj`/`k_proj`/`v_proj`
(joined back on import), `o_proj` is `out_proj`, the MLP's `up_proj`/`down_proj` are
`fc1`/`fc2`, each tower's final norm is `post_layernorm` (image) or `final_layer_norm`
(text), and t, b are `logit_scale`, `logit_bias`. The MAP head is stored exactly as HF's
(`probe`, `attention.in_proj_weight`, ...). The table `HF_NAMES` says all of it
(`shared/train/hf_names.py` expands it). Strict both ways: a missing or unexpected key
or a shape mismatch raises `UserError`. Exports are `model.safetensors` (metadata
{"format": "pt"}) + `config.json`, read by `SiglipModel.from_pretrained(DIR)`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared.errors import UserError
from shared.nn.fused import split_sizes
from shared.train import hf_names
from shared.train.hf_io import read_export, write_export
from vision_lm.config import SigLIPConfig, TextTowerConfig, VisionConfig
from vision_lm.siglip import SigLIP

_ENCODER_LAYER = [  # (ours, HF) in one pre-norm encoder layer, under each tower's layers.{i}
    ("attn_norm", "layer_norm1"),
    ("mlp_norm", "layer_norm2"),
    ("attn.qkv_proj", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),  # split/join
    ("attn.o_proj", "self_attn.out_proj"),
    ("mlp.up_proj", "mlp.fc1"),
    ("mlp.down_proj", "mlp.fc2"),
]

VISION_TOWER = [  # (ours, HF) under `vision.` / HF's vision tower prefix (PaliGemma's too)
    ("patch_embed", "embeddings.patch_embedding"),
    ("pos_embed", "embeddings.position_embedding.weight"),  # ours a bare Parameter, HF's an Embedding
    *hf_names.nest(_ENCODER_LAYER, "stack.layers.{i}.", "encoder.layers.{i}."),
    ("stack.norm", "post_layernorm"),
    # The MAP head is stored as HF's: `probe` and the fused `attention.in_proj_weight/_bias`
    # (q, k, v stacked, as torch's nn.MultiheadAttention keeps them) keep their names.
    ("head", "head"),
    ("head.attention", "head.attention"),
    ("head.attention.out_proj", "head.attention.out_proj"),
    ("head.layernorm", "head.layernorm"),
    ("head.mlp.up_proj", "head.mlp.fc1"),
    ("head.mlp.down_proj", "head.mlp.fc2"),
]

TEXT_TOWER = [  # (ours, HF) under `text.` / `text_model.`
    ("token_embed", "embeddings.token_embedding"),
    ("pos_embed", "embeddings.position_embedding.weight"),
    *hf_names.nest(_ENCODER_LAYER, "stack.layers.{i}.", "encoder.layers.{i}."),
    ("stack.norm", "final_layer_norm"),
    ("head", "head"),
]

HF_NAMES = [  # (ours, HF) of every SiglipModel tensor
    *hf_names.nest(VISION_TOWER, "vision.", "vision_model."),
    *hf_names.nest(TEXT_TOWER, "text.", "text_model."),
    ("logit_scale", "logit_scale"),  # t
    ("logit_bias", "logit_bias"),  # b
]


def check_exportable(c: SigLIPConfig) -> None:
    if c.has_image_projection:
        raise UserError(
            f"model '{c.name}' has embed_dim={c.embed_dim} != vision.dim={c.vision.dim}: HF SiglipModel "
            "has no image projection, so it cannot be exported (set embed_dim to null)"
        )


def vision_hf_config(v: VisionConfig) -> dict:
    """The fields of HF's `SiglipVisionConfig` that our image tower sets (SigLIP and PaliGemma share them)."""
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": v.dim,
        "intermediate_size": v.hidden_dim,
        "num_hidden_layers": v.n_layers,
        "num_attention_heads": v.n_heads,
        "num_channels": 3,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "layer_norm_eps": v.norm_eps,
    }


def hf_config(c: SigLIPConfig, token_ids: dict[str, int] | None = None) -> dict:
    """config.json of a `SiglipModel`; `token_ids` may give pad/bos/eos_token_id of our tokenizer."""
    check_exportable(c)
    v, t = c.vision, c.text
    common = {"hidden_act": "gelu_pytorch_tanh", "attention_dropout": 0.0}
    return {
        "model_type": "siglip",
        "architectures": ["SiglipModel"],
        "initializer_factor": 1.0,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "siglip_text_model",
            "vocab_size": t.vocab_size,
            "hidden_size": t.dim,
            "intermediate_size": t.hidden_dim,
            "num_hidden_layers": t.n_layers,
            "num_attention_heads": t.n_heads,
            "max_position_embeddings": t.max_len,
            "layer_norm_eps": t.norm_eps,
            "projection_size": c.embed_dim,
            **common,
            "pad_token_id": None,  # HF's defaults are ids of its own 32000-token vocabulary
            "bos_token_id": None,
            "eos_token_id": None,
            **(token_ids or {}),
        },
        "vision_config": {
            **vision_hf_config(v),
            "vision_use_head": True,
            **common,
        },
    }


def config_from_hf(d: dict) -> SigLIPConfig:
    """Our config from a SiglipModel config.json dict; what we cannot represent is a UserError."""
    if d.get("model_type") != "siglip":
        raise UserError(f"config.json model_type must be 'siglip', got {d.get('model_type')!r}")
    t, v = d.get("text_config") or {}, d.get("vision_config") or {}
    for name, sub in (("text_config", t), ("vision_config", v)):
        act = sub.get("hidden_act", "gelu_pytorch_tanh")
        if act != "gelu_pytorch_tanh":
            raise UserError(f"{name}.hidden_act={act!r}: only gelu_pytorch_tanh is supported")
    if not v.get("vision_use_head", True):
        raise UserError("vision_config.vision_use_head=false: SigLIP needs the attention-pooling head")
    size, patch = v.get("image_size", 224), v.get("patch_size", 16)
    if isinstance(size, (list, tuple)) or isinstance(patch, (list, tuple)):
        raise UserError("non-square image_size/patch_size lists are not supported")
    th = t.get("hidden_size", 768)
    vision = VisionConfig(
        image_size=size,
        patch_size=patch,
        dim=v.get("hidden_size", 768),
        n_layers=v.get("num_hidden_layers", 12),
        n_heads=v.get("num_attention_heads", 12),
        hidden_dim=v.get("intermediate_size", 3072),
        norm_eps=v.get("layer_norm_eps", 1e-6),
    )
    text = TextTowerConfig(
        vocab_size=t.get("vocab_size", 32000),
        max_len=t.get("max_position_embeddings", 64),
        dim=th,
        n_layers=t.get("num_hidden_layers", 12),
        n_heads=t.get("num_attention_heads", 12),
        hidden_dim=t.get("intermediate_size", 3072),
        norm_eps=t.get("layer_norm_eps", 1e-6),
    )
    proj = t.get("projection_size") or th
    if proj != vision.dim:
        raise UserError(f"text projection_size={proj} must equal the vision hidden_size={vision.dim}")
    return SigLIPConfig(vision=vision, text=text, name="hf-siglip")


def to_hf_state_dict(model: SigLIP) -> dict[str, torch.Tensor]:
    check_exportable(model.config)
    return hf_names.to_hf(HF_NAMES, model.state_dict(), split_sizes(model))


def from_hf(state_dict: dict[str, torch.Tensor], hf_cfg: dict) -> SigLIP:
    """Our model from an HF SiglipModel state dict and its config.json dict (strict)."""
    model = SigLIP(config_from_hf(hf_cfg))
    given = {k: v for k, v in state_dict.items() if not k.endswith("position_ids")}  # old buffers
    ours = hf_names.from_hf(HF_NAMES, given, model.state_dict(), split_sizes(model))
    model.load_state_dict(ours, strict=True)
    return model


def save_hf(model: SigLIP, out_dir: str | Path, token_ids: dict[str, int] | None = None) -> Path:
    """Write `model.safetensors` + `config.json`, loadable by `transformers.SiglipModel.from_pretrained`."""
    return write_export(out_dir, to_hf_state_dict(model), hf_config(model.config, token_ids))


def load_hf(path: str | Path) -> SigLIP:
    """Read a folder written by `save_hf` or by `SiglipModel.save_pretrained` (single file)."""
    tensors, cfg = read_export(path)
    return from_hf(tensors, cfg)
