"""The one dispatcher behind `text-lm` and `vision-lm`: COMMAND -> the module that runs it.

Each track gives a table of its light commands as import strings (`"text_lm.prepare:main"`) and
names its training system and DataModule for `fit|validate|test|predict`. Commands are imported
only when run, so `--help` and the tokenizer commands never pay for importing Lightning or
transformers (4-5 s, ARCHITECTURE.md section 7), and a command that lives outside the library
(`text-lm ladder` -> `"experiments.ladder.run:main"`) is reached by name without the library importing
it: experiments import the library, never the reverse, so there is no import circle
(tests/test_layers.py checks both, reading every import statement, not these strings).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping

TRAIN_COMMANDS = ("fit", "validate", "test", "predict")


def _load(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def dispatch(
    prog: str,
    usage: str,
    commands: Mapping[str, str],
    system: str,
    datamodule: str,
    argv: list[str] | None = None,
    subclass_mode_model: bool = False,
) -> None:
    """Run `prog COMMAND ARGS`.

    commands: command name -> "module:function" taking the remaining arguments.
    system, datamodule: "module:Class" of the LightningModule (with subclass_mode_model, the base
    class the YAML's `class_path` must derive from) and the LightningDataModule for training commands.
    """
    from_sys = argv is None  # LightningCLI then reads sys.argv itself (and warns if given both)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND [ARGS]\n\ncommands:\n{usage}")
        print(f"\n`{prog} COMMAND --help` explains each command's flags.")
        sys.exit(0 if argv else 2)
    cmd, rest = argv[0], argv[1:]
    if cmd in TRAIN_COMMANDS:
        from shared.train.cli import run_cli

        args = None if from_sys else argv
        run_cli(
            _load(system), _load(datamodule), args=args, prog=prog, subclass_mode_model=subclass_mode_model
        )
    elif cmd in commands:
        _load(commands[cmd])(rest)
    else:
        print(f"error: unknown command {cmd!r}; run `{prog} --help`", file=sys.stderr)
        sys.exit(2)
