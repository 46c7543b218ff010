"""Mixture-of-experts feed-forward layer with top-k routing.

A router scores each token against E experts; the token goes to its top-k experts and
their outputs are summed, weighted by the renormalised router probabilities (Mixtral,
Jiang et al. 2024). Compute per token is k experts, parameters are E experts: more
capacity at the same FLOPs than the dense MLP it replaces.

Without help the router collapses onto a few experts, so the layer returns the
Switch-Transformer load-balancing loss (Fedus et al. 2021):
    aux = E * sum_e f_e * P_e,  f_e = share of the N*k assignments that went to expert e,
                                P_e = mean router probability of expert e,
which is 1.0 under perfectly uniform routing and grows as routing concentrates. The
optional router z-loss (Zoph et al. 2022, ST-MoE) = mean(logsumexp(logits)^2) keeps
router logits small. Shared experts (DeepSeekMoE) see every token, outside the router.

In the block it replaces the dense feed-forward whenever `TransformerConfig.moe` is set
(`shared/nn/registry.build_feed_forward`); `TransformerConfig.mlp` then names the experts'
activation (`swiglu` or `geglu`: experts are gated MLPs). Like every feed-forward it returns
(y, aux), aux being this layer's `MoEStats`.

Dispatch: assignments are sorted by expert so that each expert's rows are one contiguous
slice, and every expert's projection runs in one grouped matmul over those slices
(`torch.nn.functional.grouped_mm`, offsets on the device): no loop over experts or tokens and
no host sync on CPU (and on a GPU in bf16); elsewhere one matmul per expert's slice.
Tokens go to their slots and come back through gathers only (`_Dispatch`, `_Permute`: the
backward of a permutation is the inverse permutation, not a scatter-add into zeros), and each
token's k weighted outputs are summed in slot order, as HF Mixtral's block sums them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import UserError
from shared.nn.config import MoEConfig, TransformerConfig
from shared.nn.mlp import GatedMLP, activation
from shared.nn.registry import MOE, register_feed_forward


@dataclass
class MoEStats:
    aux_loss: torch.Tensor
    """Switch load-balancing loss (scalar)."""
    z_loss: torch.Tensor
    """Router z-loss (scalar)."""
    expert_load: torch.Tensor
    """Share of assignments per expert (E,), detached."""


class MoE(nn.Module):
    def __init__(
        self,
        dim: int,
        cfg: MoEConfig,
        hidden_dim: int,
        kind: str = "swiglu",
        bias: bool = False,
        gelu_approximate: str = "tanh",
    ):
        super().__init__()
        if kind not in ("swiglu", "geglu"):
            raise UserError(f"MoE experts are gated MLPs: mlp must be 'swiglu' or 'geglu', got {kind!r}")
        E, H = cfg.n_experts, cfg.hidden_dim or hidden_dim
        self.n_experts, self.top_k, self.normalize_top_k = E, cfg.top_k, cfg.normalize_top_k
        self.router = nn.Linear(dim, E, bias=False)
        # Experts stacked: (E, out, in), the layout of nn.Linear.weight per expert.
        self.gate_proj = nn.Parameter(torch.empty(E, H, dim))
        self.up_proj = nn.Parameter(torch.empty(E, H, dim))
        self.down_proj = nn.Parameter(torch.empty(E, dim, H))
        self.act = activation(kind, gelu_approximate)
        self.shared = None
        if cfg.n_shared_experts:
            self.shared = GatedMLP(
                dim, H * cfg.n_shared_experts, kind=kind, bias=bias, gelu_approximate=gelu_approximate
            )

    @classmethod
    def from_config(cls, cfg: TransformerConfig) -> MoE:  # registered below as the block's MoE feed-forward
        """The block's MoE feed-forward: `cfg.moe` experts of activation `cfg.mlp`."""
        return cls(cfg.dim, cfg.moe, cfg.hidden_dim, cfg.mlp, cfg.out_bias, cfg.gelu_approximate)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEStats]:
        """x (B, T, D) -> (y (B, T, D), this layer's MoEStats)."""
        B, T, D = x.shape
        E, k = self.n_experts, self.top_k
        x_flat = x.reshape(-1, D)  # (N, D)
        logits = self.router(x_flat)  # (N, E)
        probs = logits.float().softmax(dim=-1)  # (N, E)
        weights, experts = probs.topk(k, dim=-1)  # (N, k)
        if self.normalize_top_k:
            weights = weights / weights.sum(dim=-1, keepdim=True)

        flat_experts = experts.reshape(-1)  # (N*k,) assignment a = token * k + slot -> expert
        order = flat_experts.argsort(stable=True)  # sorted position -> assignment, grouped by expert
        slot_of = torch.empty_like(order)  # assignment -> its sorted position (the inverse permutation)
        slot_of[order] = torch.arange(order.numel(), device=order.device)
        counts = torch.bincount(flat_experts, minlength=E)  # (E,)
        x_sorted = _Dispatch.apply(x_flat, order // k, slot_of, k)  # (N*k, D) row i = token order[i] // k
        y_sorted = self.experts(x_sorted, counts)  # (N*k, D)
        y_k = _Permute.apply(y_sorted, slot_of, order).view(-1, k, D)  # (N, k, D) back in token order
        y = (y_k * weights.unsqueeze(-1).to(x.dtype)).sum(dim=1)  # (N, D), x.dtype or wider
        if self.shared is not None:
            y = y + self.shared(x_flat)[0]

        load = counts.float() / flat_experts.numel()  # f_e
        stats = MoEStats(
            aux_loss=E * (load * probs.mean(dim=0)).sum(),
            z_loss=torch.logsumexp(logits.float(), dim=-1).pow(2).mean(),
            expert_load=load.detach(),
        )
        return y.view(B, T, D), stats

    def experts(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x_sorted (N*k, D), rows grouped by expert, counts (E,) rows per expert -> (N*k, D).

        Each expert's rows through its own gated MLP, every expert in one grouped matmul per
        projection (`torch.nn.functional.grouped_mm`: one kernel over E row-slices, offsets on
        the device, no host sync). Where this build has no grouped matmul for the device and
        dtype (CUDA before bf16, older torch), one matmul per expert over its slice instead.
        """
        dt = _compute_dtype(x_sorted)
        xs = x_sorted.to(dt)
        w_gate, w_up, w_down = (
            w.to(dt).transpose(1, 2) for w in (self.gate_proj, self.up_proj, self.down_proj)
        )
        if _grouped_mm_ok(xs):
            offs = counts.cumsum(0).to(torch.int32)  # end row of each expert's slice
            h = self.act(F.grouped_mm(xs, w_gate, offs=offs)) * F.grouped_mm(xs, w_up, offs=offs)
            return F.grouped_mm(h, w_down, offs=offs)
        outs = []
        for e, chunk in enumerate(xs.split(counts.tolist())):  # a host sync
            h = self.act(chunk @ w_gate[e]) * (chunk @ w_up[e])
            outs.append(h @ w_down[e])
        return torch.cat(outs)

    def dense_equivalent(self, e: int) -> GatedMLP:
        """Expert e as a standalone GatedMLP (tests, inspection)."""
        H, D = self.gate_proj.shape[1:]
        mlp = GatedMLP(D, H, bias=False)
        mlp.act = self.act
        with torch.no_grad():
            mlp.gate_up_proj.weight.copy_(torch.cat([self.gate_proj[e], self.up_proj[e]]))
            mlp.down_proj.weight.copy_(self.down_proj[e])
        return mlp


class _Dispatch(torch.autograd.Function):
    """x (N, D) -> x[token_of] (N*k, D), every token copied to its k sorted slots; the backward is a
    gather of each token's k slot gradients and their sum (one index_select and one reduction),
    where autograd's would accumulate N*k rows into zeros one index at a time (index_put)."""

    @staticmethod
    def forward(ctx, x, token_of, slot_of, k: int):
        ctx.save_for_backward(slot_of)
        ctx.k = k
        return x.index_select(0, token_of)

    @staticmethod
    def backward(ctx, g):
        (slot_of,) = ctx.saved_tensors
        return g.index_select(0, slot_of).view(-1, ctx.k, g.shape[-1]).sum(dim=1), None, None, None


class _Permute(torch.autograd.Function):
    """y[index] for a permutation `index` whose inverse is `inverse`: the backward is the inverse
    gather, where autograd's would scatter into zeros."""

    @staticmethod
    def forward(ctx, y, index, inverse):
        ctx.save_for_backward(inverse)
        return y.index_select(0, index)

    @staticmethod
    def backward(ctx, g):
        (inverse,) = ctx.saved_tensors
        return g.index_select(0, inverse), None, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on x runs in: autocast's where it is on for x's device, else x's own."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


def _grouped_mm_ok(x: torch.Tensor) -> bool:
    """torch's grouped matmul covers this device and dtype (CPU: fp32 and bf16; CUDA: bf16); under
    torch.compile bf16 only (its fake-tensor rule refuses fp32: "Expected inputs of BF16 type")."""
    if not hasattr(F, "grouped_mm"):
        return False
    if torch.compiler.is_compiling() and x.dtype != torch.bfloat16:
        return False
    return x.device.type == "cpu" or (x.device.type == "cuda" and x.dtype == torch.bfloat16)


def expert_load_entropy(load: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of an expert-load vector: 1 = perfectly balanced, 0 = one expert."""
    p = load.clamp_min(1e-12)
    return -(p * p.log()).sum() / torch.log(torch.tensor(float(load.numel())))


register_feed_forward(MOE)(MoE.from_config)
