"""Conversion between our `Llama` and Hugging Face `LlamaForCausalLM` / `MixtralForCausalLM`.

Both use the half-split RoPE layout, so weights map one to one without permutation.
Strict in both directions: an unmatched key or a shape mismatch raises. Mixtral experts
are written per expert (`block_sparse_moe.experts.{j}.w1/w2/w3`), the on-disk layout
that transformers 5.x loads (it fuses them in memory). Tied heads are omitted and
flagged with `tie_word_embeddings` because safetensors refuses shared tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared.errors import UserError
from shared.nn.config import MoEConfig
from shared.train.hf_io import read_export, write_export
from text_lm.config import LlamaConfig
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


def _key_map(c: LlamaConfig) -> dict[str, str]:
    """Our parameter name -> HF parameter name, for every non-expert tensor."""
    m = {"embed.weight": "model.embed_tokens.weight", "stack.norm.weight": "model.norm.weight"}
    if not c.tie_embeddings:
        m["lm_head.weight"] = "lm_head.weight"
    attn = ["q_proj", "k_proj", "v_proj", "o_proj"]
    for i in range(c.n_layers):
        ours, hf = f"stack.layers.{i}", f"model.layers.{i}"
        m[f"{ours}.attn_norm.weight"] = f"{hf}.input_layernorm.weight"
        m[f"{ours}.mlp_norm.weight"] = f"{hf}.post_attention_layernorm.weight"
        for p in attn:
            m[f"{ours}.attn.{p}.weight"] = f"{hf}.self_attn.{p}.weight"
            if c.bias:
                m[f"{ours}.attn.{p}.bias"] = f"{hf}.self_attn.{p}.bias"
        if c.moe is None:
            for p in ("gate_proj", "up_proj", "down_proj"):
                m[f"{ours}.mlp.{p}.weight"] = f"{hf}.mlp.{p}.weight"
                if c.bias:
                    m[f"{ours}.mlp.{p}.bias"] = f"{hf}.mlp.{p}.bias"
        else:
            m[f"{ours}.mlp.router.weight"] = f"{hf}.block_sparse_moe.gate.weight"
    return m


_EXPERT = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}


def to_hf_state_dict(model: Llama) -> dict[str, torch.Tensor]:
    c = model.config
    check_exportable(c)
    ours = model.state_dict()
    out = {hf: ours[k].detach().clone().contiguous() for k, hf in _key_map(c).items()}
    if c.moe is not None:
        for i in range(c.n_layers):
            for p, w in _EXPERT.items():
                stacked = ours[f"stack.layers.{i}.mlp.{p}"]
                for j in range(c.moe.n_experts):
                    out[f"model.layers.{i}.block_sparse_moe.experts.{j}.{w}.weight"] = stacked[j].clone()
    return out


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
    expected = to_hf_state_dict(model)
    given = dict(state_dict)
    if c.tie_embeddings:
        given.pop("lm_head.weight", None)
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"HF weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, t in expected.items():
        if given[k].shape != t.shape:
            raise UserError(f"HF weight {k} has shape {tuple(given[k].shape)}, expected {tuple(t.shape)}")
    ours = {k: given[hf] for k, hf in _key_map(c).items()}
    if c.moe is not None:
        for i in range(c.n_layers):
            for p, w in _EXPERT.items():
                experts = [
                    given[f"model.layers.{i}.block_sparse_moe.experts.{j}.{w}.weight"]
                    for j in range(c.moe.n_experts)
                ]
                ours[f"stack.layers.{i}.mlp.{p}"] = torch.stack(experts)
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
