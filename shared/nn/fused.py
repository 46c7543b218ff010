"""Fused projections: several linear maps of the same input as one matmul.

    [q | k | v] = x [W_q; W_k; W_v]^T        (attention's `qkv_proj`)
    [g | u]     = x [W_gate; W_up]^T          (the gated MLP's `gate_up_proj`)

One (D, n_1 + ... + n_k) matmul instead of k smaller ones: one kernel launch, one read of x,
and, at the small widths this project trains on a CPU, a measurably shorter step (fewer
dispatches; BENCHMARKS.md, CPU speed). The fused weight is the row concatenation of the
separate ones, so outputs are the same numbers.

A module with fused projections declares `fused_sizes = {"qkv_proj": (n_q, n_k, n_v)}`:
`split_sizes(model)` collects them by full name for the Hugging Face converters and the GGUF
writer, which split the fused tensor into HF's separate ones (and join them back on import).
`fuse_on_load` keeps older checkpoints loading: their separate `q_proj/k_proj/v_proj` (or
`gate_proj/up_proj`) tensors are concatenated into the fused one before loading.

The same idea on the backward side: RMSNorm, SwiGLU and RoPE have hand-written backward passes
(`torch.autograd.Function`s in their modules) that take fewer passes over memory than autograd's
chain of small nodes; `eager_training` says when they are used. The output head and the loss are
fused too, over row chunks (`shared/nn/linear_cross_entropy.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def fuse_on_load(module: nn.Module, fused: str, parts: Sequence[str]) -> None:
    """Let `module.load_state_dict` accept `prefix.part.weight/bias` (for each of `parts`) in place of
    `prefix.fused.weight/bias`: the parts are concatenated along rows, in `parts` order."""

    def hook(state_dict, prefix, *args, **kwargs) -> None:
        for leaf in ("weight", "bias"):
            keys = [f"{prefix}{p}.{leaf}" for p in parts]
            if all(k in state_dict for k in keys):
                state_dict[f"{prefix}{fused}.{leaf}"] = torch.cat([state_dict.pop(k) for k in keys])

    module._register_load_state_dict_pre_hook(hook)


def split_sizes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Full module name of every fused projection in `model` -> its row sizes, e.g.
    {"stack.layers.0.attn.qkv_proj": (256, 64, 64), "stack.layers.0.mlp.gate_up_proj": (512, 512)}."""
    out = {}
    for name, m in model.named_modules():
        for child, sizes in getattr(m, "fused_sizes", {}).items():
            out[f"{name}.{child}" if name else child] = tuple(sizes)
    return out


def eager_training(x: torch.Tensor) -> bool:
    """Whether a hand-written backward is worth it for x: gradients wanted, and not under
    torch.compile, which fuses autograd's own chain better than it traces ours (an `out=` write
    into a strided half breaks its graph)."""
    return torch.is_grad_enabled() and x.requires_grad and not torch.compiler.is_compiling()
