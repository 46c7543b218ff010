"""Conversion between our `Llama` and Hugging Face `LlamaForCausalLM` / `MixtralForCausalLM`.

Both use the half-split RoPE layout, so weights map one to one without permutation, by
the table `HF_NAMES` (expanded by `shared/train/hf_names.py`); our fused `qkv_proj` and
`gate_up_proj` are split into HF's q/k/v and gate/up projections (and joined back on import). Strict in both directions: an
unmatched key or a shape mismatch raises. Mixtral experts are written per expert
(`block_sparse_moe.experts.{j}.w1/w2/w3`), the on-disk layout that transformers 5.x loads (it
fuses them in memory). Tied heads are omitted and flagged with `tie_word_embeddings` because
safetensors refuses shared tensors.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from shared.errors import UserError
from shared.nn.config import MoEConfig
from shared.nn.fused import split_sizes
from shared.train import hf_names
from shared.train.hf_io import read_export, write_export
from text_lm.config import LlamaConfig, unsupported_options
from text_lm.model import Llama


def check_exportable(c: LlamaConfig) -> None:
    problems = []
    if c.norm != "rmsnorm":
        problems.append("norm must be rmsnorm")
    if c.position != "rope":
        problems.append("position must be rope")
    if c.mlp != "swiglu":
        problems.append("mlp must be swiglu")
    if c.moe is not None and (c.moe.n_shared_experts or not c.moe.normalize_top_k):
        problems.append("MoE must have no shared experts and normalised top-k (Mixtral)")
    problems += unsupported_options(c)  # qk_norm, logit_softcap: named by text_lm/config.py
    if problems:
        raise UserError(f"model '{c.name}' has no Llama/Mixtral equivalent: " + "; ".join(problems))


def hf_config(c: LlamaConfig) -> dict:
    """config.json for LlamaForCausalLM (dense) or MixtralForCausalLM (MoE)."""
    check_exportable(c)
    tc = c.transformer()
    rope = {"rope_type": "default", "rope_theta": c.rope_theta}
    if c.rope_scaling:
        rope = {"rope_type": "llama3", "rope_theta": c.rope_theta, **c.rope_scaling}
    d = {
        "vocab_size": c.vocab_size,
        "hidden_size": c.dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": tc.n_kv_heads,
        "head_dim": tc.head_dim,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": rope,
        "hidden_act": "silu",
        "tie_word_embeddings": c.tie_embeddings,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if c.moe is None:
        d.update(
            model_type="llama",
            architectures=["LlamaForCausalLM"],
            intermediate_size=tc.hidden_dim,
            attention_bias=c.bias,
            mlp_bias=c.bias,
        )
    else:
        if c.bias:
            raise UserError("Mixtral has no biases: set bias: false to export an MoE model")
        d.update(
            model_type="mixtral",
            architectures=["MixtralForCausalLM"],
            intermediate_size=c.moe.hidden_dim or tc.hidden_dim,
            num_local_experts=c.moe.n_experts,
            num_experts_per_tok=c.moe.top_k,
            output_router_logits=False,
            router_jitter_noise=0.0,
        )
    return d


_LAYER = [  # (ours, HF) in one decoder layer, under layers.{i}
    *hf_names.DECODER_LAYER,
    # MoE (Mixtral): the router, and expert j's rows of our stacked weights (`_split_experts`)
    ("mlp.router", "block_sparse_moe.gate"),
    ("mlp.gate_proj.{j}", "block_sparse_moe.experts.{j}.w1.weight"),
    ("mlp.down_proj.{j}", "block_sparse_moe.experts.{j}.w2.weight"),
    ("mlp.up_proj.{j}", "block_sparse_moe.experts.{j}.w3.weight"),
]

# (ours, HF) of every LlamaForCausalLM / MixtralForCausalLM tensor; expanded over the model's own
# state dict, so a dense model only meets the dense rows, and biases come with their linears.
HF_NAMES = [
    ("embed", "model.embed_tokens"),
    *hf_names.nest(_LAYER, "stack.layers.{i}.", "model.layers.{i}."),
    ("stack.norm", "model.norm"),
    ("lm_head", "lm_head"),  # untied only: a tied head is left out (`_exported`)
]

# Our MoE keeps a layer's experts stacked, `mlp.gate_proj` [n_experts, hidden, dim]; Mixtral's
# files hold one tensor per expert. Row j is named `mlp.gate_proj.{j}` for the table above.
_STACKED = re.compile(r"stack\.layers\.\d+\.mlp\.(gate|up|down)_proj")


def _split_experts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each stacked expert weight [E, ...] -> E tensors `NAME.{j}` [...]; other tensors as they are."""
    out = {}
    for k, t in state.items():
        if _STACKED.fullmatch(k):
            out.update({f"{k}.{j}": row for j, row in enumerate(t.unbind(0))})
        else:
            out[k] = t
    return out


