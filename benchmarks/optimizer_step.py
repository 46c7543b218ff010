"""The optimizer step's own cost: torch AdamW against MuonAdamW (Newton-Schulz in fp32 and in bf16)
on llama-tiny's parameters, beside the forward + backward it follows, timed alternately in one process:

    .venv/bin/python benchmarks/optimizer_step.py [--reps 5]

Muon's extra work is 5 Newton-Schulz iterations per hidden matrix per step (about 3 matmuls of the
matrix's size each), paid once per optimizer step whatever the batch, so its share falls as batches grow.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from shared.train.muon import MuonAdamW
from shared.train.optim import param_groups
from text_lm.config import LlamaConfig
from text_lm.model import Llama


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset("llama-tiny"))
    x = torch.randint(0, model.config.vocab_size, (args.batch, 256))
    optimizers = {
        "AdamW": torch.optim.AdamW(param_groups(model), lr=1e-5),
        "MuonAdamW fp32 NS": MuonAdamW(param_groups(model), lr=1e-5, muon_lr=1e-5, ns_dtype="float32"),
        "MuonAdamW bf16 NS": MuonAdamW(param_groups(model), lr=1e-5, muon_lr=1e-5, ns_dtype="bfloat16"),
    }
    model(x, x).loss.backward()  # gradients to step on (kept: the optimizer step is timed alone)

    def fwd_bwd() -> float:
        t0 = time.perf_counter()
        model(x, x).loss.backward()
        return time.perf_counter() - t0

    def opt_step(opt) -> float:
        t0 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t0

    for opt in optimizers.values():
        opt_step(opt)  # warm up (creates the state)
    times = {name: [] for name in [*optimizers, "forward+backward"]}
    for _ in range(args.reps):
        times["forward+backward"].append(fwd_bwd())
        for name, opt in optimizers.items():
            times[name].append(opt_step(opt))
    base = statistics.median(times["forward+backward"])
    print(f"llama-tiny, batch {args.batch} x 256, threads {torch.get_num_threads()}, medians of {args.reps}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:20s} {t * 1e3:8.0f} ms  ({t / base:.2f}x forward+backward)")


if __name__ == "__main__":
    main()
