"""`LlamaConfig`: one dataclass for the decoder, from the GPT-2 baseline to Llama with MoE.

Presets (`LlamaConfig.preset(name)`):
- gpt2-tiny / gpt2-small: LayerNorm, learned absolute positions, GELU MLP, full MHA,
  biases, tied embeddings (Radford et al. 2019).
- llama-tiny / llama-125m: RMSNorm, RoPE, SwiGLU, GQA, no biases, tied embeddings.
- llama-moe-tiny: llama-tiny with 8 experts of half the hidden size, top-2 routing: the same
  active parameters per token as llama-tiny, 5x the total.
- modern-tiny: the 2024-25 speedrun pieces on llama-tiny's stack (issue 12): squared-ReLU MLP,
  QK-norm, zero-initialised output projections, logit soft-capping, an untied head, a hashed
  bigram embedding of 4096 rows.

Architecture options (each one field, off by default; `Llama` and the stack read them):
`mlp: relu2` (So et al. 2021), `qk_norm` (Dehghani et al. 2023), `zero_init_out`
(modded-nanogpt, nanochat), `logit_softcap` (Gemma 2), `tie_embeddings: false`,
`bigram_hash_size` (parameter-golf). The Hugging
Face and GGUF writers refuse those their target cannot represent, naming them
(`unsupported_options`, below).

`LlamaConfig()` alone is llama-tiny's shape with full multi-head attention (n_kv_heads None).
`to_dict`, `from_dict` and `preset` are `ModelConfig`'s (shared/nn/config_base.py); the checks
on widths and heads are the stack's, reached through `transformer()` in `__post_init__`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from shared.errors import UserError
from shared.nn.config import MoEConfig, TransformerConfig
from shared.nn.config_base import ModelConfig, check_positive

_GPT2 = dict(mlp="gelu", norm="layernorm", position="learned", bias=True, tie_embeddings=True)
_LLAMA = dict(mlp="swiglu", norm="rmsnorm", position="rope", bias=False, tie_embeddings=True)
_TINY = dict(vocab_size=4096, max_seq_len=256, dim=256, n_layers=6, n_heads=8)

_MODERN = dict(
    mlp="relu2",
    qk_norm=True,
    zero_init_out=True,
    logit_softcap=15.0,
    tie_embeddings=False,
    bigram_hash_size=4096,
    n_kv_heads=4,
)

PRESETS: dict[str, dict] = {
    "gpt2-tiny": {**_GPT2, **_TINY},
    "llama-tiny": {**_LLAMA, **_TINY, "n_kv_heads": 4},
    "llama-moe-tiny": {
        **_LLAMA,
        **_TINY,
        "n_kv_heads": 4,
        "moe": dict(n_experts=8, top_k=2, hidden_dim=352),
    },
    "modern-tiny": {**_LLAMA, **_TINY, **_MODERN},
    "gpt2-small": {
        **_GPT2,
        "vocab_size": 50304,
        "max_seq_len": 1024,
        "dim": 768,
        "n_layers": 12,
        "n_heads": 12,
    },
    "llama-125m": {
        **_LLAMA,
        "vocab_size": 32768,
        "max_seq_len": 1024,
        "dim": 768,
        "n_layers": 12,
        "n_heads": 12,
        "n_kv_heads": 4,
        "hidden_dim": 3072,
    },
}
"""The presets; configs/text/<name>.yaml sets the same values (tests/test_presets_match_yaml.py)."""


@dataclass
class LlamaConfig(ModelConfig):
    """The decoder-only language model: token (+ learned position) embeddings -> causal stack -> head."""

    vocab_size: int = 4096
    """Vocabulary size (the tokenizer's, specials included)."""
    max_seq_len: int = 256
    """Training context length; learned positions cannot go past it, RoPE can."""
    dim: int = 256
    """Model (residual stream) width."""
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int | None = None
    """Key/value heads (None = n_heads: MHA; 1: MQA; in between: GQA)."""
    head_dim: int | None = None
    """Per-head size (None: dim // n_heads)."""
    hidden_dim: int | None = None
    """MLP hidden size (None: 4*dim for gelu, ~8/3*dim rounded to 64 for gated MLPs)."""
    mlp: str = "swiglu"
    """Feed-forward, a name in shared/nn/registry.py (`swiglu`, `geglu`, `gelu`; checked when built).
    With `moe` set it names the experts' gated activation (`swiglu` or `geglu`)."""
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    position: Literal["rope", "learned"] = "rope"
    """`rope` (rotary, in attention) or `learned` (GPT-2's absolute position table)."""
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    """Llama-3 RoPE scaling dict (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)."""
    bias: bool = False
    """Biases in every linear layer (GPT-2) or none (Llama)."""
    tie_embeddings: bool = True
    """Share the token embedding with the output head."""
    dropout: float = 0.0
    init_std: float = 0.02
    moe: MoEConfig | None = None
    """Mixture-of-experts MLP in every layer (None = dense)."""
    qk_norm: bool = False
    """RMSNorm on each head's query and key before RoPE (Dehghani et al. 2023; OLMo 2, Qwen3)."""
    zero_init_out: bool = False
    """Attention and MLP output projections start at zero: each block is the identity at init
    (modded-nanogpt, nanochat)."""
    logit_softcap: float | None = None
    """Soft-cap the output logits: cap * tanh(logits / cap), smooth and bounded in (-cap, cap)
    (Gemma 2: 30; modded-nanogpt: 15). None: raw logits."""
    bigram_hash_size: int = 0
    """Rows of a hashed bigram embedding added to the token embedding: x_t += B[hash(id_{t-1}, id_t)
    mod rows] (OpenAI parameter-golf's BigramHash), initialised to zero. 0: none."""
    name: str = field(default="custom", compare=False)
    """Run name (the log folder's name); `preset` sets it to the preset's."""

    PRESETS: ClassVar[dict[str, dict]] = PRESETS

    def __post_init__(self):
        super().__post_init__()  # a `moe` dict becomes a MoEConfig
        check_positive("", self, ("vocab_size",))
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise UserError(f"logit_softcap must be > 0 (or null for none), got {self.logit_softcap!r}")
        if not isinstance(self.bigram_hash_size, int) or self.bigram_hash_size < 0:
            raise UserError(
                f"bigram_hash_size must be an integer >= 0 (0: none), got {self.bigram_hash_size!r}"
            )
        if self.position not in ("rope", "learned"):
            raise UserError(f"position must be 'rope' or 'learned', got {self.position!r}")
        self.transformer()  # validates widths, heads and the rest, once (shared/nn/config.py)

    def transformer(self) -> TransformerConfig:
        """The stack this model runs: the one place these fields map onto `TransformerConfig`."""
        return TransformerConfig(
            dim=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.head_dim,
            hidden_dim=self.hidden_dim,
            mlp=self.mlp,
            norm=self.norm,
            norm_eps=self.norm_eps,
            attn_bias=self.bias,
            out_bias=self.bias,
            rope=self.position == "rope",
            rope_theta=self.rope_theta,
            rope_scaling=self.rope_scaling,
            max_seq_len=self.max_seq_len,
            causal=True,
            dropout=self.dropout,
            moe=self.moe,
            init_std=self.init_std,
            qk_norm=self.qk_norm,
            zero_init_out=self.zero_init_out,
        )


def unsupported_options(c: LlamaConfig) -> list[str]:
    """The architecture options of `c` that transformers' Llama/Mixtral and llama.cpp's `llama` cannot
    represent (qk_norm, logit_softcap, bigram_hash_size), each as `field=value (why)`; the HF and
    GGUF writers refuse a model that has any.

    `zero_init_out` and an untied head change only the initialisation and the parameter count,
    which both formats carry exactly, so they are not listed; `mlp` is checked by the writers
    with the rest of the Llama shape (norm, position, bias)."""
    out = []
    if c.qk_norm:
        out.append("qk_norm=true (Llama has no query/key norm; Qwen3 and OLMo 2 do, not written yet)")
    if c.logit_softcap is not None:
        out.append(
            f"logit_softcap={c.logit_softcap} (Llama has no logit soft-capping; Gemma 2 does, not written yet)"
        )
    if c.bigram_hash_size:
        out.append(f"bigram_hash_size={c.bigram_hash_size} (no bigram embedding in Llama)")
    return out
