"""MoE: top-2-of-8 vs the dense model with the same active parameters, and vs HF Mixtral.

    python benchmarks/moe_bench.py [--precision fp32 bf16] [--steps 4] [--rounds 5] [--threads N] [--cpu-time]

Two tables, all rates interleaved in one process:
1. Training step (fwd + bwd + fused AdamW) tokens/s of the whole model: `llama-moe-tiny`
   (8 experts of hidden 352, top-2) vs `llama-tiny` (dense hidden 704; the same active
   parameters per token), and vs `transformers.MixtralForCausalLM` holding the MoE model's
   weights (its default experts implementation, `grouped_mm`). Goal: the MoE step costs at
   most 1.5x the dense one.
2. The MoE feed-forward layer alone, forward + backward on the same activations: ours vs
   `MixtralSparseMoeBlock` (same weights), with the dense SwiGLU MLP of equal active size as
   the yardstick.
`--cpu-time` times by the process's CPU time on one thread (a machine shared with other jobs).
"""

from __future__ import annotations

import argparse

import torch
from _common import (
    add_clock_args,
    add_train_step_args,
    apply_clock_args,
    goal,
    hf_twin,
    interleaved,
    print_header,
    table,
    train_step_fn,
)

from text_lm.config import LlamaConfig
from text_lm.model import Llama


def model_rows(args, x) -> list[list]:
    rows = []
    for prec in args.precision:
        bf16 = prec == "bf16"
        torch.manual_seed(0)
        dense = Llama(LlamaConfig.preset(args.dense))
        torch.manual_seed(0)
        moe = Llama(LlamaConfig.preset(args.moe))
        hf = hf_twin(moe).train()
        n = x.numel()
        runs = {
            "dense": train_step_fn(dense, lambda m=dense: m(x, x, logits=False).loss, args.steps, n, bf16),
            "moe": train_step_fn(moe, lambda m=moe: m(x, x, logits=False).loss, args.steps, n, bf16),
            "hf": train_step_fn(hf, lambda m=hf: m(x, labels=x).loss, args.steps, n, bf16),
        }
        for fn in runs.values():
            fn()
        r = interleaved(runs, rounds=args.rounds, warmup=0)
        ratio = r["dense"] / r["moe"]  # step-time ratio MoE / dense
        rows.append(
            [
                prec,
                f"{r['dense']:,.0f}",
                f"{r['moe']:,.0f}",
                f"{ratio:.2f}x ({goal(ratio <= 1.5)})",
                f"{r['hf']:,.0f}",
                f"{r['moe'] / r['hf']:.2f}x",
            ]
        )
    return rows


def fwd_bwd(fn, x: torch.Tensor, g: torch.Tensor, bf16: bool, reps: int):
    """A run for `interleaved`: `reps` forward + backward passes of `fn` on x; returns tokens."""

    def go():
        for _ in range(reps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = fn(x)
            (y.float() * g).sum().backward()
        return reps * x[..., 0].numel()

    return go


def block_rows(args, x_tokens) -> list[list]:
    torch.manual_seed(0)
    dense = Llama(LlamaConfig.preset(args.dense)).stack.layers[0].mlp
    moe_model = Llama(LlamaConfig.preset(args.moe))
    ours = moe_model.stack.layers[0].mlp
    theirs = hf_twin(moe_model).model.layers[0].mlp
    D = ours.router.in_features
    rows = []
    for prec in args.precision:
        bf16 = prec == "bf16"
        x = torch.randn(*x_tokens, D, generator=torch.Generator().manual_seed(0)).requires_grad_()
        g = torch.randn(*x_tokens, D, generator=torch.Generator().manual_seed(1))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            diff = (ours(x)[0].float() - theirs(x).float()).abs().max().item()

        reps = args.steps * 4
        runs = {
            "dense": fwd_bwd(lambda t: dense(t)[0], x, g, bf16, reps),
            "ours": fwd_bwd(lambda t: ours(t)[0], x, g, bf16, reps),
            "hf": fwd_bwd(theirs, x, g, bf16, reps),
        }
        for fn in runs.values():
            fn()
        r = interleaved(runs, rounds=args.rounds, warmup=0)
        rows.append(
            [
                prec,
                f"{r['dense']:,.0f}",
                f"{r['ours']:,.0f}",
                f"{r['hf']:,.0f}",
                f"{r['ours'] / r['hf']:.2f}x",
                f"{r['dense'] / r['ours']:.2f}x",
                f"{diff:.1e}",
            ]
        )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", default="llama-tiny")
    p.add_argument("--moe", default="llama-moe-tiny")
    add_train_step_args(p, preset=False, compile_flag=False)
    p.add_argument("--skip-model", action="store_true", help="only the one-layer table")
    add_clock_args(p)
    args = p.parse_args()
    apply_clock_args(args)
    print_header("transformers")
    x = torch.randint(0, 4096, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    if not args.skip_model:
        rows = model_rows(args, x)
        print(f"Training step tokens/s, batch {args.batch} x seq {args.seq}, {args.moe} vs {args.dense}:\n")
        head = ["precision", f"dense {args.dense}", f"MoE {args.moe}", "MoE step / dense step (goal <= 1.5x)"]
        print(table([*head, "HF Mixtral", "ours MoE / HF"], rows) + "\n")
    rows = block_rows(args, (args.batch, args.seq))
    print(f"One feed-forward layer, forward + backward, {args.batch * args.seq} tokens, tokens/s:\n")
    head = ["precision", "dense SwiGLU", "our MoE", "HF MixtralSparseMoeBlock", "ours / HF (goal 1.0x)"]
    print(table([*head, "MoE time / dense time", "max |ours - HF| fwd"], rows))


if __name__ == "__main__":
    main()
