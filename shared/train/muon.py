"""Muon for the hidden matrices, AdamW for the rest, in one torch optimizer.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers in neural networks"; Liu et al.
2025, "Muon is scalable for LLM training"): keep SGD momentum M of the gradient G of a weight
matrix, then replace the update by the nearest semi-orthogonal matrix, O = U V^T where
M = U S V^T, approximated by five steps of a quintic Newton-Schulz iteration

    X <- X / ||X||_F ;  repeat: A = X X^T ;  X <- a X + (b A + c A^2) X,   (a, b, c) = (3.4445, -4.775, 2.0315)

which pushes every singular value of X towards ~1 (to about 0.7-1.2: these coefficients trade exact
convergence for a steep slope at zero). Every direction of the update then moves by the same
amount, instead of the few dominant directions of a raw gradient. W <- W (1 - lr wd) - lr_eff O,
lr_eff = lr * sqrt(max(1, rows / cols)) (Keller Jordan's scaling) or, with
`adjust_lr="match_rms_adamw"`, lr * 0.2 * sqrt(max(rows, cols)) (Moonshot's, so AdamW's rate fits).

Only hidden matrices take Muon; embeddings, the output head and gains/biases take AdamW (the
`role` of each group, `shared/train/optim.py`). A 3-D tensor (a stack of MoE experts, E x D x H)
is E matrices, orthogonalised each on its own.

Why not `torch.optim.Muon` (torch 2.13 has one): it takes 2-D tensors only, runs Newton-Schulz in
bfloat16 always (slow on CPUs without fast bf16 matmuls, `shared/train/precision.py`), and a second
optimizer would need Lightning's manual optimization. With `ns_dtype="bfloat16"` ours computes the
same update as torch's (tests/shared/test_muon.py).
"""

from __future__ import annotations

import math

import torch

from shared.train.optim import apply_group_settings

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32, eps: float = 1e-7):
    """The semi-orthogonal factor of each matrix of `g` (..., m, n), about U V^T, in `dtype`."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    wide = x.size(-2) > x.size(-1)
    if wide:  # iterate on the smaller Gram matrix: X X^T is min(m, n) square
        x = x.mT
    norm = x.norm() if x.dim() == 2 else x.norm(dim=(-2, -1), keepdim=True)
    x = x / norm.clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.mT  # (..., k, k), k = min(m, n)
        if x.dim() == 2:  # torch.optim.Muon's exact operations (addmm) for 2-D
            update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            x = torch.addmm(x, update, x, beta=a)
        else:
            x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if wide else x


def _ns_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        from shared.train.precision import bf16_is_fast

        return torch.bfloat16 if bf16_is_fast(device) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


class MuonAdamW(torch.optim.AdamW):
    """One optimizer: Muon on the groups whose role is "matrix", AdamW (torch's own step) on the others.

    One optimizer keeps Lightning's automatic optimization, gradient clipping and accumulation and
    a single state dict (momentum buffers beside Adam's moments) for checkpoints and resume.
    """

    def __init__(
        self,
        params,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        muon_lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: str = "auto",
        adjust_lr: str = "original",
        groups: dict[str, dict[str, bool | int | float | list[float]]] | None = None,
    ):
        """
        Args:
            params: our parameter groups (`shared.train.optim.param_groups`), each with its `role`.
            lr: AdamW's peak learning rate (embeddings, head, gains and biases).
            betas: AdamW's (beta1, beta2).
            eps: AdamW's epsilon.
            weight_decay: decoupled weight decay of the decayed groups (AdamW and Muon alike;
                speedruns at this length use 0).
            muon_lr: Muon's peak learning rate (hidden matrices); modded-nanogpt uses ~0.02-0.05.
            momentum: Muon's momentum (0.95).
            nesterov: Nesterov momentum for Muon (the update orthogonalises g + momentum * buffer).
            ns_steps: Newton-Schulz iterations (5).
            ns_dtype: precision of the Newton-Schulz matmuls: "float32", "bfloat16", or "auto"
                (bfloat16 where it measures faster, `shared/train/precision.py`).
            adjust_lr: "original" (lr * sqrt(max(1, rows/cols))) or "match_rms_adamw"
                (lr * 0.2 * sqrt(max(rows, cols))).
            groups: per role ("matrix", "embedding", "head", "vector") settings that override the
                ones above: lr, betas, eps, weight_decay, and for "matrix" momentum, nesterov,
                ns_steps. E.g. {embedding: {lr: 0.3, betas: [0.8, 0.95]}, matrix: {lr: 0.04}}.
        """
        if ns_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"ns_dtype must be auto, float32 or bfloat16, got {ns_dtype!r}")
        if adjust_lr not in ("original", "match_rms_adamw"):
            raise ValueError(f"adjust_lr must be original or match_rms_adamw, got {adjust_lr!r}")
        known = ("lr", "betas", "eps", "weight_decay", "momentum", "nesterov", "ns_steps")
        muon = {"lr": muon_lr, "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps}
        params = [
            {**muon, **g, "muon": True} if isinstance(g, dict) and g.get("role") == "matrix" else g
            for g in apply_group_settings(params, groups, known)
        ]
        self.ns_dtype, self.adjust_lr = ns_dtype, adjust_lr
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        try:  # torch's AdamW step over the other groups, unchanged
            self.param_groups = [g for g in groups if not g.get("muon")]
            super().step()
        finally:
            self.param_groups = groups
        for group in groups:
            if group.get("muon"):
                self._muon_group(group)
        return loss

    def _muon_group(self, group: dict) -> None:
        mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)  # Adam's __setstate__ expects a step in every state
                state["momentum_buffer"] = torch.zeros_like(p)
            state["step"] += 1
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - mu)  # buf = mu * buf + (1 - mu) * g
            update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
            shape = update.shape
            if update.dim() > 3:  # a convolution kernel: (out, in * kh * kw)
                update = update.flatten(1)
            o = newton_schulz(update, group["ns_steps"], _ns_dtype(self.ns_dtype, p.device)).reshape(shape)
            rows, cols = update.shape[-2:]
            if self.adjust_lr == "original":
                scale = math.sqrt(max(1.0, rows / cols))
            else:
                scale = 0.2 * math.sqrt(max(rows, cols))
            p.mul_(1 - lr * wd)
            p.add_(o.to(p.dtype), alpha=-lr * scale)
