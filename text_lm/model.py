"""The decoder-only language model: embeddings -> shared Transformer -> output head.

One class covers GPT-2 and Llama; `LlamaConfig` chooses the pieces. Shapes: B batch,
T tokens, V vocabulary, D model dim.

Logit soft-capping (`logit_softcap`, Gemma 2, Team Gemma 2024; modded-nanogpt): the head's logits z
become cap * tanh(z / cap), about z while |z| << cap and never past +-cap. It stops a few logits
from running away early in training (the loss cannot be driven down by inflating one logit), at
the cost of one elementwise tanh over (B, T, V). Applied in training, validation and generation
alike, so sampling sees the distribution the model was trained on.

Hashed bigram embedding (`bigram_hash_size`, OpenAI parameter-golf's BigramHash): a second table B
whose row for the pair (previous token, token) is added to the token embedding,
x_t = E[id_t] + B[(id_{t-1} * 1000003 + id_t) mod rows], with id_{-1} = V (no previous token: the
first of a sequence or of a packed document). The pair is what a one-layer model can only learn
through attention; a lookup gives it for free. B starts at zero. In cached decoding the previous
token of a call's first position is the last one fed before: `make_kv_caches` returns `LMCaches`,
which keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import UserError
from shared.nn import linear_cross_entropy as fused_ce
from shared.nn.kv_cache import KVCache
from shared.nn.masks import document_causal_mask, segment_positions
from shared.nn.transformer import Transformer
from text_lm.config import LlamaConfig


class LMCaches(list):
    """The stack's per-layer KV caches (a list, as the stack takes them) plus `last_tokens` (B,): the
    last token fed, which the bigram hash of the next call's first position needs."""

    last_tokens: torch.Tensor | None = None


@dataclass
class LMOutput:
    logits: torch.Tensor | None
    """(B, T, V); None from a training step called with `logits=False` (the fused head and loss)."""
    loss: torch.Tensor | None = None
    """Mean next-token cross-entropy over targets != -100 (without the MoE terms)."""
    aux_loss: torch.Tensor | None = None
    z_loss: torch.Tensor | None = None
    expert_load: torch.Tensor | None = None
    """(L, E) share of routed assignments per layer and expert."""


