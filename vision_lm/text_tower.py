"""SigLIP's text tower: a bidirectional Transformer read out at its last position.

    ids (B, T) -> token embedding + learned position embedding
      -> shared bidirectional Transformer (pre-LayerNorm, GELU MLP, final LayerNorm)
      -> hidden state at the LAST position (B, D) -> Linear head -> (B, E)

Pooling follows Hugging Face's `SiglipTextModel` (and big_vision): the vector read out is
position T - 1 whatever token sits there, and there is no attention mask. Captions are
therefore always padded to the fixed length `max_len` (`<|eos|>` after the text, then
`<|pad|>`), in training and at inference alike, so the read-out position is the same
slot every time and, attending to every token, it learns to summarise the caption. This is
CLIP's text tower minus two things: no causal mask, and no pooling at the EOS token.

Shapes: B batch, T tokens (= max_len), D tower width, E embedding size.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.errors import UserError
from shared.nn.transformer import Transformer
from vision_lm.config import TextTowerConfig


class TextTower(nn.Module):
    def __init__(self, config: TextTowerConfig, embed_dim: int, init_std: float = 0.02):
        super().__init__()
        self.config = c = config
        self.token_embed = nn.Embedding(c.vocab_size, c.dim)
        self.pos_embed = nn.Parameter(torch.zeros(c.max_len, c.dim))
        self.stack = Transformer(c.transformer())
        self.head = nn.Linear(c.dim, embed_dim)
        self.init_weights(init_std)

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """token_embed, pos_embed and head.weight: normal(0, std); head.bias: zeros.

        The stack initialises itself (`shared/nn/init.py`).
        """
        for p in (self.token_embed.weight, self.pos_embed, self.head.weight):
            nn.init.normal_(p, 0.0, std)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T), T <= max_len (use max_len: see the module docstring) -> (B, E)."""
        T = ids.shape[1]
        if T > self.config.max_len:
            raise UserError(f"text of {T} tokens is longer than text.max_len={self.config.max_len}")
        x = self.token_embed(ids) + self.pos_embed[:T]  # (B, T, D)
        h = self.stack(x).hidden  # (B, T, D), after the final LayerNorm
        if self.config.pooling == "mean":
            return self.head(h.mean(dim=1))  # (B, E): every position (config.TextTowerConfig.pooling)
        return self.head(h[:, -1])  # (B, E): the last position, as HF
