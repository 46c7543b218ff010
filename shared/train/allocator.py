"""Keep freed memory in the process, so a CPU training step does not page-fault its buffers in again.

A training step allocates and frees the same large activations and gradients every step (llama-tiny:
dozens of 2-12 MiB tensors). glibc's malloc hands blocks that large back to the kernel when they are
freed (`mmap`ed blocks above its dynamic threshold, and the heap's top trimmed once more than twice
that threshold is free), so the next step faults every 4 KiB page in again and the kernel zeroes it:
about 1.3 us a page on our 2-core VM, 11 ms for one 32 MiB tensor, several percent of a step.
`keep_freed_memory` fixes glibc's thresholds (`mallopt`): blocks up to 32 MiB (glibc's maximum) come
from the heap, and the heap is trimmed only when more than 1 GiB is free at its top. The process keeps
its peak memory instead of returning it between steps, which a training process does anyway. This is
the effect Intel's PyTorch CPU guide gets by preloading jemalloc or tcmalloc; measured in
BENCHMARKS.md (issue 12).

Done once, at the start of every `text-lm` / `vision-lm` command (`shared/train/cli.py`); a no-op off
glibc (macOS, Windows, musl) and when the user has set any `MALLOC_*` variable of their own.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
"""glibc's largest allowed mmap threshold on 64-bit: blocks below it are served from the heap."""
TRIM_THRESHOLD = 1 << 30
"""Free bytes at the heap's top before glibc gives them back to the kernel."""


def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds (module docstring); True when they were set."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
