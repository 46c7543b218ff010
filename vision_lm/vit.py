"""The ViT image tower (Dosovitskiy et al. 2021) with SigLIP's attention-pooling head.

    pixels (B, 3, H, W) -> Conv2d(kernel = stride = P): one D-vector per P x P patch
      -> + learned position embedding (one per patch, row-major order)
      -> shared bidirectional Transformer (pre-LayerNorm, GELU MLP; the final norm is
         HF's `post_layernorm`)
      -> MAP head: one vector per image          (pooling "map", SigLIP)
         or all patch tokens (B, N, D)           (pooling "none", the PaliGemma captioner)

A ViT has no [CLS] token here: SigLIP pools with multihead attention pooling (MAP,
Zhai et al. 2022, "Scaling Vision Transformers"), a learned query ("probe") that attends
over every patch token, followed by a residual MLP. Compared with the GPT-2 stack the
blocks are the same; only the input (patches instead of tokens) and the missing causal
mask differ.

Shapes: B batch, C = 3 channels, H = W image side, P patch side, g = H / P patches per
side, N = g^2 patches, D tower width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shared.errors import UserError
from shared.nn.init import init_weights
from shared.nn.mlp import MLP
from shared.nn.norms import make_norm
from shared.nn.transformer import Transformer
from vision_lm.config import VisionConfig


class MAPHead(nn.Module):
    """Multihead attention pooling: h = MHA(probe, x, x); out = h + MLP(LayerNorm(h)).

    Laid out as HF's `SiglipMultiheadAttentionPoolingHead` (probe, `nn.MultiheadAttention`,
    layernorm, mlp), so weights convert one to one. The attention is torch's
    `nn.MultiheadAttention` because the probe is a cross-attention query, which the shared
    self-attention block does not do; the LayerNorm and MLP are the shared ones.
    """

    def __init__(self, dim: int, n_heads: int, hidden_dim: int, eps: float):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, dim))
        self.attention = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.layernorm = make_norm("layernorm", dim, eps)
        self.mlp = MLP(dim, hidden_dim, bias=True, gelu_approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, D) -> (B, D)."""
        probe = self.probe.expand(x.shape[0], -1, -1)  # (B, 1, D)
        h = self.attention(probe, x, x, need_weights=False)[0]  # (B, 1, D)
        h = h + self.mlp(self.layernorm(h))[0]  # feed-forwards return (y, aux); aux is None here
        return h[:, 0]


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig, init_std: float = 0.02):
        super().__init__()
        self.config = c = config
        self.patch_embed = nn.Conv2d(3, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(c.n_patches, c.dim))
        self.stack = Transformer(c.transformer())
        self.head = MAPHead(c.dim, c.n_heads, c.hidden_dim, c.norm_eps) if c.pooling == "map" else None
        self.init_weights(init_std)

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Everything outside the stack (the stack initialises itself, see `shared/nn/init.py`):

        | parameter                         | initialisation                                  |
        |-----------------------------------|-------------------------------------------------|
        | patch_embed.weight                | normal(0, 1/sqrt(3 P^2)) (LeCun: unit variance)  |
        | patch_embed.bias, all head biases | zeros                                           |
        | pos_embed                         | normal(0, 1/sqrt(D)) (big_vision's learned posemb) |
        | head.probe                        | normal(0, std)                                  |
        | head.attention.in_proj_weight     | xavier uniform (torch's default for MHA)        |
        | head out_proj, mlp                | normal(0, std), down_proj std/sqrt(2)            |
        | head.layernorm                    | weight ones, bias zeros                         |
        """
        fan_in = 3 * self.config.patch_size**2
        nn.init.normal_(self.patch_embed.weight, 0.0, 1 / math.sqrt(fan_in))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.pos_embed, 0.0, 1 / math.sqrt(self.config.dim))
        if self.head is not None:
            init_weights(self.head, n_layers=1, std=std)
            nn.init.normal_(self.head.probe, 0.0, std)
            nn.init.xavier_uniform_(self.head.attention.in_proj_weight)
            nn.init.zeros_(self.head.attention.in_proj_bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, H, W), normalised to [-1, 1] -> (B, D) pooled, or (B, N, D) with pooling "none"."""
        size = self.config.image_size
        if pixels.shape[-2:] != (size, size):
            raise UserError(f"images must be {size}x{size} pixels, got {tuple(pixels.shape[-2:])}")
        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype))  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order
        h = self.stack(x + self.pos_embed).hidden  # (B, N, D), after the final LayerNorm
        return self.head(h) if self.head is not None else h
