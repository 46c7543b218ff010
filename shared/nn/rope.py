"""Rotary position embeddings (RoPE, Su et al. 2021).

Each pair of channels (i, i + Dh/2) of q and k is rotated by the angle pos * theta^(-2i/Dh),
so the dot product q.k depends only on the distance between positions. Unlike GPT-2's
learned absolute positions there is nothing to learn and no hard length limit.

Layout: the "half-split" (`rotate_half`) layout of Hugging Face Llama, so weights convert
without permuting. cos/sin tables are precomputed and grow on demand, so decoding past
the training context never indexes out of range.

In a training step `apply_rope` runs as `_RopeFn`, a hand-written backward (the rotation's transpose,
dx = g cos - rotate_half(g) sin) in three passes over x instead of autograd's chain through chunk, neg,
cat, two products and a sum (shared/nn/fused.py; BENCHMARKS.md, issue 12).

Pitfall (ARCHITECTURE.md, section 7): tables grown under `torch.inference_mode()` (generation,
including the samples a validation step decodes) are inference tensors, which autograd refuses
to save for backward ("Inference tensors cannot be saved for backward"); the first training
step after such a sample would fail. So a table made under inference mode and then used outside
it is rebuilt first, as a normal tensor: callers may generate under inference_mode freely.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shared.nn.fused import eager_training


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None) -> torch.Tensor:
    """theta^(-2i/Dh) for i < Dh/2, optionally with Llama-3 frequency scaling."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if not scaling:
        return inv_freq.float()
    # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    factor = scaling["factor"]
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old_len = scaling.get("original_max_position_embeddings", 8192)
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, blended, scaled).float()


class RotaryEmbedding(nn.Module):
    """Holds cos/sin tables of shape (positions, Dh); `forward(positions)` looks them up."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        self.head_dim = head_dim
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, theta, scaling), persistent=False)
        self._build(max_seq_len)

    def _build(self, length: int) -> None:
        device = self.inv_freq.device
        pos = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq)  # (L, Dh/2)
        emb = torch.cat([freqs, freqs], dim=-1)  # (L, Dh): half-split layout
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def _ensure(self, length: int) -> None:
        if length > self.cos.shape[0]:
            self._build(max(length, 2 * self.cos.shape[0]))
        elif (
            not torch.compiler.is_compiling()
            and self.cos.is_inference()
            and not torch.is_inference_mode_enabled()
        ):
            self._build(self.cos.shape[0])  # see the module docstring: inference tables break backward

    def forward(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions start .. start + length - 1, each of shape (T, Dh)."""
        self._ensure(start + length)
        return self.cos[start : start + length], self.sin[start : start + length]

    def lookup(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row positions (B, T) (left-padded batches) -> cos, sin of shape (B, 1, T, Dh)."""
        self._ensure(int(positions.max()) + 1 if positions.numel() else 0)
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, Dh) by the angles whose cos/sin broadcast to it."""
    if eager_training(x):
        return _RopeFn.apply(x, cos, sin)
    return (x * cos + rotate_half(x) * sin).type_as(x)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sign: float) -> torch.Tensor:
    """x cos + sign * rotate_half(x) sin, in three passes (sin's two halves are equal, the half-split
    layout): out = x cos; out_1 -= sign x_2 sin_1; out_2 += sign x_1 sin_2."""
    h = x.shape[-1] // 2
    out = x * cos
    out[..., :h].addcmul_(x[..., h:], sin[..., :h], value=-sign)
    out[..., h:].addcmul_(x[..., :h], sin[..., h:], value=sign)
    return out.to(x.dtype)


class _RopeFn(torch.autograd.Function):
    """apply_rope with the rotation's transpose as its backward (module docstring); cos/sin get no
    gradient (tables)."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, 1.0)

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        return _rotate(g, cos, sin, -1.0), None, None
