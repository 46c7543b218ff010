"""Feed-forward blocks, registered under the `TransformerConfig.mlp` names (`shared/nn/registry.py`).

GPT-2 (`gelu`): down(gelu(up(x))), hidden = 4 * dim, with biases.
SwiGLU (`swiglu`, Shazeer 2020, used by Llama): down(silu(gate(x)) * up(x)). The gate lets each
hidden unit scale itself by the input; at 2/3 of the hidden size it matches the plain
MLP's parameters and trains to a lower loss.
GeGLU (`geglu`, Gemma): the same with GELU(tanh) as the gate's activation.

Every feed-forward returns (y, aux): aux is None here (dense layers have nothing to report)
and the MoE layer's routing statistics in `shared/nn/moe.py`, so the block treats both alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.nn.config import TransformerConfig
from shared.nn.registry import register_feed_forward


def activation(kind: str, gelu_approximate: str = "tanh"):
    if kind == "swiglu":
        return F.silu
    if kind in ("geglu", "gelu"):
        return lambda x: F.gelu(x, approximate=gelu_approximate)
    raise ValueError(f"unknown mlp kind {kind!r} (expected 'swiglu', 'geglu' or 'gelu')")


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with act = SiLU, GeGLU with act = GELU."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        kind: str = "swiglu",
        bias: bool = False,
        gelu_approximate: str = "tanh",
    ):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.act = activation(kind, gelu_approximate)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """x (..., D) -> (y (..., D), None)."""
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x)), None


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
