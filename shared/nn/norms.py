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

from shared.nn.fused import eager_training


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5, unit_offset: bool = False):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if eager_training(x) or eager_training(self.weight):
            return _RMSNormFn.apply(x, self.weight, self.eps, self.unit_offset)
        return _rms_norm(x, self.weight, self.eps, self.unit_offset)[0]

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight) if self.unit_offset else nn.init.ones_(self.weight)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, unit_offset={self.unit_offset}"


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, unit_offset: bool):
    """(y, x_hat, r): x_hat = x r in fp32, r = 1 / sqrt(mean(x^2) + eps) per row."""
    h = x.float()
    r = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = h * r
    if unit_offset:  # Gemma multiplies in fp32, then casts
        return (h * (1.0 + weight.float())).type_as(x), h, r
    return weight * h.type_as(x), h, r  # Llama casts first, then multiplies


class _RMSNormFn(torch.autograd.Function):
    """RMSNorm with its backward written out: the forward is `_rms_norm`'s (the same numbers as the
    module always gave), the backward takes about six passes over x where autograd's chain of
    pow/mean/rsqrt/mul nodes takes about ten, and saves only x_hat and r (BENCHMARKS.md, CPU speed).

        y = w * x_hat,  x_hat = x r:   dw = sum_rows(g * x_hat),
        dx = r * (d - x_hat * mean(d * x_hat)),  d = g * w  (the gradient reaching x_hat)
    """

    @staticmethod
    def forward(ctx, x, weight, eps: float, unit_offset: bool):
        y, x_hat, r = _rms_norm(x, weight, eps, unit_offset)
        ctx.save_for_backward(x_hat, r, weight)
        ctx.unit_offset, ctx.x_dtype = unit_offset, x.dtype
        return y

    @staticmethod
    def backward(ctx, g):
        x_hat, r, weight = ctx.saved_tensors
        dx = dw = None
        if ctx.unit_offset:
            g = g.float()
            if ctx.needs_input_grad[1]:
                dw = (g * x_hat).reshape(-1, x_hat.shape[-1]).sum(0).to(weight.dtype)
            d = g * (1.0 + weight.float())
        else:
            if ctx.needs_input_grad[1]:
                dw = (g * x_hat.to(ctx.x_dtype)).reshape(-1, x_hat.shape[-1]).sum(0).to(weight.dtype)
            d = (g * weight).float()
        if ctx.needs_input_grad[0]:
            mean = (d * x_hat).mean(-1, keepdim=True)
            dx = torch.addcmul(d, x_hat, mean, value=-1).mul_(r).to(ctx.x_dtype)
        return dx, dw, None, None


def make_norm(
    kind: str, dim: int, eps: float = 1e-5, unit_offset: bool = False, bias: bool = True
) -> nn.Module:
    """`rmsnorm` -> RMSNorm; `layernorm` -> nn.LayerNorm (with a bias unless `bias=False`)."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps, unit_offset=unit_offset)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    raise ValueError(f"unknown norm kind {kind!r} (expected 'rmsnorm' or 'layernorm')")