def _stack_experts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `_split_experts`: rows `NAME.{j}` stacked in j order back into `NAME`."""
    out, rows = {}, {}
    for k, t in state.items():
        name, _, j = k.rpartition(".")
        if j.isdigit() and _STACKED.fullmatch(name):
            rows.setdefault(name, {})[int(j)] = t
        else:
            out[k] = t
    for name, by_j in rows.items():
        out[name] = torch.stack([by_j[j] for j in sorted(by_j)])
    return out


def _exported(model: Llama) -> dict[str, torch.Tensor]:
    """The tensors an export holds, under our names: a tied `lm_head.weight` is the embedding itself
    (safetensors refuses shared tensors; `tie_word_embeddings` tells HF to tie it back)."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        del state["lm_head.weight"]
    return _split_experts(state)


def to_hf_state_dict(model: Llama) -> dict[str, torch.Tensor]:
    check_exportable(model.config)
    return hf_names.to_hf(HF_NAMES, _exported(model), split_sizes(model))


def config_from_hf(d: dict) -> LlamaConfig:
    arch = d.get("model_type")
    if arch not in ("llama", "mixtral"):
        raise UserError(f"config.json model_type must be 'llama' or 'mixtral', got {arch!r}")
    rope = d.get("rope_parameters") or {}
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    scaling = None
    if rope.get("rope_type") == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        scaling = {k: rope[k] for k in keys}
    moe = None
    if arch == "mixtral":
        moe = MoEConfig(
            n_experts=d["num_local_experts"],
            top_k=d["num_experts_per_tok"],
            hidden_dim=d["intermediate_size"],
        )
    n_heads = d["num_attention_heads"]
    return LlamaConfig(
        vocab_size=d["vocab_size"],
        max_seq_len=d.get("max_position_embeddings", 2048),
        dim=d["hidden_size"],
        n_layers=d["num_hidden_layers"],
        n_heads=n_heads,
        n_kv_heads=d.get("num_key_value_heads") or n_heads,
        head_dim=d.get("head_dim") or d["hidden_size"] // n_heads,
        hidden_dim=d["intermediate_size"],
        norm_eps=d.get("rms_norm_eps", 1e-6),
        rope_theta=theta,
        rope_scaling=scaling,
        bias=bool(d.get("attention_bias", False)),
        tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        moe=moe,
        name=f"hf-{arch}",
    )


def from_hf(state_dict: dict[str, torch.Tensor], hf_cfg: dict) -> Llama:
    """Build our model from an HF state dict (per-expert Mixtral keys) and its config.json dict."""
    c = config_from_hf(hf_cfg)
    model = Llama(c)
    given = dict(state_dict)
    if c.tie_embeddings:
        given.pop("lm_head.weight", None)  # some writers keep the tied copy
    ours = _stack_experts(hf_names.from_hf(HF_NAMES, given, _exported(model), split_sizes(model)))
    result = model.load_state_dict(ours, strict=False)
    if set(result.missing_keys) - {"lm_head.weight"} or result.unexpected_keys:  # tied head: lm_head is embed
        raise UserError(f"HF weights do not match: {result}")
    return model


def save_hf(model: Llama, out_dir: str | Path) -> Path:
    """Write `model.safetensors` + `config.json`, loadable by `AutoModelForCausalLM.from_pretrained`."""
    return write_export(out_dir, to_hf_state_dict(model), hf_config(model.config))


def load_hf(path: str | Path) -> Llama:
    """Read a folder written by `save_hf` (or by transformers' `save_pretrained`, single file)."""
    tensors, cfg = read_export(path)
    return from_hf(tensors, cfg)
