"""Fault injection: kill -9 `text-lm fit` at random moments, resume with `--ckpt_path last`, compare.

    python benchmarks/fault_injection.py [--cycles 10] [--seed 0] [--steps 16] [--every 1]

One uninterrupted reference run, then per cycle: the same run in a fresh folder, killed
with SIGKILL a random delay after its first training step (uniform over the reference's time
from that step to its exit, so kills land in training steps, in checkpoint writes and in
the shutdown), then `--ckpt_path last` until it finishes. A resume "matches exactly" when it exits 0, trains exactly the steps after its
checkpoint, and every loss logged by the killed and the resumed run equals the reference's
at the same step, bit for bit (CPU, fp32). A kill during a checkpoint write is recognised
by the temporary file it leaves beside `last.ckpt`. Prints a Markdown table and
"N/M resumes matched exactly"; exits 1 if any did not.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402
from fault_helpers import fit_argv, kill, read_losses, recorder_args, start_fit, wait_until  # noqa: E402

from shared.errors import UserError  # noqa: E402
from shared.train.checkpoint import read_checkpoint  # noqa: E402
from text_lm.prepare import prepare  # noqa: E402

# Wide and fed small batches, so that checkpoint writes (~40 MB with the AdamW state) take a
# large share of the wall time and random kills often land in one.
MODEL = ["--model.config.dim", "256", "--model.config.n_layers", "4", "--model.config.n_heads", "4",
         "--model.config.n_kv_heads", "2", "--data.batch_size", "2"]  # fmt: skip


def cycle(data: Path, root: Path, args, ref: dict[int, float], delay: float) -> dict:
    root.mkdir(parents=True)
    losses, log = root / "losses.jsonl", root / "child.log"
    argv = fit_argv(data, root, args.steps, args.every, *MODEL)
    child = start_fit([*argv, *recorder_args(losses)], log)
    wait_until(child, lambda: losses.exists(), log=log)  # training has begun
    time.sleep(delay)
    finished = child.poll() is not None
    kill(child)
    folder = root / "llama-tiny" / "version_0" / "checkpoints"
    half = list(folder.glob(".last.ckpt.*.tmp"))
    killed = read_losses(losses)
    try:
        start = read_checkpoint(folder / "last.ckpt")["global_step"] if (folder / "last.ckpt").exists() else 0
        loadable = True
    except UserError:
        start, loadable = 0, False
    done = finished or len(killed) == args.steps
    where = "checkpoint write" if half else "after the last step" if done else "training"
    rc = start_fit([*argv, *recorder_args(losses), "--ckpt_path", "last"], root / "resume.log").wait()
    resumed = read_losses(losses)[len(killed) :]
    matched = (
        rc == 0
        and loadable
        and [s for s, _ in resumed] == list(range(start, args.steps))
        and all(loss == ref[s] for s, loss in killed + resumed)
    )
    return dict(delay=delay, where=where, killed_steps=len(killed), start=start, rc=rc, matched=matched)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=10, help="kill-and-resume cycles")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    p.add_argument("--steps", type=int, default=16, help="training steps of each run")
    p.add_argument("--every", type=int, default=1, help="checkpoint every this many steps")
    args = p.parse_args()
    rng = random.Random(args.seed)
    plays = ROOT / "data" / "shakespeare"
    with tempfile.TemporaryDirectory(prefix="fault_injection.") as tmp:
        tmp = Path(tmp)
        files = [str(plays / "sonnets_gut.txt"), str(plays / "macbeth_gut.txt")]
        prepare(tmp / "data", files, vocab_size=320, val_files=["sonnets_gut.txt"], progress=False)
        ref_root, ref_losses = tmp / "reference", tmp / "reference" / "losses.jsonl"
        argv = fit_argv(tmp / "data", ref_root, args.steps, args.every, *MODEL)
        child = start_fit([*argv, *recorder_args(ref_losses)], tmp / "reference.log")
        wait_until(child, lambda: ref_losses.exists(), log=tmp / "reference.log")
        t0 = time.perf_counter()
        if child.wait():
            sys.exit(f"the reference run failed; see {tmp / 'reference.log'}")
        wall = time.perf_counter() - t0
        ref = dict(read_losses(ref_losses))
        print(f"reference: {args.steps} steps in {wall:.1f} s from the first step to the exit\n")
        print("| cycle | kill after (s) | kill landed in | steps logged before the kill | resumed from step "
              "| resume exit | matched exactly |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        results = []
        for i in range(args.cycles):
            r = cycle(tmp / "data", tmp / f"cycle{i}", args, ref, rng.uniform(0.0, wall))
            results.append(r)
            print(f"| {i} | {r['delay']:.2f} | {r['where']} | {r['killed_steps']} | {r['start']} | {r['rc']} "
                  f"| {'yes' if r['matched'] else 'NO'} |", flush=True)  # fmt: skip
    n = sum(r["matched"] for r in results)
    writes = sum(r["where"] == "checkpoint write" for r in results)
    print(f"\n{n}/{len(results)} resumes matched exactly ({writes} kills landed during a checkpoint write)")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    sys.exit(0 if n == len(results) else 1)


if __name__ == "__main__":
    main()
