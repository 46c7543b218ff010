"""Our Llama vs litgpt's GPT: training-step throughput and greedy generation, same weights.

    python benchmarks/litgpt_bench.py [--precision fp32 bf16] [--compile] [--skip-train] [--skip-generate]
                                      [--threads N] [--cpu-time]

litgpt pins hub libraries that conflict with transformers', so it never becomes a project
dependency: this script creates its own virtual environment, benchmarks/.venv-litgpt, with
the same torch version as the project's (`pip install torch==X litgpt`, from the wheel pip
already has for the project) and re-runs itself there. Our model needs nothing but torch, so
both models live in that one process, and their timed rounds are interleaved.

The litgpt config mirrors the preset (RMSNorm, full-width RoPE, SwiGLU "LLaMAMLP", GQA via
n_query_groups, no biases, sequential residual) and litgpt's head is tied to its embedding by
hand (litgpt has no tying option), so both models hold the same tensors; the script checks
that their logits agree before timing anything. Generation: litgpt's own `generate` (batch 1)
and `batched_generate_fn` (batch > 1) vs our `text_lm.generate.generate_tokens`, greedy; litgpt
also on one thread, the count our decoder picks for a model this small (text_lm/decode.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-litgpt"


def ensure_venv() -> None:
    """Re-run this script inside benchmarks/.venv-litgpt, creating it first if needed."""
    if importlib.util.find_spec("litgpt") is not None:
        return
    import torch

    py = VENV / "bin" / "python"
    torch_version = torch.__version__.split("+")[0]
    if not py.exists():
        print(f"creating {VENV} (torch=={torch_version} + litgpt) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"torch=={torch_version}", "litgpt"], check=True)
    got = subprocess.run(
        [str(py), "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if got != torch.__version__:
        sys.exit(f"{VENV} has torch {got}, the project has {torch.__version__}: delete the folder and re-run")
    os.execv(str(py), [str(py), *sys.argv])


ensure_venv()

import torch  # noqa: E402
from _common import (  # noqa: E402
    add_clock_args,
    add_train_step_args,
    apply_clock_args,
    goal,
    interleaved,
    matmul_peak,
    print_header,
    table,
    train_step_fn,
)
from _paired import median, paired, ratio_cell  # noqa: E402
from litgpt.config import Config  # noqa: E402
from litgpt.generate.base import batched_generate_fn, generate  # noqa: E402
from litgpt.model import GPT  # noqa: E402

from text_lm.config import LlamaConfig  # noqa: E402
from text_lm.generate import generate_tokens  # noqa: E402
from text_lm.model import Llama  # noqa: E402


def litgpt_twin(ours: Llama, block_size: int) -> GPT:
    """litgpt GPT with the same architecture and our weights."""
    c, tc = ours.config, ours.stack.cfg
    cfg = Config(
        name="bench",
        block_size=block_size,
        n_layer=c.n_layers,
        n_embd=c.dim,
        vocab_size=c.vocab_size,
        padded_vocab_size=c.vocab_size,
        norm_class_name="RMSNorm",
        norm_eps=c.norm_eps,
        parallel_residual=False,
        n_head=c.n_heads,
        head_size=tc.head_dim,
        n_query_groups=tc.n_kv_heads,
        rotary_percentage=1.0,
        rope_base=int(c.rope_theta),
        bias=False,
        mlp_class_name="LLaMAMLP",
        intermediate_size=tc.hidden_dim,
    )
    m = GPT(cfg)
    sd = {"transformer.wte.weight": ours.embed.weight, "transformer.ln_f.weight": ours.stack.norm.weight}
    for i, layer in enumerate(ours.stack.layers):
        a, mlp, h = layer.attn, layer.mlp, f"transformer.h.{i}"
        sd[f"{h}.norm_1.weight"] = layer.attn_norm.weight
        sd[f"{h}.norm_2.weight"] = layer.mlp_norm.weight
        sd[f"{h}.attn.qkv.weight"] = a.qkv_proj.weight  # rows q | k | v, as litgpt's fused qkv
        sd[f"{h}.attn.proj.weight"] = a.o_proj.weight
        sd[f"{h}.mlp.fc_1.weight"], sd[f"{h}.mlp.fc_2.weight"] = mlp.gate_up_proj.weight.chunk(2)
        sd[f"{h}.mlp.proj.weight"] = mlp.down_proj.weight
    sd["lm_head.weight"] = ours.lm_head.weight
    m.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
    if c.tie_embeddings:
        m.lm_head.weight = m.transformer.wte.weight
    return m


def train_rows(cfg, args) -> list[list]:
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    y = x.roll(-1, dims=1)
    rows = []
    for prec in args.precision:
        bf16 = prec == "bf16"
        peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
        for compiled in [False, True] if args.compile else [False]:
            torch.manual_seed(0)
            ours = Llama(cfg)
            lit = litgpt_twin(ours, args.seq)
            if compiled:
                ours.compile()
                lit.compile()

            def lit_loss(lit=lit):
                logits = lit(x)
                return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())

            runs = {
                "ours": train_step_fn(
                    ours, lambda ours=ours: ours(x, y, logits=False).loss, args.steps, x.numel(), bf16
                ),
                "litgpt": train_step_fn(lit, lit_loss, args.steps, x.numel(), bf16),
            }
            for fn in runs.values():
                fn()
            r = interleaved(runs, rounds=args.rounds, warmup=0)
            a, b = r["ours"], r["litgpt"]
            mfu = a * ours.flops_per_token(args.seq) / peak
            rows.append(
                [
                    prec,
                    "compile" if compiled else "eager",
                    f"{a:,.0f}",
                    f"{b:,.0f}",
                    f"{a / b:.2f}x ({goal(a / b >= 1.10)})",
                    f"{mfu:.0%}",
                ]
            )
    return rows


def generation_runs(ours: Llama, lit: GPT, prompt: torch.Tensor, new: int, out: dict) -> dict:
    """Greedy runs for `paired` (benchmarks/_paired.py); each leaves its tokens (B, new) in `out`."""
    batch, t0 = prompt.shape
    lit.set_kv_cache(batch_size=batch)

    def run_ours():
        out["ours"] = torch.stack(list(generate_tokens(ours, prompt, new, temperature=0)), 1)
        return batch * new

    def run_lit():
        if batch == 1:
            out["litgpt"] = generate(lit, prompt[0], t0 + new, temperature=0.0, include_prompt=False)[None]
        else:
            steps = batched_generate_fn(
                lit,
                prompt,
                t0 + new,
                sample_args={"temperature": 0.0},
                include_prompt=False,
                include_eos=True,
            )
            out["litgpt"] = torch.stack([torch.stack(s).view(-1) for s in steps], 1)
        return batch * new

    def run_lit_one_thread():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run_lit()
        finally:
            torch.set_num_threads(before)

    return {"ours": run_ours, "litgpt": run_lit, "litgpt 1 thread": run_lit_one_thread}


def generate_rows(cfg, args) -> list[list]:
    """Per batch: tokens/s of each side (medians of paired rounds) and the per-round speed-ups
    (benchmarks/_paired.py: median, lowest-highest)."""
    torch.manual_seed(0)
    ours = Llama(cfg).eval()
    lit = litgpt_twin(ours, args.prompt_len + args.new_tokens).eval()
    rows = []
    for batch in args.gen_batch:
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(0, cfg.vocab_size, (batch, args.prompt_len), generator=g)
        out: dict = {}
        runs = generation_runs(ours, lit, prompt, args.new_tokens, out)
        t = paired(runs, args.rounds, cpu_time=args.cpu_time)
        same = (out["ours"] == out["litgpt"]).float().mean().item()
        rows.append(
            [
                batch,
                *(
                    f"{batch * args.new_tokens / median(t[k]):,.0f}"
                    for k in ("ours", "litgpt", "litgpt 1 thread")
                ),
                ratio_cell(t["ours"], t["litgpt"], 1.5),
                ratio_cell(t["ours"], t["litgpt 1 thread"], 1.5),
                f"{same:.0%}",
            ]
        )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_step_args(p)
    p.add_argument("--gen-batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-generate", action="store_true")
    add_clock_args(p)
    args = p.parse_args()
    apply_clock_args(args)
    print_header("litgpt")
    cfg = LlamaConfig.preset(args.preset)
    torch.manual_seed(0)
    ours = Llama(cfg)
    lit = litgpt_twin(ours, args.seq)
    x = torch.randint(0, cfg.vocab_size, (2, 64))
    with torch.no_grad():
        diff = (ours(x).logits - lit(x)).abs().max().item()
    print(f"preset {args.preset}; same weights: max |logits ours - litgpt| = {diff:.1e}\n")
    assert diff < 1e-3, "the litgpt twin does not compute the same function"
    if not args.skip_train:
        t = time.perf_counter()
        rows = train_rows(cfg, args)
        print(f"Training step (fwd + bwd + fused AdamW), batch {args.batch} x seq {args.seq}, tied head:\n")
        head = ["precision", "mode", "ours tok/s", "litgpt tok/s", "ours / litgpt (goal 1.10x)", "ours MFU"]
        print(table(head, rows) + f"\n\n({time.perf_counter() - t:.0f} s)\n")
    if not args.skip_generate:
        rows = generate_rows(cfg, args)
        print(
            f"Greedy generation, prompt {args.prompt_len} tokens + {args.new_tokens} new (prefill included):\n"
        )
        head = ["batch", "ours tok/s", "litgpt tok/s", "litgpt 1 thread tok/s", "ours / litgpt"]
        head += ["ours / litgpt 1 thread", "same tokens"]
        print(
            f"(medians of {args.rounds} paired rounds; speed-ups: median of the rounds' ratios (lowest-highest))\n"
        )
        print(table(head, rows))


if __name__ == "__main__":
    main()
