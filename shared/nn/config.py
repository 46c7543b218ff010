"""Configuration of the shared transformer stack.

One `TransformerConfig` describes every stack in the project: the Llama decoder,
the GPT-2 baseline, the Gemma-style decoder of the captioner, and the two SigLIP
towers. Each model configuration derives its `TransformerConfig` in one place (its
`transformer()` method) and does so in its own `__post_init__`, so the checks on widths and
heads below, and the derived defaults (`n_kv_heads`, `head_dim`, `hidden_dim`), are written
once: `where` prefixes the field names in the errors with the path the user writes
(`vision.n_heads=3 must divide vision.dim=128`).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from typing import Literal

from shared.errors import UserError
from shared.nn.config_base import check_positive

PLAIN_MLPS = ("gelu", "relu2")
"""Feed-forwards with two matrices (up, down) rather than three: their default hidden size is 4 * dim."""


@dataclass
class MoEConfig:
    """Mixture-of-experts feed-forward layer (Switch: Fedus et al. 2021; Mixtral: Jiang et al. 2024)."""

    n_experts: int = 8
    """Routed experts per layer."""
    top_k: int = 2
    """Experts each token is sent to."""
    hidden_dim: int | None = None
    """Hidden size of each expert (None: the dense MLP's hidden size)."""
    n_shared_experts: int = 0
    """Experts applied to every token, outside the router (DeepSeekMoE-style). 0 = Mixtral."""
    normalize_top_k: bool = True
    """Renormalise the top-k router probabilities to sum to one (Mixtral semantics)."""

    def __post_init__(self):
        if self.n_experts < 1:
            raise UserError(f"moe.n_experts must be >= 1, got {self.n_experts}")
        if not 1 <= self.top_k <= self.n_experts:
            raise UserError(f"moe.top_k must be in [1, n_experts={self.n_experts}], got {self.top_k}")
        if self.n_shared_experts < 0:
            raise UserError(f"moe.n_shared_experts must be >= 0, got {self.n_shared_experts}")


@dataclass
class TransformerConfig:
    """A stack of pre-norm residual blocks: x + attn(norm(x)), then x + mlp(norm(x))."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    """Key/value heads: n_heads = MHA, 1 = MQA, in between = GQA (Ainslie et al. 2023)."""
    head_dim: int | None = None
    """Per-head size (None: dim // n_heads). Gemma decouples it from dim."""
    hidden_dim: int | None = None
    """MLP hidden size. None: 4 * dim for the two-matrix MLPs (`gelu`, `relu2`); for every other name
    (the gated `swiglu`, `geglu`) 8/3 * dim rounded up to a multiple of 64, which keeps the
    parameters of a 4 * dim plain MLP (three matrices instead of two; Shazeer 2020)."""
    mixer: str = "attention"
    """Token mixer of each block, a name in `shared/nn/registry.py` (`attention`: GQA self-attention)."""
    mlp: str = "swiglu"
    """Feed-forward of each block, a name in `shared/nn/registry.py`: `swiglu`, `geglu`, `gelu` or
    `relu2` (squared ReLU, `shared/nn/relu2.py`)."""
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    norm_unit_offset: bool = False
    """Gemma's RMSNorm scales by (1 + w) with w initialised to zero."""
    attn_bias: bool = False
    """Biases on the q/k/v projections (GPT-2, SigLIP; Qwen has them too)."""
    out_bias: bool = False
    """Biases on the attention output projection and on the MLP layers."""
    gelu_approximate: Literal["tanh", "none"] = "tanh"
    rope: bool = True
    """Rotary position embeddings inside attention (Su et al. 2021); False for learned/absolute ones."""
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    """Llama-3 frequency scaling: {factor, low_freq_factor, high_freq_factor, original_max_position_embeddings}."""
    max_seq_len: int = 2048
    """Positions the RoPE tables cover up front (they grow on demand past it)."""
    causal: bool = True
    """Default attention pattern when no explicit mask is given."""
    dropout: float = 0.0
    moe: MoEConfig | None = None
    init_std: float = 0.02
    qk_norm: bool = False
    """QK-norm: RMSNorm (learned gain of Dh) on each head's query and key, after the projection and
    before RoPE, so the attention logits q.k/sqrt(Dh) stay bounded however large the projections
    grow (Dehghani et al. 2023, ViT-22B; Wortsman et al. 2023; OLMo 2, Qwen3, modded-nanogpt)."""
    zero_init_out: bool = False
    """Start every residual output projection (attention `o_proj`, MLP and expert `down_proj`) at
    zero, so each block is the identity at initialisation and the residual stream begins as the
    embedding (modded-nanogpt, nanochat; cf. Fixup/ReZero, Zhang et al. 2019, Bachlechner et al. 2020)."""

    where: InitVar[str] = ""
    """Prefix of the field names in error messages (`vision.`, `decoder.`); not stored."""

    def __post_init__(self, where: str):
        w = where
        check_positive(w, self, ("dim", "n_layers", "n_heads", "max_seq_len"))
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        check_positive(w, self, ("n_kv_heads",))
        if self.n_heads % self.n_kv_heads:
            raise UserError(f"{w}n_kv_heads={self.n_kv_heads} must divide {w}n_heads={self.n_heads}")
        if self.head_dim is None:
            if self.dim % self.n_heads:
                raise UserError(f"{w}n_heads={self.n_heads} must divide {w}dim={self.dim}")
            self.head_dim = self.dim // self.n_heads
        check_positive(w, self, ("head_dim",))
        if self.rope and self.head_dim % 2:
            raise UserError(f"RoPE needs an even {w}head_dim, got {self.head_dim}")
        if self.hidden_dim is None:
            if self.mlp in PLAIN_MLPS:
                self.hidden_dim = 4 * self.dim
            else:
                self.hidden_dim = 64 * ((8 * self.dim // 3 + 63) // 64)
        check_positive(w, self, ("hidden_dim",))
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{w}dropout must be in [0, 1), got {self.dropout}")
