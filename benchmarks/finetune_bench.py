"""Fine-tuning side by side on the next-line task: the base, full fine-tuning and LoRA (BENCHMARKS.md).

    python benchmarks/finetune_bench.py --base BASE.ckpt [--steps 60] [--seq-len 128] [--batch-size 8]
        [--seeds 1337,1338,1339]

Builds the task if its folder is missing (`text-lm make-task`: train on 34 plays, test on hamlet and
tempest, held out of the base's pre-training too), then fine-tunes the base twice through the real
command, `text-lm finetune fit`, with configs/text/llama-tiny-sft.yaml (every weight) and
configs/text/llama-tiny-lora.yaml (rank-8 adapters on qkv_proj and o_proj), the same steps, batches,
windows and seed. Each run is its own process, so its peak resident memory (`wait4`'s ru_maxrss,
the process's whole footprint: Python, torch, Lightning, data, model, gradients, optimizer state)
and wall time are its own. Then each model (the base, and both fine-tunes rebuilt from their
checkpoints as `text-lm chat` and the exports would) is scored on the test split: the responses'
bits per byte, sum of the cross-entropy over response tokens (their closing <|eos|> included)
/ ln 2 / their UTF-8 bytes. Lower is better. Trainable parameters are counted from the checkpoint
(LoRA: its adapters; full: every parameter), and the checkpoint's size is that of `last.ckpt` (the
optimizer's state included, as Lightning writes it). The two fine-tunes of a seed run at the same
time, side by side, so their wall times are measured under the same load (the load average is
printed); the seeds run one after another, and each seed's results are kept in OUT/results.json as it
ends. The summary gives mean +- standard deviation (min-max) over the seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from text_lm.checkpoint import model_from_checkpoint  # noqa: E402
from text_lm.instruct import IGNORE, encode_example, pack, read_conversations, response_bytes  # noqa: E402
from text_lm.task_cli import build  # noqa: E402

CONFIGS = {"full": "configs/text/llama-tiny-sft.yaml", "lora": "configs/text/llama-tiny-lora.yaml"}


@torch.no_grad()
def response_bpb(ckpt: Path, test: Path, seq_len: int) -> float:
    """Bits per byte of the responses of `test` under the model of `ckpt` (module docstring)."""
    model, tok = model_from_checkpoint(ckpt)
    examples = [encode_example(tok, m) for m in read_conversations(test)]
    X, Y, S = pack(examples, seq_len, tok.pad_id)
    nll = 0.0
    for i in range(0, len(X), 16):
        logits = model(X[i : i + 16], segments=S[i : i + 16]).logits
        nll += float(
            F.cross_entropy(
                logits.flatten(0, 1), Y[i : i + 16].flatten(), ignore_index=IGNORE, reduction="sum"
            )
        )
    return nll / math.log(2) / response_bytes(tok, examples)[1]


def launch(method: str, args, seed: int, out: Path) -> tuple[subprocess.Popen, float]:
    """Start one `text-lm finetune fit` in its own process."""
    cmd = [sys.executable, "-m", "text_lm.cli", "finetune", "fit", "-c", str(ROOT / CONFIGS[method]),
           "--model.init_from", str(args.base), "--data.data_dir", str(args.task), "--data.tokenizer", str(args.base),
           "--data.seq_len", str(args.seq_len), "--data.batch_size", str(args.batch_size),
           "--trainer.max_steps", str(args.steps), "--trainer.val_check_interval", str(args.steps),
           "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(out / method), "--seed_everything", str(seed),
           "--data.seed", str(seed)]  # fmt: skip
    log = open(out / f"{method}.log", "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log), time.perf_counter()


def finish(method: str, t0: float, status: int, usage, out: Path) -> dict:
    """One ended run (`wait4`'s status and usage): its wall time, peak RSS (its own) and checkpoint."""
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{method} fine-tuning failed (see {out / f'{method}.log'})")
    last = max((out / method).rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    sd = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    adapters = sum(v.numel() for k, v in sd.items() if k.endswith(("lora_A", "lora_B")))
    return {"ckpt": str(last), "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "lora_params": adapters, "ckpt_mib": last.stat().st_size / 2**20}  # fmt: skip


def one_seed(args, seed: int, test: Path, total: int) -> dict:
    """Full fine-tuning and LoRA from the same base with `seed`, side by side, each then scored."""
    out = args.out / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    started = {m: launch(m, args, seed, out) for m in ("full", "lora")}  # side by side: the same contention
    runs = {}
    while len(runs) < len(started):  # in the order they end, so each wall time is its own
        pid, status, usage = os.wait4(-1, 0)
        m = next(m for m, (proc, _) in started.items() if proc.pid == pid)
        runs[m] = finish(m, started[m][1], status, usage, out)
    load = f"{load0:.1f} -> {os.getloadavg()[0]:.1f}"
    for r in runs.values():
        r["bpb"] = response_bpb(Path(r["ckpt"]), test, args.seq_len)
        r["trainable"] = r["lora_params"] or total
        r["load"] = load
    return {"seed": seed, **runs}


def row(name: str, r: dict, total: int, full: dict) -> str:
    return (
        f"| {name} | {r['bpb']:.3f} | {r['trainable']:,} ({100 * r['trainable'] / total:.2f}%) | "
        f"{r['ckpt_mib']:.2f} ({100 * r['ckpt_mib'] / full['ckpt_mib']:.1f}% of full) | {r['peak_rss_mib']:.0f} | "
        f"{r['wall_s']:.0f} | {r['load']} |"
    )


def spread(xs: list[float]) -> str:
    """mean +- sample standard deviation (min-max) of `xs`."""
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return f"{mean:.3f} +- {sd:.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--base", type=Path, required=True, help="the base checkpoint (e.g. `make demo`'s last.ckpt)"
    )
    p.add_argument("--task", type=Path, default=ROOT / "data" / "shakespeare_nextline")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "finetune_bench")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[1337],
        help="comma-separated seeds (model init of the adapters, data order, dropout), one pair of runs each",
    )  # fmt: skip
    args = p.parse_args()
    if not (args.task / "train.jsonl").is_file():
        build(ROOT / "data" / "shakespeare", args.task, 8000, 256, 1024, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    test = args.task / "test.jsonl"
    base_model, _ = model_from_checkpoint(args.base)
    total = base_model.num_params()
    base_bpb = response_bpb(args.base, test, args.seq_len)
    results = {"base": str(args.base), "base_bpb": base_bpb, "steps": args.steps, "seq_len": args.seq_len,
               "batch_size": args.batch_size, "seeds": []}  # fmt: skip
    header = "| model | seed | test bpb (responses) | trainable params | checkpoint MiB | peak RSS MiB | wall s | load |"
    print(
        header.replace(" seed |", "")
        + f"\n|{'---|' * 7}\n| base (no fine-tuning) | {base_bpb:.3f} | - | - | - | - | - |"
    )
    for seed in args.seeds:
        r = one_seed(args, seed, test, total)
        results["seeds"].append(r)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))  # kept as each seed ends
        print(row(f"full, seed {seed}", r["full"], total, r["full"]), flush=True)
        print(row(f"LoRA r=8, seed {seed}", r["lora"], total, r["full"]), flush=True)
    seeds = results["seeds"]
    print(f"\nover seeds {args.seeds} ({args.steps} steps x {args.batch_size} x {args.seq_len} tokens each):")
    print(f"- full test bpb: {spread([r['full']['bpb'] for r in seeds])}")
    print(f"- LoRA test bpb: {spread([r['lora']['bpb'] for r in seeds])}")
    print(f"- LoRA / full bpb: {spread([r['lora']['bpb'] / r['full']['bpb'] for r in seeds])}")
    print(
        f"- LoRA / full peak RSS: {spread([r['lora']['peak_rss_mib'] / r['full']['peak_rss_mib'] for r in seeds])}"
    )


if __name__ == "__main__":
    main()
