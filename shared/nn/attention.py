"""Multi-head attention with grouped key/value heads, one fused SDPA call.

Shapes: B batch, T new tokens, S attended positions (cache included), D model dim,
H query heads, K key/value heads, Dh head dim.

GQA (Ainslie et al. 2023): H query heads share K <= H key/value heads in groups of H/K.
K = H is GPT-2's multi-head attention, K = 1 is multi-query attention. Fewer KV heads
shrink the KV cache (and its memory traffic during decoding) by H/K at little cost in
quality.

q, k and v come from one fused projection `qkv_proj` (`shared/nn/fused.py`): one matmul, its
output split into H, K, K heads; checkpoints with separate q_proj/k_proj/v_proj still load.

Registered as the `attention` mixer (`shared/nn/registry.py`): forward(x, ctx) reads the RoPE
tables, mask, this layer's KV cache and start_pos from the per-call `StackContext`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.nn.config import TransformerConfig
from shared.nn.context import NO_CONTEXT, StackContext
from shared.nn.fused import fuse_on_load
from shared.nn.masks import causal_mask
from shared.nn.norms import RMSNorm
from shared.nn.registry import register_mixer
from shared.nn.rope import apply_rope


@register_mixer("attention")
class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        q_size, kv_size = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.qkv_sizes = (q_size, kv_size, kv_size)
        self.fused_sizes = {"qkv_proj": self.qkv_sizes}  # rows of W_q, W_k, W_v in qkv_proj.weight
        self.qkv_proj = nn.Linear(cfg.dim, q_size + 2 * kv_size, bias=cfg.attn_bias)
        fuse_on_load(self, "qkv_proj", ("q_proj", "k_proj", "v_proj"))
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=cfg.out_bias)
        # QK-norm (cfg.qk_norm; Dehghani et al. 2023): RMSNorm over each head's Dh, Qwen3's names
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, ctx: StackContext = NO_CONTEXT) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D).

        ctx.mask: boolean, True = attend, broadcastable to (B, H, T, S); None = the configured
        default (causal or bidirectional). With a cache (ctx.kv_cache), the new tokens sit at
        positions [start_pos, start_pos + T) and attend to every cached position before them.
        """
        B, T, _ = x.shape
        mask, kv_cache = ctx.mask, ctx.kv_cache
        q, k, v = self.qkv_proj(x).split(self.qkv_sizes, dim=-1)  # (B, T, H*Dh), (B, T, K*Dh) x 2
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, K, T, Dh)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, K, T, Dh)
        if self.q_norm is not None:  # before RoPE, which preserves the norm it sets
            q, k = self.q_norm(q), self.k_norm(k)
        if ctx.rope is not None:
            cos, sin = ctx.rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v, ctx.start_pos)  # (B, K, S, Dh), S = start_pos + T
            k, v = k.to(q.dtype), v.to(q.dtype)
        is_causal = False
        if mask is None and self.causal and T > 1:
            if k.shape[2] == T:
                is_causal = True  # the fused kernels' own causal path
            else:  # chunked prefill on top of a cache: queries sit at the end of the keys
                mask = causal_mask(T, k.shape[2], device=x.device)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )  # (B, H, T, Dh)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
