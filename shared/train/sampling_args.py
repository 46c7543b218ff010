"""The sampling flags every generating command shares (`text-lm generate`, `vision-lm caption`).

No torch import here: `--help` and argument mistakes stay instant.
"""

from __future__ import annotations

import argparse

from shared.errors import UserError


def add_sampling_args(p: argparse.ArgumentParser, temperature: float) -> None:
    """--temperature (default `temperature`), --top-k, --top-p, --seed, --device."""
    greedy = " (default)" if temperature == 0 else f" (default {temperature})"
    p.add_argument(
        "--temperature", type=float, default=temperature, help="sampling temperature; 0 = greedy" + greedy
    )
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    p.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling: smallest set with probability >= p"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed, for reproducible samples")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...); default cpu")


def check_sampling_args(args: argparse.Namespace) -> None:
    """One clear error for a temperature, top-k or top-p that means nothing."""
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k is not None and args.top_k <= 0:
        raise UserError(f"--top-k must be positive, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {args.top_p}")
