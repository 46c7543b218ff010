"""Quality per compute: llama-tiny vs gpt2-tiny, same data, seed and wall-clock budget.

Each config trains through the real `text-lm fit` (its YAML, with `--trainer.max_time` set to the
budget), then `text-lm validate` scores its last checkpoint on the whole validation split (the
held-out plays). Prints a Markdown table; run it on an otherwise idle machine:

    .venv/bin/python benchmarks/quality_per_compute.py --minutes 8 --out runs/quality
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.train.checkpoint import read_checkpoint  # noqa: E402
from shared.train.tb_events import latest_version, read_scalars  # noqa: E402


def text_lm(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "text_lm.cli", *args], check=True, cwd=ROOT)


def run(config: str, minutes: float, out: Path, data_dir: str) -> dict:
    yaml = str(ROOT / "configs/text" / f"{config}.yaml")
    common = ["-c", yaml, "--data.data_dir", data_dir, "--trainer.enable_progress_bar", "false"]
    t0 = time.perf_counter()
    text_lm("fit", *common, "--trainer.default_root_dir", str(out / "fit"),
            "--trainer.max_time", f"00:00:{int(minutes):02d}:{int(minutes % 1 * 60):02d}")  # fmt: skip
    wall = time.perf_counter() - t0
    version = latest_version(out / "fit" / config)
    ckpt = version / "checkpoints" / "last.ckpt"
    steps = read_checkpoint(ckpt)["global_step"]
    text_lm("validate", *common, "--ckpt_path", str(ckpt), "--trainer.limit_val_batches", "1.0",
            "--trainer.default_root_dir", str(out / "validate"))  # fmt: skip
    val = latest_version(out / "validate" / config)
    return {
        "config": config,
        "steps": steps,
        "tokens": steps * 8 * 256,
        "wall_s": wall,
        "val_loss": read_scalars(val, "val/loss")[-1][2],
        "val_bpb": read_scalars(val, "val/bpb")[-1][2],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget per config")
    p.add_argument("--out", type=Path, default=ROOT / "runs/quality")
    p.add_argument("--data-dir", default="data/shakespeare_bpe")
    p.add_argument("--configs", default="llama-tiny,gpt2-tiny")
    args = p.parse_args()
    if not (ROOT / args.data_dir / "meta.json").is_file():
        text_lm("prepare", "--out", args.data_dir)
    rows = [run(c, args.minutes, args.out, args.data_dir) for c in args.configs.split(",")]
    print(f"\nbudget {args.minutes:g} min per config, full validation split (held-out plays)\n")
    print("| config | steps | tokens | train wall (s) | val loss | val bits/byte |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['steps']} | {r['tokens']:,} | {r['wall_s']:.0f} | "
              f"{r['val_loss']:.3f} | {r['val_bpb']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
