"""The transformer stack shared by every model in the project.

    Block:        x = x + attn(norm1(x), ctx);  x = x + mlp(norm2(x))   (pre-norm, GPT-2 onwards)
    Transformer:  embeddings in -> n_layers blocks -> final norm -> hidden states out

The block has two seams, filled from `shared/nn/registry.py` by config name: the token mixer
(`cfg.mixer`, built as `attn`) and the feed-forward (`cfg.mlp`, or MoE when `cfg.moe` is set,
built as `mlp`). Every feed-forward returns (y, aux), so the block needs no case for MoE: it
hands aux up and the stack averages the MoE losses over the layers that reported them.
The per-call inputs (RoPE tables, mask, KV caches, start_pos) travel as one `StackContext`
(`shared/nn/context.py`), built once per forward.

Embeddings and heads live in the models (token + learned positions for GPT-2, patches
for the ViT, sqrt(D)-scaled tokens for Gemma), so one stack serves the Llama decoder,
the Gemma-style captioner decoder and both SigLIP towers by configuration alone.
Shapes: B batch, T tokens, D model dim, L layers, E experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import shared.nn.attention  # noqa: F401  (registers the built-in mixer)
import shared.nn.mlp  # noqa: F401  (registers the built-in feed-forwards)
import shared.nn.relu2  # noqa: F401  (registers `relu2`)
from shared.nn.config import TransformerConfig
from shared.nn.context import StackContext
from shared.nn.init import init_weights
from shared.nn.kv_cache import KVCache
from shared.nn.moe import MoEStats
from shared.nn.norms import make_norm
from shared.nn.registry import build_feed_forward, build_mixer
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
    hidden_states: list[torch.Tensor] | None = None
    """With `output_hidden_states`: the stack's input and each block's output (B, T, D), L + 1 in all,
    before the final norm (Hugging Face's `hidden_states`)."""


class Block(nn.Module):
    """x + mixer(norm(x), ctx), then x + feed-forward(norm(x)): pre-norm residuals (GPT-2 onwards)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        norm = dict(kind=cfg.norm, dim=cfg.dim, eps=cfg.norm_eps, unit_offset=cfg.norm_unit_offset)
        self.attn_norm = make_norm(**norm)
        self.attn = build_mixer(cfg)
        self.mlp_norm = make_norm(**norm)
        self.mlp = build_feed_forward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, ctx: StackContext) -> tuple[torch.Tensor, MoEStats | None]:
        """x (B, T, D), this layer's context -> (x (B, T, D), the feed-forward's aux)."""
        x = x + self.dropout(self.attn(self.attn_norm(x), ctx))
        h, aux = self.mlp(self.mlp_norm(x))
        return x + self.dropout(h), aux


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
        init_weights(self, cfg.n_layers, cfg.init_std, zero_out=cfg.zero_init_out)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_caches: list[KVCache] | None = None,
        start_pos: int = 0,
        positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> StackOutput:
        """x (B, T, D) embeddings -> StackOutput.

        mask: boolean (True = attend) broadcastable to (B, H, T, S), or None for the
        configured default. positions: optional (B, T) RoPE positions for left-padded
        batches; by default the tokens sit at start_pos .. start_pos + T - 1.
        output_hidden_states: also return every block's input and output (`StackOutput.hidden_states`).
        """
        rope = None
        if self.rope is not None:
            rope = self.rope.lookup(positions) if positions is not None else self.rope(start_pos, x.shape[1])
        ctx = StackContext(rope=rope, mask=mask, start_pos=start_pos, kv_caches=kv_caches)
        stats: list[MoEStats] = []
        states = [x] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            if self.gradient_checkpointing and self.training:
                # Activations are recomputed in backward instead of stored; non-reentrant
                # checkpointing takes the context (a non-tensor argument) as it is.
                x, aux = checkpoint(layer, x, ctx.for_layer(i), use_reentrant=False)
            else:
                x, aux = layer(x, ctx.for_layer(i))
            if aux is not None:
                stats.append(aux)
            if states is not None:
                states.append(x)
        out = StackOutput(self.norm(x), hidden_states=states)
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
