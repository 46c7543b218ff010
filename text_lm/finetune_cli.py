"""`text-lm finetune fit|validate|test -c CONFIG`: the text system on instruction / chat data.

The same LightningCLI as `text-lm fit` (`shared/train/cli.py`), with `InstructDataModule`
(`text_lm/instruct_data.py`: jsonl prompt/response or messages, chat template, response-only
targets, packing) in place of the token-shard DataModule. The base comes from
`--model.init_from`; `model.lora` trains adapters instead of every weight
(configs/text/llama-tiny-lora.yaml, configs/text/llama-tiny-sft.yaml).
"""

from __future__ import annotations

import sys

from shared.train.dispatch import TRAIN_COMMANDS

USAGE = "usage: text-lm finetune fit|validate|test -c CONFIG [--model.init_from BASE.ckpt] [--KEY VALUE ...]"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[2:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TRAIN_COMMANDS:
        print(USAGE, file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    from shared.train.cli import run_cli
    from text_lm.instruct_data import InstructDataModule
    from text_lm.module import LanguageModelModule

    run_cli(LanguageModelModule, InstructDataModule, args=argv, prog="text-lm finetune")


if __name__ == "__main__":
    main()
