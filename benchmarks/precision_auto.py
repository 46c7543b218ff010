"""Does `trainer.precision: auto` choose the faster precision on this machine?

Prints the CPU's bf16 features, what `auto` picks (and its matmul measurement), then times a real
training step (forward, backward, AdamW) of two text models, fp32 against bf16 autocast, alternating
in one process so both see the same load:

    .venv/bin/python benchmarks/precision_auto.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from shared.train.precision import auto_precision
from text_lm.config import LlamaConfig
from text_lm.model import Llama

MODELS = {  # name: (config overrides, batch, seq)
    "llama-tiny (256 wide, 6 layers)": ({}, 8, 256),
    "128 wide, 4 layers (the vision configs' width)": ({"dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2}, 16, 128),
}  # fmt: skip


def cpu_flags() -> str:
    info = Path("/proc/cpuinfo")
    flags = set(info.read_text().split()) if info.exists() else set()
    return ", ".join(f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags) or "none"


def step_seconds(model, opt, x, bf16: bool) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(x, x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    choice, why = auto_precision("cpu")
    print(f"CPU bf16 features: {cpu_flags()}; threads {torch.get_num_threads()}")
    print(f"precision auto -> {choice} ({why})")
    for name, (over, batch, seq) in MODELS.items():
        torch.manual_seed(0)
        model = Llama(LlamaConfig.preset("llama-tiny", max_seq_len=seq, **over))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, model.config.vocab_size, (batch, seq))
        for bf16 in (False, True):
            step_seconds(model, opt, x, bf16)  # warm up
        times = {False: [], True: []}
        for _ in range(args.reps):
            for bf16 in (False, True):
                times[bf16].append(step_seconds(model, opt, x, bf16))
        fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
        winner = "bf16-mixed" if bf16 < fp32 else "32-true"
        print(f"{name}: step fp32 {fp32 * 1e3:.0f} ms, bf16-mixed {bf16 * 1e3:.0f} ms "
              f"(bf16 = {fp32 / bf16:.2f}x fp32 speed; faster: {winner}; auto chose {choice})")  # fmt: skip


if __name__ == "__main__":
    main()
