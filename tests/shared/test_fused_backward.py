"""The hand-written backward passes (RMSNorm, SwiGLU, MoE dispatch) against autograd's own chain.

Each of them replaces a chain of autograd nodes for speed (BENCHMARKS.md, CPU speed); the forward
must stay the very same numbers and the gradients must be autograd's, exactly where the operations
are the same ones and to rounding where the formula is rearranged (RMSNorm's dx).
"""

import pytest
import torch
import torch.nn.functional as F

from shared.nn.config import MoEConfig
from shared.nn.mlp import GatedMLP
from shared.nn.moe import MoE
from shared.nn.norms import RMSNorm


def grads(fn, *inputs, seed=1):
    """Output of fn and the gradients of <output, g> for a fixed random g."""
    for t in inputs:
        t.grad = None
    y = fn()
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    (y.float() * g.float()).sum().backward()
    return y.detach(), [t.grad.clone() for t in inputs]


@pytest.mark.parametrize("unit_offset", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_backward_is_autograds(unit_offset, dtype):
    torch.manual_seed(0)
    norm = RMSNorm(64, unit_offset=unit_offset).to(dtype)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 5, 64, dtype=dtype, requires_grad=True)

    def reference():
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps)
        if unit_offset:
            return (h * (1.0 + norm.weight.float())).type_as(x)
        return norm.weight * h.type_as(x)

    y, (dx, dw) = grads(lambda: norm(x), x, norm.weight)
    y0, (dx0, dw0) = grads(reference, x, norm.weight)
    assert torch.equal(y, y0)  # the forward is unchanged, bit for bit
    torch.testing.assert_close(dw, dw0, rtol=0, atol=0)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(dx, dx0, rtol=tol, atol=tol * dx0.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_backward_is_autograds_bit_for_bit(dtype):
    torch.manual_seed(0)
    mlp = GatedMLP(32, 48).to(dtype)
    x = torch.randn(4, 6, 32, dtype=dtype, requires_grad=True)
    params = [x, *mlp.parameters()]

    def reference():
        gate, up = mlp.gate_up_proj(x).split(48, dim=-1)
        return mlp.down_proj(F.silu(gate) * up)

    y, g = grads(lambda: mlp(x)[0], *params)
    y0, g0 = grads(reference, *params)
    assert torch.equal(y, y0) and all(torch.equal(a, b) for a, b in zip(g, g0, strict=True))


@pytest.mark.parametrize("top_k", [2, 3])
def test_moe_gather_dispatch_matches_scatter_dispatch(top_k):
    """The gathers-only dispatch and combine give the index_add formulation's output and gradients."""
    torch.manual_seed(0)
    moe = MoE(16, MoEConfig(n_experts=4, top_k=top_k), hidden_dim=24)
    for p in (moe.gate_proj, moe.up_proj, moe.down_proj):
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 9, 16, requires_grad=True)
    params = [x, *moe.parameters()]

    def reference():
        x_flat = x.reshape(-1, 16)
        weights, experts = moe.router(x_flat).softmax(-1).topk(top_k, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True)
        order = experts.reshape(-1).argsort(stable=True)
        counts = torch.bincount(experts.reshape(-1), minlength=4)
        y_sorted = moe.experts(x_flat[order // top_k], counts) * weights.reshape(-1)[order, None]
        return torch.zeros_like(x_flat).index_add_(0, order // top_k, y_sorted).view_as(x)

    y, g = grads(lambda: moe(x)[0], *params)
    y0, g0 = grads(reference, *params)
    exact = top_k == 2  # two terms add the same in any order; three need not
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y, y0, **tol)
    for a, b in zip(g, g0, strict=True):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_backward_is_autograds(dtype):
    from shared.nn.rope import RotaryEmbedding, apply_rope, rotate_half

    cos, sin = RotaryEmbedding(16, 32)(3, 10)  # (T, Dh), an offset start
    x = torch.randn(2, 10, 4, 16, dtype=dtype).transpose(1, 2).requires_grad_()  # (B, H, T, Dh), strided

    def reference():
        return (x * cos + rotate_half(x) * sin).type_as(x)

    y, (dx,) = grads(lambda: apply_rope(x, cos, sin), x)
    y0, (dx0,) = grads(reference, x)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(y, y0, rtol=tol, atol=tol)
    torch.testing.assert_close(dx, dx0, rtol=tol, atol=tol)
