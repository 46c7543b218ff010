"""Generation: `text-lm generate`'s path vs transformers' `generate()` on the same exported weights.

    python benchmarks/generate_bench.py [--batch 1 8] [--contexts 64 256 1024] [--checkpoint PATH] [--cpu-time]

The batch-1 decoding goal (issue 14: >= 2x `generate()`) is recorded with

    python benchmarks/generate_bench.py --batch 1 --new-tokens 64 --rounds 10 --skip-latency

whose speed-up cells give the median of the per-round ratios and their range
(benchmarks/_paired.py), so one run shows its own noise.

Our side is `text_lm.generate.generate_tokens` (what `text-lm generate` streams from); the
peer is `AutoModelForCausalLM.from_pretrained` on the folder `text_lm.hf_convert.save_hf`
writes from the same model, calling `generate(do_sample=False)` with the length fixed.
Both are greedy in fp32, so they should also agree on the tokens (the table says how often).
Our decoder runs a small model on one thread (`text_lm/decode.py`: on a shared CPU, OpenMP
regions cost more than they save at this size); HF runs at the process's thread count, as a
user gets it, and again on one thread ("HF 1 thread"), so the table separates what the
thread choice buys from what the code buys. Time to first token (prompt in, first token out:
decoder set-up and prefill included) is timed the same way.
Three tables:
1. tokens/s for batch 1 and 8 (a short prompt, prefill included), and time to first token;
2. per-token decoding latency at contexts 64, 256, 1024: (time for 1 + N new tokens - time for 1)
   / N, i.e. decoding alone. With a KV cache a step costs O(context) in attention only, so
   the latency should stay nearly flat, total work O(N);
3. KV-cache memory for MHA vs GQA vs MQA (same model otherwise), with decoding speed at the
   longest context, where reading the cache matters most.
Random weights unless --checkpoint names a trained one.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from _common import hf_twin, interleaved_seconds, print_header, table
from _paired import median, paired, ratio_cell

from text_lm.config import LlamaConfig
from text_lm.generate import generate_tokens
from text_lm.model import Llama


def runs_for(ours: Llama, hf, prompt: torch.Tensor, new: int, out: dict) -> dict:
    """Runs for `paired` / `interleaved_seconds` generating `new` greedy tokens; each returns the tokens made."""
    B = prompt.shape[0]

    def run_ours():
        out["ours"] = torch.stack(list(generate_tokens(ours, prompt, new, temperature=0)), 1)
        return B * new

    def run_hf():
        ids = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
        out["hf"] = ids[:, prompt.shape[1] :]
        return B * new

    return {"ours": run_ours, "hf": run_hf, "hf 1 thread": one_thread(run_hf)}


def one_thread(fn):
    """fn run with torch on one thread (the count restored after)."""

    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def first_token_ms(ours, hf, prompt: torch.Tensor, rounds: int, cpu_time: bool) -> dict[str, float]:
    """Time to first token (ms): prompt in, first greedy token out, in paired rounds."""
    got = paired(runs_for(ours, hf, prompt, 1, {}), rounds, cpu_time=cpu_time)
    return {k: 1e3 * median(v) for k, v in got.items()}


def throughput(ours, hf, vocab: int, batches: list[int], prompt_len: int, new: int, args) -> list:
    rows = []
    for B in batches:
        prompt = torch.randint(0, vocab, (B, prompt_len), generator=torch.Generator().manual_seed(B))
        out: dict = {}
        t = paired(runs_for(ours, hf, prompt, new, out), args.rounds, cpu_time=args.cpu_time)
        same = (out["ours"] == out["hf"]).float().mean().item()
        ttft = first_token_ms(ours, hf, prompt, args.rounds, args.cpu_time)
        rows.append(
            [
                B,
                *(f"{B * new / median(t[k]):,.0f}" for k in ("ours", "hf", "hf 1 thread")),
                ratio_cell(t["ours"], t["hf"], 2),
                ratio_cell(t["ours"], t["hf 1 thread"], 2),
                f"{same:.0%}",
                f"{ttft['ours']:.1f} / {ttft['hf']:.1f} / {ttft['hf 1 thread']:.1f}",
            ]
        )
    return rows


def per_token_ms(ours, hf, prompt: torch.Tensor, new: int, rounds: int) -> dict[str, float]:
    """Decoding latency per token (ms) at this context: generate 1 + new minus generate 1, interleaved."""
    out: dict = {}
    long, short = runs_for(ours, hf, prompt, 1 + new, out), runs_for(ours, hf, prompt, 1, out)
    long, short = ({k: r[k] for k in ("ours", "hf")} for r in (long, short))
    runs = {f"{k} long": long[k] for k in long} | {f"{k} short": short[k] for k in short}
    t = interleaved_seconds(runs, rounds=rounds, warmup=1)
    return {k: 1e3 * (t[f"{k} long"] - t[f"{k} short"]) / new for k in long}


def latency(ours, hf, vocab: int, contexts: list[int], new: int, rounds: int) -> list:
    rows, first = [], None
    for ctx in contexts:
        prompt = torch.randint(0, vocab, (1, ctx), generator=torch.Generator().manual_seed(ctx))
        ms = per_token_ms(ours, hf, prompt, new, rounds)
        first = first or ms
        rows.append(
            [
                ctx,
                f"{ms['ours']:.2f}",
                f"{ms['hf']:.2f}",
                f"{ms['hf'] / ms['ours']:.2f}x",
                f"{ms['ours'] / first['ours']:.2f}",
                f"{ms['hf'] / first['hf']:.2f}",
            ]
        )
    return rows


def kv_memory(cfg: LlamaConfig, batch: int, ctx: int, new: int, rounds: int) -> list:
    rows = []
    for name, kv in (("MHA", cfg.n_heads), ("GQA", cfg.n_kv_heads), ("MQA", 1)):
        c = dataclasses.replace(cfg, n_kv_heads=kv, max_seq_len=max(cfg.max_seq_len, ctx + new))
        torch.manual_seed(0)
        ours = Llama(c).eval()
        mib = sum(k.nbytes() for k in ours.make_kv_caches(batch, ctx + new)) / 2**20
        prompt = torch.randint(0, c.vocab_size, (batch, ctx), generator=torch.Generator().manual_seed(0))
        ms = per_token_ms(ours, hf_twin(ours), prompt, new, rounds)
        rows.append([f"{name} ({kv} KV heads)", f"{mib:.1f}", f"{ms['ours']:.2f}", f"{ms['hf']:.2f}"])
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="llama-tiny")
    p.add_argument("--checkpoint", default=None, help="a trained .ckpt instead of random weights")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--latency-tokens", type=int, default=32, help="decoded tokens per latency measurement")
    p.add_argument("--rounds", type=int, default=3, help="paired rounds (benchmarks/_paired.py)")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by CPU time, every side on one thread (a shared machine)",
    )
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-latency", action="store_true", help="only the tokens/s table")
    args = p.parse_args()
    if args.cpu_time:
        torch.set_num_threads(1)
    print_header("transformers")
    if args.checkpoint:
        from text_lm.checkpoint import model_from_checkpoint

        ours = model_from_checkpoint(args.checkpoint)[0]
    else:
        torch.manual_seed(0)
        longest = max(args.contexts) + args.latency_tokens + 1
        ours = Llama(LlamaConfig.preset(args.preset, max_seq_len=longest)).eval()
    cfg = ours.config
    hf = hf_twin(ours)
    v = cfg.vocab_size
    print(f"model {cfg.name}: {ours.num_params() / 1e6:.1f}M parameters, fp32, greedy\n")
    rows = throughput(ours, hf, v, args.batch, args.prompt_len, args.new_tokens, args)
    clock = "CPU time, one thread" if args.cpu_time else "wall clock"
    print(f"Tokens/s, prompt {args.prompt_len} + {args.new_tokens} new tokens (prefill included), {clock}:")
    print(
        f"(medians of {args.rounds} paired rounds; speed-ups: median of the rounds' ratios (lowest-highest))\n"
    )
    head = ["batch", "ours tok/s", "HF tok/s", "HF 1 thread tok/s", "ours / HF", "ours / HF 1 thread"]
    print(table([*head, "same tokens", "first token ms: ours / HF / HF 1 thread"], rows) + "\n")
    if args.skip_latency:
        return
    rows = latency(ours, hf, v, args.contexts, args.latency_tokens, args.rounds)
    print(f"Decoding latency per token, batch 1, {args.latency_tokens} tokens after a prompt of `context`:\n")
    head = ["context", "ours ms/token", "HF ms/token", "HF / ours", "ours vs first row", "HF vs first row"]
    print(table(head, rows) + "\n")
    if not args.skip_memory:
        B, ctx = max(args.batch), max(args.contexts)
        rows = kv_memory(cfg, B, ctx, args.latency_tokens, args.rounds)
        print(
            f"KV cache for batch {B} x {ctx + args.latency_tokens} positions, fp32, and decoding at context {ctx}:\n"
        )
        print(table(["attention", "KV cache MiB", "ours ms/token", "HF ms/token"], rows))


if __name__ == "__main__":
    main()
