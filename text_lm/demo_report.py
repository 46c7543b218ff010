"""Summarise a finished run for `make demo`: validation bits-per-byte, a sample, where the logs are.

python -m text_lm.demo_report runs/demo/llama-tiny
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.errors import exit_on_user_error
from shared.train.tb_events import latest_version, read_scalars


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="the logger folder of the run, e.g. runs/demo/llama-tiny")
    p.add_argument("--prompt", default="ROMEO:")
    p.add_argument("--max-new-tokens", type=int, default=120)
    args = p.parse_args(argv)
    version = latest_version(Path(args.run_dir))
    bpb = read_scalars(version, "val/bpb")
    loss = read_scalars(version, "val/loss")
    print(f"\nrun: {version}")
    for (step, _, b), (_, _, l) in zip(bpb, loss):
        print(f"  step {step:5d}  val/loss {l:.3f}  val/bpb {b:.3f}")
    if bpb:
        print(f"final validation bits-per-byte (hamlet, tempest, twelfth night): {bpb[-1][2]:.3f}")
    ckpt = version / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        from text_lm.generate_cli import main as generate

        print(f"\nsample (text-lm generate --checkpoint {ckpt} --prompt {args.prompt!r} --seed 0):\n")
        sys.stdout.flush()
        generate(
            [
                "--checkpoint",
                str(ckpt),
                "--prompt",
                args.prompt,
                "--seed",
                "0",
                "--top-k",
                "50",
                "--max-new-tokens",
                str(args.max_new_tokens),
            ]
        )
    print(f"\nTensorBoard: .venv/bin/tensorboard --logdir {Path(args.run_dir).parent}")


if __name__ == "__main__":
    main()
