"""`vision-lm`: the vision track's command line.

    vision-lm make-shapes --out DIR          generate the synthetic shapes data set
    vision-lm fit|validate|test -c CONFIG    LightningCLI training / evaluation
    vision-lm zero-shot --checkpoint PATH --image FILE --labels "a,b,c"
    vision-lm caption --checkpoint PATH --image FILE [--prompt TEXT]
    vision-lm export-hf --checkpoint PATH --out DIR

Heavy imports (Lightning, transformers) happen only inside the commands that need them.
The training commands take the system from the YAML (`model: class_path: ...`), so one
command trains SigLIP and the captioner with the same data module.
"""

from __future__ import annotations

import sys

USAGE = __doc__.split("\n\n")[1]
TRAIN_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> None:
    from_sys = argv is None  # LightningCLI then reads sys.argv itself (and warns if given both)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: vision-lm COMMAND [ARGS]\n\ncommands:\n" + USAGE)
        print("\n`vision-lm COMMAND --help` explains each command's flags.")
        sys.exit(0 if argv else 2)
    cmd, rest = argv[0], argv[1:]
    if cmd == "make-shapes":
        from vision_lm.make_shapes_cli import main as run
    elif cmd == "zero-shot":
        from vision_lm.zero_shot_cli import main as run
    elif cmd == "caption":
        from vision_lm.caption_cli import main as run
    elif cmd == "export-hf":
        from vision_lm.export_cli import main as run
    elif cmd in TRAIN_COMMANDS:
        import lightning as L

        from shared.train.cli import run_cli
        from vision_lm.data import ImageTextDataModule

        args = None if from_sys else argv
        run_cli(L.LightningModule, ImageTextDataModule, args=args, prog="vision-lm", subclass_mode_model=True)
        return
    else:
        print(f"error: unknown command {cmd!r}; run `vision-lm --help`", file=sys.stderr)
        sys.exit(2)
    run(rest)


if __name__ == "__main__":
    main()
