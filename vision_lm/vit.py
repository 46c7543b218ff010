"""The ViT image tower (Dosovitskiy et al. 2021) with SigLIP's attention-pooling head.

    pixels (B, 3, H, W) -> Conv2d(kernel = stride = P): one D-vector per P x P patch
      -> + learned position embedding (one per patch, row-major order)
      -> shared bidirectional Transformer (pre-LayerNorm, GELU MLP; the final norm is
         HF's `post_layernorm`)
      -> MAP head: one vector per image          (pooling "map", SigLIP)
         or the max over patch tokens (B, D)     (pooling "max": small objects are not averaged away)
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
from collections.abc import Sequence

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


class EdgeStem(nn.Module):
    """A colour-invariant path to shape: pixels (B, 3, H, W) -> (B, D, g, g), added to the patch embedding.

        e = sqrt(sum_c (Sx * x_c)^2 + (Sy * x_c)^2)     Sobel gradient magnitude, (B, 1, H, W)
        e = e / max_hw(e)                               the outline at unit contrast, whatever the colours
        -> [Conv3x3 stride 2 -> GELU] x log2(P) -> Conv1x1 to D

    A red square and a green square give (nearly) the same e, so whatever this path learns about
    shape transfers to colours it never saw with that shape; the RGB patch embedding keeps the
    colour. Early convolutions also help small ViTs (Xiao et al. 2021, "Early convolutions help
    transformers see better"). The last conv starts at zero: at initialisation the tower is the plain ViT.
    """

    def __init__(self, patch_size: int, dim: int, channels: int = 32):
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
        self.register_buffer(
            "sobel", torch.stack([sobel, sobel.T])[:, None], persistent=False
        )  # (2, 1, 3, 3)
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(patch_size.bit_length() - 1):  # log2(P) stride-2 convolutions
            layers += [nn.Conv2d(c_in, channels, 3, stride=2, padding=1), nn.GELU()]
            c_in = channels
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def edges(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1, H, W) gradient magnitude scaled to max 1 per image."""
        B, C, H, W = pixels.shape
        x = nn.functional.pad(
            pixels.reshape(B * C, 1, H, W), (1, 1, 1, 1), mode="replicate"
        )  # no border edge
        g = nn.functional.conv2d(x, self.sobel.to(pixels.dtype))  # (B * C, 2, H, W)
        g = g.reshape(B, C, 2, H, W).square().sum((1, 2)).add(1e-12).sqrt()[:, None]  # (B, 1, H, W)
        return g / g.amax((2, 3), keepdim=True).clamp_min(1e-6)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(self.edges(pixels)))  # (B, D, g, g)


class ConvStem(nn.Module):
    """`vision.stem: conv`: pixels (B, 3, H, W) -> (B, D, g, g), in place of the linear patch embedding.

        [Conv3x3 stride 2 -> GELU] x log2(P), channels D / 2^(log2(P) - 1) ... D / 2, D -> Conv1x1 to D

    A linear patchifier sees a small shape as whichever fragments the fixed P x P grid cuts it into,
    and a one-pixel shift changes them all; 3x3 filters see edges and corners the same wherever they
    fall, so shape is there from the first steps (Xiao et al. 2021). About 20% more compute than the
    transformer of siglip-tiny; the 1x1 output has unit variance at initialisation, as the patch
    embedding has.
    """

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        n = patch_size.bit_length() - 1  # log2(P) stride-2 convolutions
        widths = [max(16, dim >> (n - 1 - k)) for k in range(n)]
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GELU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, dim, 1)

    @torch.no_grad()
    def init_weights(self) -> None:
        for m in [*self.convs, self.proj]:
            if isinstance(m, nn.Conv2d):
                gain = 1.0 if m is self.proj else 2.0  # GELU passes about half the variance, as ReLU
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                nn.init.normal_(m.weight, 0.0, math.sqrt(gain / fan_in))
                nn.init.zeros_(m.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(pixels))  # (B, D, g, g)


