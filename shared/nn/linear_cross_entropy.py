"""The output head and the cross-entropy in one pass over row chunks, never the whole (N, V) logits.

    loss = mean over rows i with targets[i] != ignore_index of  logsumexp(z_i) - z_i[targets[i]]
    z = h W^T                      (or cap * tanh(h W^T / cap) with logit soft-capping)

A language model's head writes an (N, V) logits tensor (2048 x 4096 fp32 = 32 MiB for llama-tiny's
batch), the cross-entropy writes its log-softmax, the backward a zero-filled gradient and the
log-softmax's gradient: four passes over fresh 32 MiB buffers, which on a CPU are memory-bound and
pay a page fault per 4 KiB on first touch (glibc returns blocks that large to the system on free).
Here the rows go through in chunks of `chunk_rows` (512 x 4096 x 4 bytes = 8 MiB): each chunk's
logits are made, turned into softmax - one-hot in place, and sent straight through the two matmuls of
the backward (dh = dz W, dW += dz^T h) while they are still in cache. The FLOPs are the same three
matmuls; what goes is the passes over memory (the idea of Liger Kernel's fused linear cross-entropy,
Hsu et al. 2024, and of Wijmans et al. 2024, "Cut your losses"). BENCHMARKS.md, issue 12: llama-tiny's
CPU training step.

The gradients are computed in the forward (they need the chunk's logits, which are not kept) and
scaled by the incoming gradient in the backward; so this is for training steps only: `wanted` says
when it applies (gradients on). Under torch.compile on a CPU it runs eagerly, a graph break at the end of the
model (`torch.compiler.disable`): the compiled plain path still writes the (N, V) logits and their
gradient, and measured 3% slower on llama-tiny's CPU step (BENCHMARKS.md, issue 12). Compiled on a
GPU, the plain path is taken (`wanted`): there the compiler's own fused loss is faster. Under autocast
the matmuls run in the autocast dtype and the softmax in fp32, as `F.cross_entropy(logits.float())`
on autocast logits does; dW is accumulated in fp32. The tests compare it with logits + F.cross_entropy.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 512
"""Rows per chunk: 512 x V fp32 logits stay in a CPU's L2/L3; measured best of 128-2048 (issue 12)."""


def wanted(h: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fused path applies: a training step (module docstring), and under torch.compile
    only on a CPU: on a GPU the compiler fuses the plain head and loss itself, and the graph break
    costs more than the logits' memory (llama-125m's compiled bf16 step on an H200: 1.17x HF Llama
    with the plain path, 0.86x with this one; BENCHMARKS.md, issue 12)."""
    if torch.compiler.is_compiling() and h.device.type != "cpu":
        return False
    return torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)


@torch.compiler.disable  # runs eagerly inside a compiled model (module docstring)
def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None = None,
    ignore_index: int = -100,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """h (N, D), weight (V, D), targets (N,) -> the mean cross-entropy of h W^T (soft-capped if
    `softcap`) over rows whose target is not `ignore_index`; 0 when every row is ignored."""
    return _LinearCrossEntropy.apply(h, weight, targets, softcap, ignore_index, chunk_rows)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, softcap, ignore_index, chunk_rows):
        device = h.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
        valid = targets != ignore_index  # (N,)
        n = valid.sum()
        scale = 1.0 / n.clamp(min=1).to(torch.float32)
        rows = targets.clamp(min=0)[:, None]  # (N, 1): ignored rows point at class 0, masked below
        with torch.autocast(device, enabled=False):
            hm, wm = h.to(dtype), weight.to(dtype)
            grad_h = torch.empty(h.shape, dtype=dtype, device=h.device)
            want_w = ctx.needs_input_grad[1]  # a frozen head (LoRA fine-tuning) skips the dW matmuls
            grad_w = torch.zeros(weight.shape if want_w else (0,), dtype=torch.float32, device=h.device)
            loss = torch.zeros((), dtype=torch.float32, device=h.device)
            for i in range(0, h.shape[0], chunk_rows):
                j = min(i + chunk_rows, h.shape[0])
                z = (hm[i:j] @ wm.T).float()  # (c, V)
                tanh = None
                if softcap is not None:
                    tanh = z.div_(softcap).tanh_()  # in place: z is now tanh(z / cap)
                    z = tanh * softcap
                keep = valid[i:j, None]  # (c, 1)
                z_target = z.gather(1, rows[i:j])  # (c, 1)
                top = z.amax(dim=-1, keepdim=True)
                dz = z.sub_(top).exp_()  # in place, one exp: exp(z - max)
                total = dz.sum(dim=-1, keepdim=True)
                loss += ((top + total.log() - z_target) * keep).sum()  # logsumexp - target logit
                weight_row = keep * scale  # ignored rows get no gradient; mean over kept rows
                dz.mul_(weight_row / total)  # softmax, scaled
                dz.scatter_add_(1, rows[i:j], -weight_row.to(dz.dtype))  # - one-hot, scaled
                if tanh is not None:  # d cap*tanh(u/cap) / du = 1 - tanh^2
                    dz.mul_(tanh.square_().neg_().add_(1))
                dzm = dz.to(dtype)
                torch.mm(dzm, wm, out=grad_h[i:j])
                if want_w and dtype == torch.float32:
                    grad_w.addmm_(dzm.T, hm[i:j])
                elif want_w:  # autocast: the product in its dtype, accumulated in fp32
                    grad_w += (dzm.T @ hm[i:j]).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (h.dtype, weight.dtype)
        return loss * scale

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        g_h = (grad_h * grad_loss).to(h_dtype) if ctx.needs_input_grad[0] else None
        g_w = (grad_w * grad_loss).to(w_dtype) if ctx.needs_input_grad[1] else None
        return g_h, g_w, None, None, None, None
