"""`text-lm`: the text track's command line.

    text-lm prepare ...                    raw text -> tokenizer + token shards
    text-lm tokenizer train|encode|decode  our byte-level BPE tokenizer
    text-lm fit|validate|test -c CONFIG    LightningCLI training / evaluation
    text-lm generate --checkpoint PATH --prompt TEXT
    text-lm export-hf --checkpoint PATH --out DIR
    text-lm ladder ...                     GPT-2 -> Llama ladder (see configs/text/ladder)

Heavy imports (Lightning, transformers) happen only inside the commands that need them.
"""

from __future__ import annotations

import sys

USAGE = __doc__.split("\n\n")[1]
TRAIN_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: text-lm COMMAND [ARGS]\n\ncommands:\n" + USAGE)
        print("\n`text-lm COMMAND --help` explains each command's flags.")
        sys.exit(0 if argv else 2)
    cmd, rest = argv[0], argv[1:]
    if cmd == "prepare":
        from text_lm.prepare import main as run
    elif cmd == "tokenizer":
        from text_lm.tokenizer_cli import main as run
    elif cmd == "generate":
        from text_lm.generate_cli import main as run
    elif cmd == "export-hf":
        from text_lm.export_cli import main as run
    elif cmd == "ladder":
        from text_lm.ladder import main as run
    elif cmd in TRAIN_COMMANDS:
        from shared.train.cli import run_cli
        from text_lm.data import TextDataModule
        from text_lm.module import LanguageModelModule

        run_cli(LanguageModelModule, TextDataModule, args=argv, prog="text-lm")
        return
    else:
        print(f"error: unknown command {cmd!r}; run `text-lm --help`", file=sys.stderr)
        sys.exit(2)
    run(rest)


if __name__ == "__main__":
    main()
