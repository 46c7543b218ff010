"""Pieces every benchmark shares: machine description, matmul peak, interleaved timing, tables.

Fairness rules the scripts follow: both sides of a comparison run in the same process, on
the same config and the same inputs, and their timed rounds are interleaved (ours, peer,
ours, peer, ...) so that a neighbour's load on a shared machine hits both alike; each side's
figure is the median over its rounds.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CLOCK: Callable[[], float] = time.perf_counter
"""What every timing below reads; `use_cpu_time` switches it to this process's CPU time."""
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def use_cpu_time() -> None:
    """Time by this process's CPU time, on one thread: on a machine shared with other jobs, the time
    the process waited for a core is then left out of every side alike (the peak included)."""
    global CLOCK
    torch.set_num_threads(1)
    CLOCK = time.process_time


def add_clock_args(p) -> None:
    """`--threads N`, `--cpu-time` and `--keep-freed-memory`, the options every speed benchmark takes."""
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--cpu-time", action="store_true", help="time by CPU time, one thread (a loaded machine)")
    p.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc keeps freed blocks, as the text-lm/vision-lm commands set (shared/train/allocator.py); "
        "for every model in the process",
    )


def apply_clock_args(args) -> None:
    """Applies `add_clock_args`' options: the thread count, then (it sets one thread) the CPU-time clock."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        use_cpu_time()
    if args.keep_freed_memory:
        from shared.train.allocator import keep_freed_memory

        print(f"keep_freed_memory: {keep_freed_memory()}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "cpu"


def versions(*packages: str) -> str:
    out = [f"Python {platform.python_version()}"]
    for p in ("torch", *packages):
        try:
            out.append(f"{p} {importlib.metadata.version(p)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{p} (not installed)")
    return ", ".join(out)


def machine(device: str = "cpu") -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    import os

    return f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def print_header(*packages: str, device: str = "cpu") -> None:
    """Machine, versions and the exact command, as the first lines of every report."""
    print(f"machine: {machine(device)}")
    print(f"versions: {versions(*packages)}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}\n")


def matmul_peak(
    dtype: torch.dtype = torch.float32, n: int = 2048, device: str = "cpu", reps: int = 5
) -> float:
    """FLOP/s of an n x n x n matmul in `dtype`: the ceiling model-FLOP utilisation is measured against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):  # best of: the peak is what the machine can do when nothing disturbs it
        sync(device)
        t = CLOCK()
        a @ b
        sync(device)
        best = min(best, CLOCK() - t)
    return 2 * n**3 / best


def _rotate(runs: dict[str, Callable[[], float]], rounds: int, warmup: int, device: str) -> dict[str, list]:
    """(units, seconds) of each call, the runs called in rotation, `warmup` rounds dropped."""
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for r in range(warmup + rounds):
        for name, fn in runs.items():
            sync(device)
            t = CLOCK()
            units = fn()
            sync(device)
            if r >= warmup:
                got[name].append((units, CLOCK() - t))
    return got


def interleaved(
    runs: dict[str, Callable[[], float]], rounds: int = 5, warmup: int = 1, device: str = "cpu"
) -> dict[str, float]:
    """Call each run once per round, in rotation; return its median rate.

    A run does a fixed amount of work and returns the number of units done (tokens,
    batches); the rate is units per second. The first `warmup` rounds are not counted.
    """
    got = _rotate(runs, rounds, warmup, device)
    return {name: statistics.median(u / s for u, s in v) for name, v in got.items()}


def interleaved_seconds(
    runs: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1, device: str = "cpu"
) -> dict[str, float]:
    """Like `interleaved`, but the median wall time of one call, in seconds."""
    got = _rotate(runs, rounds, warmup, device)
    return {name: statistics.median(s for _, s in v) for name, v in got.items()}


def train_step_fn(
    model: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    steps: int,
    tokens: int,
    bf16: bool = False,
    device: str = "cpu",
) -> Callable[[], float]:
    """A run for `interleaved`: `steps` of forward + backward + AdamW; returns the tokens processed.

    The same optimizer for every model (fused AdamW, which has a CPU kernel since torch 2.4),
    so the comparison is about the model code.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def run() -> float:
        for _ in range(steps):
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return steps * tokens

    return run


def hf_twin(ours: torch.nn.Module):
    """transformers' LlamaForCausalLM / MixtralForCausalLM with our weights, the way a user gets it:
    `text_lm.hf_convert.save_hf` to a folder, then `AutoModelForCausalLM.from_pretrained`."""
    import tempfile

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    from text_lm.hf_convert import save_hf

    logging.disable_progress_bar()
    device = next(ours.parameters()).device
    with tempfile.TemporaryDirectory() as d:
        save_hf(ours, d)
        return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).to(device).eval()


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goal(ok: bool) -> str:
    return "met" if ok else "**missed**"


def add_train_step_args(p, preset: bool = True, compile_flag: bool = True) -> None:
    """The flags of every training-step benchmark: shape, rounds, precisions (and preset, compile)."""
    if preset:
        p.add_argument("--preset", default="llama-tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per model (median reported)")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    if compile_flag:
        p.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
