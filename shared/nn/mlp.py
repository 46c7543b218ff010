"""Feed-forward blocks.

GPT-2: down(gelu(up(x))), hidden = 4 * dim, with biases.
SwiGLU (Shazeer 2020, used by Llama): down(silu(gate(x)) * up(x)). The gate lets each
hidden unit scale itself by the input; at 2/3 of the hidden size it matches the plain
MLP's parameters and trains to a lower loss.
GeGLU (Gemma): the same with GELU(tanh) as the gate's activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class MLP(nn.Module):
    """down(gelu(up(x))): the GPT-2 / ViT feed-forward."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, gelu_approximate: str = "tanh"):
        super().__init__()
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.act = activation("gelu", gelu_approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.up_proj(x)))


def make_mlp(kind: str, dim: int, hidden_dim: int, bias: bool, gelu_approximate: str = "tanh") -> nn.Module:
    if kind == "gelu":
        return MLP(dim, hidden_dim, bias=bias, gelu_approximate=gelu_approximate)
    return GatedMLP(dim, hidden_dim, kind=kind, bias=bias, gelu_approximate=gelu_approximate)
