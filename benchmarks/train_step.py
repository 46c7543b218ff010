"""Training-step throughput: our Llama vs transformers.LlamaForCausalLM, same config, same inputs.

    python benchmarks/train_step.py [--device cuda] [--precision fp32 bf16] [--compile] [--steps 10]

Measures forward + backward + AdamW tokens/s for both models in the same process, reports
the ratio, and model-FLOP utilisation (MFU) against the matmul peak measured in the same
run (a large square matmul in the same dtype). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from text_lm.config import LlamaConfig  # noqa: E402
from text_lm.hf_convert import hf_config, to_hf_state_dict  # noqa: E402
from text_lm.model import Llama  # noqa: E402


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, n: int) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 20 if device.startswith("cuda") else 5
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def hf_model(ours: Llama):
    import transformers

    cfg = hf_config(ours.config)
    cls = transformers.MixtralForCausalLM if cfg["model_type"] == "mixtral" else transformers.LlamaForCausalLM
    conf = (transformers.MixtralConfig if cfg["model_type"] == "mixtral" else transformers.LlamaConfig)(**cfg)
    m = cls(conf)
    m.load_state_dict(to_hf_state_dict(ours), strict=False)
    return m


def step_rate(model, x, steps, device, bf16, is_hf) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))

    def step():
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out = model(x, labels=x) if is_hf else model(x, x)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return x.numel() * steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", default="llama-tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    cfg = LlamaConfig.preset(args.preset)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=dev)
    rows = []
    for prec in args.precision:
        bf16 = prec == "bf16"
        n = 8192 if dev.startswith("cuda") else 2048
        peak = matmul_peak(dev, torch.bfloat16 if bf16 else torch.float32, n)
        for compiled in [False, True] if args.compile else [False]:
            ours = Llama(cfg).to(dev)
            flops = ours.flops_per_token(args.seq)
            hf = hf_model(ours).to(dev)
            if compiled:
                ours.compile()
                hf.compile()
            r_ours = step_rate(ours, x, args.steps, dev, bf16, False)
            r_hf = step_rate(hf, x, args.steps, dev, bf16, True)
            rows.append((prec, "compile" if compiled else "eager", r_ours, r_hf, flops, peak))
            del ours, hf
    dev_name = (
        torch.cuda.get_device_name()
        if dev.startswith("cuda")
        else f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"
    )
    print(
        f"\nmachine: {dev_name}; torch {torch.__version__}; preset {args.preset}, batch {args.batch} x seq {args.seq}"
    )
    print(
        "| precision | mode | ours tok/s | HF Llama tok/s | ours / HF | matmul peak TFLOP/s | ours MFU | HF MFU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for prec, mode, a, b, flops, peak in rows:
        print(
            f"| {prec} | {mode} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x | {peak / 1e12:.2f} | "
            f"{a * flops / peak:.0%} | {b * flops / peak:.0%} |"
        )


if __name__ == "__main__":
    main()
