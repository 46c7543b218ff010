"""shared/train/allocator.py: with glibc's thresholds fixed, freed blocks are reused without page faults."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, resource, sys, torch
from shared.train.allocator import M_MMAP_THRESHOLD, keep_freed_memory
if sys.argv[1] == "on":
    print(keep_freed_memory())
else:  # glibc's starting threshold, held: its dynamic one returns freed memory or not by the heap's incidental
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 << 10)  # layout (0-217k faults from run to run)
    print(False)
def step():  # what a training step does to the allocator: buffers of 3-12 MiB made, touched, freed
    kept = []
    for i in range(12):
        kept.append(torch.ones((3 + (i % 4) * 3) << 18))  # an activation, kept to the end of the step
        scratch = torch.ones(1 << 20)  # 4 MiB, freed at once
        del scratch
    del kept
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run(mode: str, env: dict) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_buffers_are_reused_without_page_faults():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    set_on, faults_on = run("on", env)
    _, faults_off = run("off", env)
    assert set_on == "True"
    # ~350k pages fault in afresh over 10 such steps when freed blocks go back to the kernel (1.3 us each on our VM)
    assert faults_off > 20_000 and faults_on < faults_off / 20, (faults_on, faults_off)
    assert run("on", {**env, "MALLOC_ARENA_MAX": "2"})[0] == "False"  # the user's own malloc settings win
