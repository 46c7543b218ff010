"""Feed-forward blocks, registered under the `TransformerConfig.mlp` names (`shared/nn/registry.py`).

GPT-2 (`gelu`): down(gelu(up(x))), hidden = 4 * dim, with biases.
SwiGLU (`swiglu`, Shazeer 2020, used by Llama): down(silu(gate(x)) * up(x)). The gate lets each
hidden unit scale itself by the input; at 2/3 of the hidden size it matches the plain
MLP's parameters and trains to a lower loss.
GeGLU (`geglu`, Gemma): the same with GELU(tanh) as the gate's activation.
The gated MLPs compute gate and up with one fused matmul, `gate_up_proj` = [W_gate; W_up]
(`shared/nn/fused.py`); checkpoints with separate gate_proj/up_proj still load.

Every feed-forward returns (y, aux): aux is None here (dense layers have nothing to report)
and the MoE layer's routing statistics in `shared/nn/moe.py`, so the block treats both alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.nn.config import TransformerConfig
from shared.nn.fused import eager_training, fuse_on_load
from shared.nn.registry import register_feed_forward


def activation(kind: str, gelu_approximate: str = "tanh"):
    if kind == "swiglu":
        return F.silu
    if kind in ("geglu", "gelu"):
        return lambda x: F.gelu(x, approximate=gelu_approximate)
    raise ValueError(f"unknown mlp kind {kind!r} (expected 'swiglu', 'geglu' or 'gelu')")


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with act = SiLU, GeGLU with act = GELU; gate and up are
    the two halves of one fused projection `gate_up_proj` (hidden rows each)."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        kind: str = "swiglu",
        bias: bool = False,
        gelu_approximate: str = "tanh",
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fused_sizes = {"gate_up_proj": (hidden_dim, hidden_dim)}  # rows of W_gate, W_up
        self.gate_up_proj = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.act = activation(kind, gelu_approximate)
        fuse_on_load(self, "gate_up_proj", ("gate_proj", "up_proj"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """x (..., D) -> (y (..., D), None)."""
        gate_up = self.gate_up_proj(x)  # (..., 2 hidden): [gate | up]
        if self.act is F.silu and eager_training(gate_up):
            return self.down_proj(_SwiGLUFn.apply(gate_up, self.hidden_dim)), None
        gate, up = gate_up.split(self.hidden_dim, dim=-1)  # (..., hidden) each
        return self.down_proj(self.act(gate) * up), None


class _SwiGLUFn(torch.autograd.Function):
    """silu(gate) * up of the fused [gate | up] tensor, the same numbers as autograd's chain, but the
    backward writes d_gate and d_up straight into the two halves of one buffer: autograd would
    compute them apart and then copy both into a new tensor (split's backward is a cat), a full
    pass over the 2 x hidden wide gradient per layer (BENCHMARKS.md, CPU speed)."""

    @staticmethod
    def forward(ctx, gate_up: torch.Tensor, hidden: int) -> torch.Tensor:
        gate, up = gate_up.split(hidden, dim=-1)
        act = F.silu(gate)
        ctx.save_for_backward(gate_up, act)
        ctx.hidden = hidden
        return act * up

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        gate_up, act = ctx.saved_tensors
        gate, up = gate_up.split(ctx.hidden, dim=-1)
        grad = torch.empty_like(gate_up)
        d_gate, d_up = grad.split(ctx.hidden, dim=-1)
        torch.mul(g, act, out=d_up)
        torch.ops.aten.silu_backward.grad_input(g * up, gate, grad_input=d_gate)
        return grad, None


class MLP(nn.Module):
    """down(gelu(up(x))): the GPT-2 / ViT feed-forward."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, gelu_approximate: str = "tanh"):
        super().__init__()
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.act = activation("gelu", gelu_approximate)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """x (..., D) -> (y (..., D), None)."""
        return self.down_proj(self.act(self.up_proj(x))), None


@register_feed_forward("swiglu")
@register_feed_forward("geglu")
def gated_mlp(cfg: TransformerConfig) -> GatedMLP:
    return GatedMLP(cfg.dim, cfg.hidden_dim, cfg.mlp, cfg.out_bias, cfg.gelu_approximate)


@register_feed_forward("gelu")
def plain_mlp(cfg: TransformerConfig) -> MLP:
    return MLP(cfg.dim, cfg.hidden_dim, cfg.out_bias, cfg.gelu_approximate)
