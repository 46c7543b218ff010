"""The MFU a training step could reach if everything but its matmuls and attention were free.

    python benchmarks/mfu_ceiling.py [--preset llama-tiny] [--batch 8] [--seq 256] [--threads N] [--cpu-time]

Times, alone and best of 7, every matmul of one fp32 training step (each linear's forward, input
gradient and weight gradient, the head included) and the causal SDPA forward + backward of each
layer, at the step's shapes; the model FLOPs (`Llama.flops_per_token`) over that time, against the
2048^3 matmul peak measured in the same run, is the ceiling that fusing the elementwise work away
(torch.compile) approaches. Dense Llama presets only (no MoE).
"""

from __future__ import annotations

import argparse

import _common
import torch
import torch.nn.functional as F
from _common import add_clock_args, apply_clock_args, matmul_peak, print_header

from text_lm.config import LlamaConfig
from text_lm.model import Llama


def best(fn, reps: int = 7) -> float:
    """Shortest of `reps` timed calls (after one untimed), by `_common.CLOCK`."""
    fn()
    times = []
    for _ in range(reps):
        t = _common.CLOCK()
        fn()
        times.append(_common.CLOCK() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="llama-tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    add_clock_args(p)
    args = p.parse_args()
    apply_clock_args(args)
    print_header()
    model = Llama(LlamaConfig.preset(args.preset))
    cfg, tc = model.config, model.stack.cfg
    rows, dim = args.batch * args.seq, cfg.dim
    t_mm, shapes = 0.0, []  # (rows, in, out, how many of them per step)
    for layer_linear in model.stack.layers[0].modules():
        if isinstance(layer_linear, torch.nn.Linear):
            n_out, n_in = layer_linear.weight.shape
            shapes += [(rows, n_in, n_out, cfg.n_layers)]
    shapes.append((rows, dim, cfg.vocab_size, 1))
    for m, k, n, count in shapes:  # forward, input gradient, weight gradient
        for a, b in (((m, k), (k, n)), ((m, n), (n, k)), ((n, m), (m, k))):
            x, w = torch.randn(*a), torch.randn(*b)
            t_mm += count * best(lambda x=x, w=w: x @ w)
    H, K, Dh = tc.n_heads, tc.n_kv_heads, tc.head_dim
    q = torch.randn(args.batch, H, args.seq, Dh, requires_grad=True)
    k, v = (torch.randn(args.batch, K, args.seq, Dh, requires_grad=True) for _ in range(2))
    g = torch.randn(args.batch, H, args.seq, Dh)

    def attention():
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=H != K).backward(g)

    t_att = cfg.n_layers * best(attention)
    peak = matmul_peak()
    flops = model.flops_per_token(args.seq) * rows
    print(f"preset {args.preset}, batch {args.batch} x seq {args.seq}: {flops / 1e9:.1f} GFLOP per step")
    print(f"matmul peak (2048^3) {peak / 1e9:.0f} GFLOP/s")
    print(f"matmuls alone {t_mm * 1e3:.0f} ms, causal SDPA fwd+bwd {t_att * 1e3:.0f} ms")
    print(f"ceiling MFU (model FLOPs / (matmuls + SDPA) / peak): {flops / (t_mm + t_att) / peak:.0%}")


if __name__ == "__main__":
    main()
