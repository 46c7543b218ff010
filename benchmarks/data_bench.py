"""Data: batches/s the memmap `TextDataModule` delivers vs batches/s that training consumes.

    python benchmarks/data_bench.py [--data-dir data/shakespeare_bpe] [--workers 0 1]

The loader side iterates `TextDataModule.train_dataloader()` (random windows read from the
uint16 memory map, stacked into (B, T) int64 batches) for a fixed number of batches; the
consumer side is a training step (fwd + bwd + fused AdamW) of our model on the same batch
shape, in fp32 and bf16 autocast. Measured in one process, rounds interleaved. Headroom =
loader rate / training rate: above 1 the loader is never what training waits for. With
num_workers >= 1 the workers run beside the training process (on 2 cores they compete for
them); their start-up is outside the timed rounds (persistent workers).
The data folder comes from `text-lm prepare` (run here first if it is missing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from _common import ROOT, interleaved, print_header, table, train_step_fn

from text_lm.config import LlamaConfig
from text_lm.data import TextDataModule
from text_lm.model import Llama


def loader_run(dm: TextDataModule, n: int):
    """A run for `interleaved`: pull n batches from one long-lived iterator (as training does)."""
    state = {"it": iter(dm.train_dataloader())}

    def go() -> int:
        for _ in range(n):
            try:
                next(state["it"])
            except StopIteration:  # an epoch is over: start the next one, as the trainer would
                state["it"] = iter(dm.train_dataloader())
                next(state["it"])
        return n

    return go


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT / "data" / "shakespeare_bpe"))
    p.add_argument("--preset", default="llama-tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    p.add_argument("--batches", type=int, default=200, help="loader batches per timed round")
    p.add_argument("--steps", type=int, default=3, help="training steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    print_header("lightning", "numpy")
    if not (Path(args.data_dir) / "meta.json").is_file():
        subprocess.run([sys.executable, "-m", "text_lm.cli", "prepare", "--out", args.data_dir], check=True)

    dms = {w: TextDataModule(args.data_dir, args.seq, args.batch, num_workers=w) for w in args.workers}
    for dm in dms.values():
        dm.setup("fit")
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset(args.preset, vocab_size=dms[args.workers[0]].vocab_size))
    x, y = next(iter(dms[args.workers[0]].train_dataloader()))
    runs = {f"loader, {w} workers": loader_run(dm, args.batches) for w, dm in dms.items()}
    for prec in ("fp32", "bf16"):
        step = train_step_fn(
            model, lambda: model(x, y, logits=False).loss, args.steps, 1, bf16=prec == "bf16"
        )
        runs[f"train {prec}"] = step  # units: one batch per step
    for fn in runs.values():
        fn()
    r = interleaved(runs, rounds=args.rounds, warmup=0)
    print(
        f"{args.data_dir}: batch {args.batch} x seq {args.seq} tokens ({args.batch * args.seq:,} per batch), "
        f"model {args.preset}\n"
    )
    train = {k: v for k, v in r.items() if k.startswith("train")}
    rows = []
    for name, rate in r.items():
        if name.startswith("loader"):
            headroom = ", ".join(f"{rate / t:,.0f}x {k.split()[1]}" for k, t in train.items())
            rows.append([name, f"{rate:,.1f}", f"{rate * args.batch * args.seq:,.0f}", headroom])
        else:
            rows.append(
                [f"{name} step (consumer)", f"{rate:,.2f}", f"{rate * args.batch * args.seq:,.0f}", ""]
            )
    print(table(["side", "batches/s", "tokens/s", "loader / training (headroom)"], rows))


if __name__ == "__main__":
    main()