class FactoredStem(nn.Module):
    """`vision.stem: factored`: colour and outline on separate paths, summed per patch (B, 3, H, W) -> (B, D, g, g).

        colour:  [Conv1x1 3 -> 32 -> GELU] per pixel -> mean over each P x P patch -> Conv1x1 to D
        outline: `EdgeStem` (Sobel magnitude over the colour channels -> strided 3x3 convolutions)

    The colour path sees each pixel alone and then a patch's average of those features, which keeps
    which colours a patch holds and how much of each but not where they lie: it cannot draw shape.
    The outline path sees edges but no colour. So no filter of the stem can respond to "a green edge
    of this form"; a linear patchifier, whose filters are linear in RGB, learns exactly such
    colour-bound shape filters and names a held-out colour-shape pair as a seen one (BENCHMARKS.md,
    issue 13). Binding stays possible: both paths land in the same patch token.
    """

    def __init__(self, patch_size: int, dim: int, channels: int = 32):
        super().__init__()
        self.colour = nn.Sequential(nn.Conv2d(3, channels, 1), nn.GELU(), nn.AvgPool2d(patch_size))
        self.colour_proj = nn.Conv2d(channels, dim, 1)
        self.outline = EdgeStem(patch_size, dim, channels)

    @torch.no_grad()
    def init_weights(self) -> None:
        """He-normal (gain 2 before a GELU, as `ConvStem`); each path's output at variance 1/2, so their sum
        starts at the unit variance of a patch embedding."""
        outputs = (self.colour_proj, self.outline.proj)
        for m in [self.colour[0], *self.outline.convs, *outputs]:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                nn.init.normal_(m.weight, 0.0, math.sqrt((0.5 if m in outputs else 2.0) / fan_in))
                nn.init.zeros_(m.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.colour_proj(self.colour(pixels)) + self.outline(pixels)


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig, init_std: float = 0.02):
        super().__init__()
        self.config = c = config
        if c.stem != "patch":
            stem = ConvStem if c.stem == "conv" else FactoredStem
            self.conv_stem, self.patch_embed = stem(c.patch_size, c.dim), None
        else:
            self.conv_stem = None
            self.patch_embed = nn.Conv2d(3, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.shape_stem = EdgeStem(c.patch_size, c.dim) if c.shape_stem else None
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
        if self.conv_stem is not None:
            self.conv_stem.init_weights()  # instead of patch_embed (`ConvStem`, `FactoredStem`)
        else:
            fan_in = 3 * self.config.patch_size**2
            nn.init.normal_(self.patch_embed.weight, 0.0, 1 / math.sqrt(fan_in))
            nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.pos_embed, 0.0, 1 / math.sqrt(self.config.dim))
        if self.head is not None:
            init_weights(self.head, n_layers=1, std=std)
            nn.init.normal_(self.head.probe, 0.0, std)
            nn.init.xavier_uniform_(self.head.attention.in_proj_weight)
            nn.init.zeros_(self.head.attention.in_proj_bias)

    def forward(self, pixels: torch.Tensor, layers: Sequence[int] = (-1,)) -> torch.Tensor:
        """pixels (B, 3, H, W), normalised to [-1, 1] -> (B, D) pooled ("map", "max"), or (B, N, D) ("none").

        layers (unpooled only): which of the L + 1 token states to return, concatenated along features
        (B, N, D * len(layers)): 0 = the stem's patch embeddings plus positions, i = block i's output,
        L (or -1) = the last block's output after the final norm (what PaliGemma reads; the default).
        """
        size = self.config.image_size
        if pixels.shape[-2:] != (size, size):
            raise UserError(f"images must be {size}x{size} pixels, got {tuple(pixels.shape[-2:])}")
        embed = self.conv_stem or self.patch_embed
        pixels = pixels.to(self.pos_embed.dtype)
        x = embed(pixels)  # (B, D, g, g)
        if self.shape_stem is not None:
            x = x + self.shape_stem(pixels)  # (B, D, g, g): the colour-invariant outline
        x = x.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order
        out = self.stack(x + self.pos_embed, output_hidden_states=tuple(layers) != (-1,))
        h = out.hidden  # (B, N, D), after the final LayerNorm
        if out.hidden_states is not None:  # the last state normed, as `h`
            states = out.hidden_states[:-1] + [h]
            return torch.cat([states[i] for i in layers], dim=-1)  # (B, N, D * len(layers))
        if self.config.pooling == "max":
            return h.amax(1)  # (B, D): each feature where it is strongest
        return self.head(h) if self.head is not None else h
