"""`trainer.precision: auto`: bf16-mixed where bf16 matmuls are measurably faster, fp32 elsewhere.

Whether bfloat16 pays depends on the machine, not the model: on CUDA GPUs with bf16 support it
always does; on CPUs it depends on the matrix units (AMX on recent Xeons runs bf16 at several times
the fp32 rate; AVX512-BF16 helps less; without either, bf16 is emulated and autocast only adds
casts: ~1.7x slower). So on a CPU we measure: one matmul of a small model's shape, fp32 against
bf16, timed alternately a few times (about 0.2-0.5 s, once per process), and choose bf16-mixed
only when bf16 is at least `MIN_SPEEDUP` times faster.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch

MIN_SPEEDUP = 1.3
"""bf16 must beat fp32 by this factor: mixed precision adds casts around every matmul."""
SHAPE = (2048, 256, 768)
"""(tokens, width, output width): one projection of a 256-wide model on 8 x 256 tokens."""


@functools.cache
def bf16_matmul_speedup(device_type: str = "cpu") -> float:
    """fp32 time / bf16 time of one (tokens x width) @ (width x out) matmul on this device."""
    m, k, n = SHAPE
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    pairs = {dt: (a.to(device_type, dt), b.to(device_type, dt)) for dt in (torch.float32, torch.bfloat16)}

    def once(dt) -> float:
        x, y = pairs[dt]
        t0 = time.perf_counter()
        x @ y
        if device_type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for dt in pairs:  # warm up kernels and caches
        once(dt)
    ratios = [once(torch.float32) / once(torch.bfloat16) for _ in range(5)]  # alternate: same load
    return statistics.median(ratios)


def bf16_is_fast(device: torch.device | str = "cpu") -> bool:
    device_type = torch.device(device).type
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    return bf16_matmul_speedup("cpu") >= MIN_SPEEDUP


def auto_precision(accelerator: str | None = "auto") -> tuple[str, str]:
    """(Lightning precision, why) for this machine and `trainer.accelerator`."""
    cuda = torch.cuda.is_available() and str(accelerator or "auto") in ("auto", "gpu", "cuda")
    if cuda:
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "CUDA device with bf16 support"
        return "32-true", "CUDA device without bf16 support"
    if str(accelerator or "auto") not in ("auto", "cpu"):
        return "32-true", f"accelerator {accelerator}"
    speedup = bf16_matmul_speedup("cpu")
    choice = "bf16-mixed" if speedup >= MIN_SPEEDUP else "32-true"
    return choice, f"bf16 matmul {speedup:.2f}x the fp32 speed on this CPU (bf16 needs >= {MIN_SPEEDUP}x)"
