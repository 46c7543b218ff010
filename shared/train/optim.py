"""Optimizer parameter groups, the optimizers a YAML can name, and what `configure_optimizers` returns.

Every trainable tensor gets a role, so optimizers and YAML files can treat each kind on its own:
- "matrix": hidden weight matrices (Linear weights inside the stacks, 3-D MoE expert stacks);
  Muon's domain (`shared/train/muon.py`).
- "embedding": input tables and layers (nn.Embedding weights, patch-embedding convolutions,
  learned position tables named `*pos_embed*`); a tied output head is the embedding.
- "head": an untied output layer (`lm_head`).
- "vector": gains, biases and scalars (fewer than two dimensions larger than 1).

Weight decay (AdamW, Loshchilov & Hutter 2019) shrinks weights towards zero; it helps matrices but
hurts gains and offsets, so every 1-D tensor and, by default, nn.Embedding tables are put in groups
with weight_decay = 0. Groups are split by (role, decay, lr factor); tied tensors appear once.

Per-role settings (`groups:` of `AdamW` and `MuonAdamW` in a YAML) override the optimizer's own
arguments for that role only, e.g. embeddings far hotter than matrices (modded-nanogpt, nanochat):

    optimizer:
      class_path: shared.train.optim.AdamW
      init_args: {lr: 0.003, betas: [0.9, 0.95], groups: {embedding: {lr: 0.03}}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from shared.errors import UserError

ROLES = ("matrix", "embedding", "head", "vector")
HEAD_MODULES = ("lm_head",)
"""Module names (last component) of output layers that are not tied to the embedding."""


def role_of(name: str, p: torch.Tensor, module: nn.Module | None, embedding_ids: set[int]) -> str:
    """The role of parameter `name` (see the module docstring)."""
    if sum(s > 1 for s in p.shape) < 2:
        return "vector"
    if id(p) in embedding_ids or isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return "embedding"
    owner, _, leaf = name.rpartition(".")
    if owner.rpartition(".")[2] in HEAD_MODULES:
        return "head"
    if "pos_embed" in leaf or "pos_embed" in owner.rpartition(".")[2]:
        return "embedding"
    return "matrix"


def param_groups(
    module: nn.Module,
    no_decay_embeddings: bool = True,
    lr_multipliers: dict[str, float] | None = None,
) -> list[dict]:
    """Groups by (role, decay, lr factor): decayed matrices, undecayed 1-D tensors (+ embeddings).

    Each group carries `role`, `name` (its LearningRateMonitor tag) and `lr_scale` (read by the
    schedule): lr_multipliers maps a
    parameter-name prefix (e.g. "vision.") to a factor of the learning rate of the parameters under it.
    """
    modules = dict(module.named_modules())
    embedding_params = {id(m.weight) for m in modules.values() if isinstance(m, nn.Embedding)}
    groups: dict[tuple[str, bool, float], list[torch.Tensor]] = {}
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
        role = role_of(name, p, modules.get(name.rpartition(".")[0]), embedding_params)
        groups.setdefault((role, decay, scale), []).append(p)
    out = []
    for (role, decay, scale), params in groups.items():
        name = role if scale == 1.0 else f"{role}-x{scale:g}"  # lr-<Optimizer>/<name> in TensorBoard
        if any(r == role and s == scale and d != decay for r, d, s in groups) and not decay:
            name += "-wd0"
        g = {"params": params, "lr_scale": scale, "role": role, "name": name}
        if not decay:
            g["weight_decay"] = 0.0
        out.append(g)
    return out


def apply_group_settings(params: Iterable, settings: dict[str, dict] | None, allowed: Iterable[str]) -> list:
    """Copy `settings[role]` into every group of that role (before the optimizer fills in its
    defaults, so these win). A role or a key the optimizer does not know is one UserError."""
    groups = list(params)
    if not settings:
        return groups
    allowed = set(allowed)
    for role, values in settings.items():
        if role not in ROLES:
            raise UserError(f"optimizer groups: unknown role {role!r}; roles are {', '.join(ROLES)}")
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise UserError(
                f"optimizer groups.{role}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(allowed))}"
            )
    if not all(isinstance(g, dict) for g in groups):
        raise UserError("optimizer groups: the parameters come without roles (not from param_groups)")
    out = []
    for g in groups:
        extra = settings.get(g.get("role"), {})
        out.append({**g, **{k: tuple(v) if k == "betas" else v for k, v in extra.items()}})
    return out


class AdamW(torch.optim.AdamW):
    """torch's AdamW plus per-role settings (`groups`), so a YAML can give embeddings their own
    learning rate and betas. Without `groups` it is torch.optim.AdamW, value for value."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        groups: dict[str, dict[str, float | list[float]]] | None = None,
    ):
        """
        Args:
            params: our parameter groups (`param_groups`), each with its `role`.
            lr: peak learning rate of every group a `groups` entry does not set.
            betas: Adam's (beta1, beta2).
            eps: Adam's epsilon.
            weight_decay: decoupled weight decay of the decayed groups.
            groups: per role ("matrix", "embedding", "head", "vector") a dict of settings that
                override the ones above for that role: lr, betas, eps, weight_decay.
        """
        params = apply_group_settings(params, groups, ("lr", "betas", "eps", "weight_decay"))
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def configure_optimizer(
    module: nn.Module,
    optimizer: Callable[[Iterable], torch.optim.Optimizer],
    multiplier: Callable[[int], float],
    no_decay_embeddings: bool = True,
    lr_multipliers: dict[str, float] | None = None,
) -> dict:
    """What `configure_optimizers` returns: the injected optimizer over our groups + a per-step schedule
    (`multiplier`: step -> factor of each group's peak, `shared/train/schedule.py`)."""
    from shared.train.schedule import lambda_scheduler

    opt = optimizer(param_groups(module, no_decay_embeddings, lr_multipliers))
    return {"optimizer": opt, "lr_scheduler": lambda_scheduler(opt, multiplier)}


def log_grad_norm(module) -> None:
    """From `on_before_optimizer_step`: log `train/grad_norm`, the global L2 norm of the (unscaled)
    gradients of a LightningModule, every `log_every_n_steps` steps."""
    if module.trainer.global_step % module.trainer.log_every_n_steps == 0:
        norms = [p.grad.detach().norm(2) for p in module.parameters() if p.grad is not None]
        if norms:
            module.log("train/grad_norm", torch.stack(norms).norm(2))
