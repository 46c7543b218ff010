"""`trainer.precision: auto`: bf16-mixed where bf16 measures faster, fp32 elsewhere.

Whether bfloat16 pays depends on the machine, not the model: on CUDA GPUs with bf16 support it
always does; on CPUs it depends on the matrix units (AMX on recent Xeons runs bf16 matmuls at
several times the fp32 rate; AVX512-BF16 helps matmuls less; without either bf16 is emulated) and
on what autocast adds around them (casts of weights and activations, bf16 elementwise ops). So on a
CPU we measure, once per process, alternating fp32 and bf16 five times (about half a second):
- `bf16_autocast_speedup`: forward + backward of one MLP block (Linear 256 -> 1024, GELU,
  Linear 1024 -> 256 on 512 tokens) under autocast against fp32: what mixed precision does to a
  training step. `auto` picks bf16-mixed when it is at least `MIN_SPEEDUP` times faster.
- `bf16_matmul_speedup`: a bare matmul of that shape; Muon's Newton-Schulz (pure matmuls, no
  casts between them) runs in bf16 when this one is (`shared/train/muon.py`, ns_dtype auto).
On this session's AMD EPYC (avx512_bf16, no AMX) the bare matmul measured ~3x faster in bf16 but
the autocast block only ~1.15x (BENCHMARKS.md, "precision auto"): the casts eat most of the gain.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch

MIN_SPEEDUP = 1.2
"""bf16 must beat fp32 by this factor to be chosen: 'measurably faster', above timing noise."""
TOKENS, WIDTH = 512, 256


def _alternate(run_fp32, run_bf16, device_type: str, reps: int = 5) -> float:
    """Median of fp32 time / bf16 time over `reps` alternating pairs (both see the same load)."""

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        if device_type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    timed(run_fp32), timed(run_bf16)  # warm up kernels and caches
    return statistics.median(timed(run_fp32) / timed(run_bf16) for _ in range(reps))


@functools.cache
def bf16_matmul_speedup(device_type: str = "cpu") -> float:
    """fp32 time / bf16 time of one (tokens x width) @ (width x 4 width) matmul."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(TOKENS, WIDTH, generator=gen), torch.randn(WIDTH, 4 * WIDTH, generator=gen)
    a16, b16 = a.to(device_type, torch.bfloat16), b.to(device_type, torch.bfloat16)
    a, b = a.to(device_type), b.to(device_type)
    return _alternate(lambda: a @ b, lambda: a16 @ b16, device_type)


@functools.cache
def bf16_autocast_speedup(device_type: str = "cpu") -> float:
    """fp32 time / bf16-autocast time of forward + backward through one MLP block."""
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(4 * WIDTH, WIDTH, generator=gen, device="cpu").to(device_type).requires_grad_()
    w2 = torch.randn(WIDTH, 4 * WIDTH, generator=gen, device="cpu").to(device_type).requires_grad_()
    x = torch.randn(TOKENS, WIDTH, generator=gen).to(device_type)

    def run(bf16: bool):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            y = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(x, w1)), w2)
        y.float().square().mean().backward()
        w1.grad = w2.grad = None

    return _alternate(lambda: run(False), lambda: run(True), device_type)


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
    speedup = bf16_autocast_speedup("cpu")
    choice = "bf16-mixed" if speedup >= MIN_SPEEDUP else "32-true"
    return (
        choice,
        f"a bf16-autocast MLP block ran {speedup:.2f}x the fp32 speed here; bf16 needs {MIN_SPEEDUP}x",
    )


def resolve_precision(precision, accelerator: str | None = "auto"):
    """`precision` as Lightning takes it: "auto" becomes this machine's choice (printed once, rank 0)."""
    if str(precision) != "auto":
        return precision
    from lightning.pytorch.utilities import rank_zero_info

    choice, why = auto_precision(accelerator)
    if (choice, why) not in _PRINTED:  # once per process
        _PRINTED.add((choice, why))
        rank_zero_info(f"precision auto -> {choice} ({why})")
    return choice


_PRINTED: set[tuple[str, str]] = set()


def trainer_class():
    """Lightning's Trainer whose `precision` also takes "auto" (our LightningCLI's trainer_class).

    Built on first use, so importing this module does not import Lightning."""
    global _Trainer
    if _Trainer is None:
        _Trainer = _make_trainer()
    return _Trainer


_Trainer = None


def _make_trainer():
    import typing

    import lightning as L
    from lightning.fabric.connector import _PRECISION_INPUT

    def flat(t) -> list:
        return [v for a in typing.get_args(t) for v in (flat(a) if typing.get_args(a) else [a])]

    precisions = typing.Literal[tuple(["auto", *flat(_PRECISION_INPUT)])]

    class Trainer(L.Trainer):
        __doc__ = L.Trainer.__doc__

        def __init__(self, *args, precision: precisions | None = None, **kwargs):
            """
            Args:
                precision: Lightning's precision ("32-true", "bf16-mixed", ...) or "auto": bf16-mixed
                    on CUDA with bf16 and on CPUs where a bf16-autocast MLP block measures >= 1.2x
                    the fp32 speed, else fp32 (shared/train/precision.py; printed at start).
            """
            super().__init__(
                *args, precision=resolve_precision(precision, kwargs.get("accelerator")), **kwargs
            )

    Trainer.__module__, Trainer.__qualname__ = __name__, "Trainer"
    Trainer.__init__.__annotations__["precision"] = (
        precisions | None
    )  # a type, not this file's postponed string
    return Trainer
