"""Optimizer parameter groups and the learning-rate schedule used by every system.

Weight decay (AdamW, Loshchilov & Hutter 2019) shrinks weights towards zero; it helps
matrices but hurts gains and offsets, so norms, biases (every 1-D tensor) and, by default,
embeddings are put in a group with weight_decay = 0.

Schedule: linear warmup from 0 to the peak over `warmup_steps`, then cosine decay to
`min_lr_ratio * peak` at `total_steps` (stepped per optimizer step, not per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


def param_groups(
    module: nn.Module,
    no_decay_embeddings: bool = True,
    lr_multipliers: dict[str, float] | None = None,
) -> list[dict]:
    """AdamW groups: decayed matrices, undecayed 1-D tensors (+ embeddings); tied tensors once.

    lr_multipliers maps a parameter-name prefix (e.g. "vision.") to a factor applied to the
    learning rate of the parameters under it (`lr_scale` in the group, read by the schedule).
    """
    embedding_params = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    seen: set[int] = set()
    for name, p in module.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        decay = p.dim() >= 2 and not (no_decay_embeddings and id(p) in embedding_params)
        scale = 1.0
        for prefix, factor in (lr_multipliers or {}).items():
            if name.startswith(prefix):
                scale = factor
        groups.setdefault((decay, scale), []).append(p)
    out = []
    for (decay, scale), params in groups.items():
        g = {"params": params, "lr_scale": scale}
        if not decay:
            g["weight_decay"] = 0.0
        out.append(g)
    return out


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Multiplier of the peak learning rate at `step`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def configure_adamw(
    module: nn.Module,
    optimizer: Callable[[Iterable], torch.optim.Optimizer],
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.1,
    no_decay_embeddings: bool = True,
    lr_multipliers: dict[str, float] | None = None,
) -> dict:
    """What `configure_optimizers` returns: the injected optimizer over our groups + a per-step schedule."""
    opt = optimizer(param_groups(module, no_decay_embeddings, lr_multipliers))
    scales = [g.get("lr_scale", 1.0) for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        [lambda s, k=k: k * warmup_cosine(s, warmup_steps, total_steps, min_lr_ratio) for k in scales],
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


def schedule_length(trainer) -> int:
    """The optimizer steps the run will take (`Trainer.estimated_stepping_batches`), which the schedule needs."""
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        from shared.errors import UserError

        raise UserError("set trainer.max_steps or trainer.max_epochs: the schedule needs a length")
    return int(total)


def log_grad_norm(module) -> None:
    """From `on_before_optimizer_step`: log `train/grad_norm`, the global L2 norm of the (unscaled)
    gradients of a LightningModule, every `log_every_n_steps` steps."""
    if module.trainer.global_step % module.trainer.log_every_n_steps == 0:
        norms = [p.grad.detach().norm(2) for p in module.parameters() if p.grad is not None]
        if norms:
            module.log("train/grad_norm", torch.stack(norms).norm(2))
