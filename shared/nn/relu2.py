"""Squared-ReLU feed-forward, registered as `mlp: relu2` (So et al. 2021, Primer).

    y = down(relu(up(x))^2)        hidden = 4 * dim by default, two matrices, no gate

GPT-2's MLP with the GELU replaced by relu(z)^2. Primer found it by searching over TensorFlow
programs for language modelling: the one change that carried over to every architecture they
tried. It is sparse like ReLU (most hidden units are exactly zero) but smooth at zero and
growing quadratically, and it needs no gate, so it keeps the plain MLP's two matrices where
SwiGLU needs three. modded-nanogpt's speedrun records and nanochat use it in place of SwiGLU.

This file is the worked example of `shared/nn/registry.py` and ARCHITECTURE.md section 10: one
class, one decorator; `shared/nn/transformer.py` imports it beside the other built-ins. The
output projection is named `down_proj`, so `shared/nn/init.py` gives it the depth-scaled (or,
with `zero_init_out`, the zero) initialisation. Hugging Face's Llama has no such activation, so the
converters refuse it (`text_lm/config.py`, `unsupported_options`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.nn.config import TransformerConfig
from shared.nn.registry import register_feed_forward


@register_feed_forward("relu2")
class ReLU2(nn.Module):
    """down(relu(up(x))^2): GPT-2's MLP with the GELU replaced by a squared ReLU."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=cfg.out_bias)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=cfg.out_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """x (..., D) -> (y (..., D), None)."""
        return self.down_proj(F.relu(self.up_proj(x)).square()), None
