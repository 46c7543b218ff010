"""Normalisation layers.

RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * w. Compared with
GPT-2's LayerNorm it drops the mean subtraction and the bias: cheaper, and as good.
Gemma scales by (1 + w) with w initialised to zero (`unit_offset=True`).
The statistics are computed in fp32 even under bf16 autocast, as in Llama and Gemma.

The same RMSNorm, over each head's Dh, is QK-norm (`TransformerConfig.qk_norm`; Dehghani et al.
2023, OLMo 2, Qwen3): attention normalises q and k before RoPE, so a logit q.k / sqrt(Dh) is
at most max|w_q| max|w_k| sqrt(Dh) whatever the projections' scale, which stops the attention-logit
growth that destabilises training at high learning rates (`shared/nn/attention.py`).
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5, unit_offset: bool = False):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.unit_offset:  # Gemma multiplies in fp32, then casts
            return (h * (1.0 + self.weight.float())).type_as(x)
        return self.weight * h.type_as(x)  # Llama casts first, then multiplies

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight) if self.unit_offset else nn.init.ones_(self.weight)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, unit_offset={self.unit_offset}"


def make_norm(
    kind: str, dim: int, eps: float = 1e-5, unit_offset: bool = False, bias: bool = True
) -> nn.Module:
    """`rmsnorm` -> RMSNorm; `layernorm` -> nn.LayerNorm (with a bias unless `bias=False`)."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps, unit_offset=unit_offset)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    raise ValueError(f"unknown norm kind {kind!r} (expected 'rmsnorm' or 'layernorm')")
