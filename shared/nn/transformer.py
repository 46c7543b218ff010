"""The transformer stack shared by every model in the project.

    Block:        x = x + attn(norm1(x));  x = x + mlp(norm2(x))      (pre-norm, GPT-2 onwards)
    Transformer:  embeddings in -> n_layers blocks -> final norm -> hidden states out

Embeddings and heads live in the models (token + learned positions for GPT-2, patches
for the ViT, sqrt(D)-scaled tokens for Gemma), so one stack serves the Llama decoder,
the Gemma-style captioner decoder and both SigLIP towers by configuration alone.
Shapes: B batch, T tokens, D model dim, L layers, E experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shared.nn.attention import Attention
from shared.nn.config import TransformerConfig
from shared.nn.init import init_weights
from shared.nn.kv_cache import KVCache
from shared.nn.mlp import make_mlp
from shared.nn.moe import MoE, MoEStats
from shared.nn.norms import make_norm
from shared.nn.rope import RotaryEmbedding


@dataclass
class StackOutput:
    hidden: torch.Tensor
    """(B, T, D) after the final norm."""
    aux_loss: torch.Tensor | None = None
    """MoE load-balancing loss, averaged over MoE layers."""
    z_loss: torch.Tensor | None = None
    """MoE router z-loss, averaged over MoE layers."""
    expert_load: torch.Tensor | None = None
    """(L, E) share of assignments per expert and layer, detached."""


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        norm = dict(kind=cfg.norm, dim=cfg.dim, eps=cfg.norm_eps, unit_offset=cfg.norm_unit_offset)
        self.attn_norm = make_norm(**norm)
        self.attn = Attention(cfg)
        self.mlp_norm = make_norm(**norm)
        if cfg.moe is not None:
            self.mlp = MoE(cfg.dim, cfg.moe, cfg.hidden_dim, cfg.mlp, cfg.out_bias, cfg.gelu_approximate)
        else:
            self.mlp = make_mlp(cfg.mlp, cfg.dim, cfg.hidden_dim, cfg.out_bias, cfg.gelu_approximate)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, rope=None, mask=None, kv_cache=None, start_pos=0):
        x = x + self.dropout(self.attn(self.attn_norm(x), rope, mask, kv_cache, start_pos))
        h = self.mlp(self.mlp_norm(x))
        stats = None
        if isinstance(h, tuple):
            h, stats = h
        return x + self.dropout(h), stats


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps, cfg.norm_unit_offset)
        self.rope = None
        if cfg.rope:
            self.rope = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
        self.gradient_checkpointing = False
        init_weights(self, cfg.n_layers, cfg.init_std)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_caches: list[KVCache] | None = None,
        start_pos: int = 0,
        positions: torch.Tensor | None = None,
    ) -> StackOutput:
        """x (B, T, D) embeddings -> StackOutput.

        mask: boolean (True = attend) broadcastable to (B, H, T, S), or None for the
        configured default. positions: optional (B, T) RoPE positions for left-padded
        batches; by default the tokens sit at start_pos .. start_pos + T - 1.
        """
        rope = None
        if self.rope is not None:
            rope = self.rope.lookup(positions) if positions is not None else self.rope(start_pos, x.shape[1])
        stats: list[MoEStats] = []
        for i, layer in enumerate(self.layers):
            cache = kv_caches[i] if kv_caches is not None else None
            if self.gradient_checkpointing and self.training:
                x, s = torch.utils.checkpoint.checkpoint(
                    layer, x, rope, mask, cache, start_pos, use_reentrant=False
                )
            else:
                x, s = layer(x, rope, mask, cache, start_pos)
            if s is not None:
                stats.append(s)
        out = StackOutput(self.norm(x))
        if stats:
            out.aux_loss = torch.stack([s.aux_loss for s in stats]).mean()
            out.z_loss = torch.stack([s.z_loss for s in stats]).mean()
            out.expert_load = torch.stack([s.expert_load for s in stats])
        return out

    def make_kv_caches(self, batch_size: int, max_len: int, dtype=None, device=None) -> list[KVCache]:
        """One preallocated cache per layer for `max_len` positions."""
        p = next(self.parameters())
        return [
            KVCache(
                batch_size,
                self.cfg.n_kv_heads,
                max_len,
                self.cfg.head_dim,
                dtype=dtype or p.dtype,
                device=device or p.device,
            )
            for _ in self.layers
        ]