class Llama(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.pos_embed = (
            nn.Embedding(config.max_seq_len, config.dim) if config.position == "learned" else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.stack = Transformer(config.transformer())  # initialises its own weights
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.bigram_embed = None
        if config.bigram_hash_size:
            self.bigram_embed = nn.Embedding(config.bigram_hash_size, config.dim)
            nn.init.zeros_(self.bigram_embed.weight)
        nn.init.normal_(self.embed.weight, 0.0, config.init_std)
        if self.pos_embed is not None:
            nn.init.normal_(self.pos_embed.weight, 0.0, config.init_std)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        else:
            nn.init.normal_(self.lm_head.weight, 0.0, config.init_std)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_caches: list[KVCache] | None = None,
        start_pos: int = 0,
        segments: torch.Tensor | None = None,
        logits: bool = True,
    ) -> LMOutput:
        """idx (B, T) token ids at positions start_pos.. -> logits (B, T, V) and, with targets (B, T), the loss.

        segments: (B, T) document ids of packed examples (`text_lm/instruct.py`): attention stays
        inside each document and positions restart at 0 in each (`shared/nn/masks.py`).
        logits=False (a training step that needs only the loss): with targets, in an eager step with
        gradients, the head and the loss run fused over row chunks and LMOutput.logits is None
        (`shared/nn/linear_cross_entropy.py`); otherwise it changes nothing.
        """
        T = idx.shape[1]
        mask = positions = None
        if segments is not None:
            mask, positions = document_causal_mask(segments), segment_positions(segments)  # (B,1,T,T), (B,T)
        x = self.embed(idx)  # (B, T, D)
        if self.bigram_embed is not None:
            x = x + self.bigram_embed(self._bigram_ids(idx, kv_caches, start_pos, segments))
        if self.pos_embed is not None:
            if start_pos + T > self.config.max_seq_len:
                raise UserError(
                    f"position {start_pos + T - 1} is past the learned position table "
                    f"(max_seq_len={self.config.max_seq_len}); use position: rope to go longer"
                )
            pos = (
                positions
                if positions is not None
                else torch.arange(start_pos, start_pos + T, device=idx.device)
            )
            x = x + self.pos_embed(pos)
        out = self.stack(self.drop(x), mask, kv_caches=kv_caches, start_pos=start_pos, positions=positions)
        cap = self.config.logit_softcap
        fusable = type(self.lm_head) is nn.Linear  # not an adapter-wrapped head (LoRALinear)
        if (
            not logits
            and targets is not None
            and fusable
            and fused_ce.wanted(out.hidden, self.lm_head.weight)
        ):
            h = out.hidden.flatten(0, 1)  # (B T, D)
            loss = fused_ce.linear_cross_entropy(h, self.lm_head.weight, targets.flatten(), cap)
            return LMOutput(None, loss, out.aux_loss, out.z_loss, out.expert_load)
        z = self.lm_head(out.hidden)  # (B, T, V)
        if cap is not None:
            z = cap * torch.tanh(z / cap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(z.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return LMOutput(z, loss, out.aux_loss, out.z_loss, out.expert_load)

    def _bigram_ids(self, idx, kv_caches, start_pos: int, segments) -> torch.Tensor:
        """idx (B, T) -> rows of the bigram table (B, T): hash(previous token, token) mod rows."""
        first = torch.full_like(idx[:, :1], self.config.vocab_size)  # no previous token
        if start_pos > 0:
            first = getattr(kv_caches, "last_tokens", None)
            if first is None:
                raise ValueError("a bigram-hash model decodes with the caches of Llama.make_kv_caches")
            first = first[:, None]
        prev = torch.cat([first, idx[:, :-1]], dim=1)  # (B, T)
        if segments is not None:  # a packed document's first token has no previous token either
            starts = F.pad(segments[:, 1:] != segments[:, :-1], (1, 0), value=False)
            prev = prev.masked_fill(starts, self.config.vocab_size)
        if kv_caches is not None:
            kv_caches.last_tokens = idx[:, -1]
        return self.bigram_rows(prev, idx)

    def bigram_rows(self, prev: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The bigram table's row of each (previous token, token) pair, any matching shapes."""
        return (prev * 1_000_003 + idx) % self.config.bigram_hash_size

    def make_kv_caches(self, batch_size: int, max_len: int, dtype=None) -> LMCaches:
        return LMCaches(self.stack.make_kv_caches(batch_size, max_len, dtype=dtype))

    def num_params(self, active: bool = False, embeddings: bool = True) -> int:
        """Parameters (tied ones once). active=True counts only top_k of the routed experts."""
        n = sum(p.numel() for p in self.parameters())
        if not embeddings:
            tables = (self.embed, self.pos_embed, self.bigram_embed)
            n -= sum(t.weight.numel() for t in tables if t is not None)
        moe = self.config.moe
        if active and moe is not None:
            for layer in self.stack.layers:
                per_expert = sum(
                    p[0].numel() for p in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)
                )
                n -= per_expert * (moe.n_experts - moe.top_k)
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6 * active non-embedding params + attention.

        The attention term 12 * L * H * Dh * T follows the PaLM appendix (Chowdhery et al. 2022);
        the output head is counted (it is a matmul) but the embedding lookup is not.
        """
        c = self.config
        t = seq_len or c.max_seq_len
        tc = self.stack.cfg
        n = self.num_params(active=True, embeddings=False) + c.vocab_size * c.dim * c.tie_embeddings
        return 6 * n + 12 * c.n_layers * tc.n_heads * tc.head_dim * t
