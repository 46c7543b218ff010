"""Vision data: does the shapes stream keep up with training, and does lazy reading keep memory flat?

    python benchmarks/vision_data_bench.py [--steps 10] [--rounds 3] [--sizes 1000 4000] [--skip-stream]

1. Stream vs folder (one process, rounds interleaved): images/s of siglip-tiny training steps
   (fwd + bwd + AdamW, batch 64, 64 px, fp32) fed by (a) the fixed folder, decoded once and cached,
   (b) the shapes stream rendered in the training process, (c) the stream rendered by one
   DataLoader worker; and images/s of loaders (a) and (b) alone (a worker's alone-rate would count
   what it prefetched during the other rounds). Ratio (b)/(a) is what rendering costs.
2. Lazy reading (one child process per case, its peak RSS from /proc/self/status VmHWM): one epoch over the train
   split of a generated imagefolder of N "photos" (320 x 240 JPEGs, some greyscale), resized to
   128 px, batch 64, for N in --sizes: lazy imagefolder, cached imagefolder, and the same images as
   a saved `datasets.DatasetDict` read lazily. Flat = the same peak at every N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, interleaved, print_header
from PIL import Image


def make_photos(root: Path, n: int) -> Path:
    """train/ with n JPEGs (smooth gradients + noise; every 3rd greyscale), val/ with 8."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", 8)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            yy, xx = np.mgrid[0:240, 0:320]
            base = (np.sin(xx / (10 + i % 17)) + np.cos(yy / (7 + i % 11))) * 60 + 128
            a = np.clip(base[..., None] + rng.normal(0, 12, (240, 320, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(a)
            img = img.convert("L") if i % 3 == 0 else img
            img.save(d / f"{i:06d}.jpg", quality=85)
            rows.append(
                {"file_name": f"{i:06d}.jpg", "text": f"photo of a pattern {i % 10}", "label": str(i % 10)}
            )
        (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def child(data_dir: str, cache: bool) -> None:
    """One epoch over the train split; prints a JSON line (peak RSS, images/s)."""
    import time

    from vision_lm.data import ImageTextDataModule

    dm = ImageTextDataModule(data_dir, batch_size=64, image_size=128, max_len=16, cache_images=cache)
    dm.setup("fit")
    t = time.perf_counter()
    n = sum(b["pixel_values"].shape[0] for b in dm.train_dataloader())
    dt = time.perf_counter() - t
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report
    # its parent's peak (the benchmark process holds a model) whenever that is the larger.
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    print(json.dumps({"images": n, "seconds": dt, "peak_mib": peak}))


def run_child(data_dir: Path, cache: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(data_dir), "--cache", str(int(cache))]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"child failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def lazy_table(sizes: list[int]) -> None:
    print("| images | source | reading | peak RSS | images/s (epoch, incl. setup decode for cached) |")
    print("|---:|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = make_photos(Path(tmp) / f"photos{n}", n)
            import datasets

            saved = Path(tmp) / f"saved{n}"
            datasets.load_dataset(
                "imagefolder", data_dir=str(folder), cache_dir=str(Path(tmp) / "hf")
            ).save_to_disk(str(saved))
            for source, path, cache in (("imagefolder", folder, False), ("imagefolder", folder, True),
                                        ("datasets", saved, False)):  # fmt: skip
                r = run_child(path, cache)
                how = "cached" if cache else "lazy"
                print(
                    f"| {n} | {source} | {how} | {r['peak_mib']:.0f} MiB | {r['images'] / r['seconds']:.0f} |"
                )


def forever(dm):
    """Batches of the train loader, epoch after epoch (the folder's 2,000 images last 31 batches)."""
    while True:
        yield from dm.train_dataloader()


def stream_table(steps: int, rounds: int) -> None:
    from vision_lm.config import SigLIPConfig
    from vision_lm.data import ImageTextDataModule
    from vision_lm.shapes import make_shapes
    from vision_lm.siglip import SigLIP

    tmp = tempfile.mkdtemp()
    data = make_shapes(Path(tmp) / "shapes", 2000, 16, 16, seed=0, progress=False)
    model = SigLIP(SigLIPConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loaders = {}
    for name, stream, workers in (("folder, cached", False, 0), ("stream, in process", True, 0),
                                  ("stream, 1 worker", True, 1)):  # fmt: skip
        dm = ImageTextDataModule(str(data), batch_size=64, image_size=64, max_len=16, train_stream=stream,
                                 num_workers=workers, samples_per_epoch=10**7)  # fmt: skip
        dm.setup("fit")
        loaders[name] = forever(dm)

    def train(name):
        def run() -> float:
            for _ in range(steps):
                b = next(loaders[name])
                loss = model.loss(
                    model(b["pixel_values"], b["input_ids"]), b["input_ids"], across_ranks=False
                )
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            return steps * 64

        return run

    def load(name):
        return lambda: sum(next(loaders[name])["pixel_values"].shape[0] for _ in range(steps))

    rates = interleaved({f"train <- {n}": train(n) for n in loaders} | {f"loader alone: {n}": load(n) for n in list(loaders)[:2]},
                        rounds=rounds)  # fmt: skip
    base = rates["train <- folder, cached"]
    print("| run | images/s | vs folder, cached |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(
            f"| {name} | {rate:.0f} | {rate / base:.2f}x |"
            if name.startswith("train")
            else f"| {name} | {rate:.0f} | |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="training steps (or batches) per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000], help="imagefolder sizes for part 2")
    p.add_argument("--skip-stream", action="store_true")
    p.add_argument("--skip-lazy", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--cache", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, bool(args.cache))
    print_header("lightning", "Pillow", "datasets")
    print(f"load average at start: {os.getloadavg()}\n")
    if not args.skip_stream:
        stream_table(args.steps, args.rounds)
        print()
    if not args.skip_lazy:
        lazy_table(args.sizes)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
