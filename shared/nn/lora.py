"""LoRA: low-rank adapters on frozen linear layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation").

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T        W (out, in) frozen; A (r, in), B (out, r) train

The weight update of fine-tuning, dW = (alpha / r) B A, is constrained to rank r << min(in, out):
r * (in + out) trainable numbers per matrix instead of in * out. B starts at zero, so the adapted
model starts exactly as the base; A starts like a Linear's weight (Kaiming-uniform), as in the
paper's reference code. The scale alpha / r keeps the update's size roughly independent of r, so
the learning rate need not be retuned when r changes. After training the update folds into the
weight, W' = W + (alpha / r) B A (`merge_lora`): the merged model is a plain model with the
base's shapes and no extra cost per token, which is what exports write.

`LoRALinear` subclasses `nn.Linear` and shares the base layer's `weight` and `bias` Parameters, so
the base's state-dict names (`...qkv_proj.weight`) stay what they were; the adapters add
`...qkv_proj.lora_A` and `...qkv_proj.lora_B`. Shapes: N any leading dims, r the rank.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import UserError


class LoRALinear(nn.Linear):
    """A frozen `nn.Linear` plus a trainable rank-r update (alpha / r) B A (module docstring)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        nn.Module.__init__(self)  # not nn.Linear.__init__: the weight is the base's, not a new one
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (out, in), shared with the base layer
        self.bias = base.bias
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        p = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=p.device, dtype=p.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=p.device, dtype=p.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own initialisation
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, in) -> (N, out): the base projection plus the low-rank update."""
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (N, r) -> (N, out)
        return F.linear(x, self.weight, self.bias) + self.scale * update

    def delta(self) -> torch.Tensor:
        """(out, in) the weight update (alpha / r) B A."""
        return self.scale * (self.lora_B @ self.lora_A)

    def merged(self) -> nn.Linear:
        """A plain `nn.Linear` with W + (alpha / r) B A (computed in fp32, stored in W's dtype)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        out = out.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            w = self.weight.float() + self.scale * (self.lora_B.float() @ self.lora_A.float())
            out.weight.copy_(w.to(self.weight.dtype))
            if self.bias is not None:
                out.bias.copy_(self.bias)
        out.weight.requires_grad_(self.weight.requires_grad)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, rank={self.rank}, alpha={self.alpha}"


def apply_lora(
    model: nn.Module, targets: Sequence[str], rank: int, alpha: float, dropout: float = 0.0
) -> list[str]:
    """Wrap in a `LoRALinear` every `nn.Linear` named by `targets`: a layer's own name ("qkv_proj",
    "o_proj": every layer so named) or a glob over full names ("decoder.*.qkv_proj": those under
    `decoder` only). Returns the full names wrapped; a target matching nothing is a UserError (a
    typo would otherwise train nothing)."""
    if rank <= 0:
        raise UserError(f"lora.rank must be positive, got {rank}")
    wrapped: dict[str, str] = {}  # full name -> the target that chose it
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            hit = next((t for t in targets if t == child_name or fnmatch.fnmatchcase(full, t)), None)
            if hit is not None and type(child) is nn.Linear:
                setattr(parent, child_name, LoRALinear(child, rank, alpha, dropout))
                wrapped[full] = hit
    unmatched = [t for t in targets if t not in wrapped.values()]
    if unmatched:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m) is nn.Linear})
        raise UserError(f"lora.targets {unmatched} match no linear layer of the model (it has {linears})")
    return list(wrapped)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight in place (`LoRALinear` -> `nn.Linear`); returns how many."""
    n = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merged())
                n += 1
    return n


def is_lora_param(name: str) -> bool:
    """True for the adapters' parameter names (`...lora_A`, `...lora_B`)."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ("lora_A", "lora_B")
