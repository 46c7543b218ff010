"""The LightningCLI both tracks use: `<track> fit|validate|test -c config.yaml`.

It fixes the known pitfalls once:
- TensorBoard under `trainer.default_root_dir` (no `hp_metric`), so `--trainer.default_root_dir`
  moves logs and checkpoints together and configs never hard-code a `save_dir`;
- ModelCheckpoint (last + best by `val/loss`), LearningRateMonitor, Throughput and
  NonFiniteGuard always present and configurable (`--checkpoint.*`, `--nonfinite.*`);
- the config saved beside the logs, overwritten on resume;
- user mistakes (`UserError`) end with one line on stderr and exit 2.
"""

from __future__ import annotations

import sys

from shared.errors import UserError
from shared.quiet import quiet


def run_cli(
    module_cls,
    datamodule_cls,
    args: list[str] | None = None,
    prog: str = "lm",
    subclass_mode_model: bool = False,
) -> None:
    """subclass_mode_model=True: the YAML picks the system (`model: class_path: ...`) among subclasses
    of `module_cls` (the vision track: SigLIP or the captioner)."""
    quiet()
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import TensorBoardLogger

    from shared.callbacks import NonFiniteGuard, Throughput

    class CLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val/loss",
                    "checkpoint.mode": "min",
                    "checkpoint.save_last": True,
                    "checkpoint.save_top_k": 1,
                    "checkpoint.filename": "best-{step}",
                    "checkpoint.auto_insert_metric_name": True,
                }
            )
            parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
            parser.set_defaults({"lr_monitor.logging_interval": "step"})
            parser.add_lightning_class_args(Throughput, "throughput")
            parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            if cfg.trainer.logger in (None, True):  # the default logger: ours, under default_root_dir
                name = getattr(self.model, "run_name", type(self.model).__name__)
                trainer.loggers = [
                    TensorBoardLogger(trainer.default_root_dir, name=name, default_hp_metric=False)
                ]
            return trainer

    try:
        CLI(
            module_cls,
            datamodule_cls,
            subclass_mode_model=subclass_mode_model,
            args=args,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": prog, "default_env": False},
            trainer_defaults={"default_root_dir": "runs"},
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
