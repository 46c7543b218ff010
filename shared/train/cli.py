"""The LightningCLI both tracks use: `<track> fit|validate|test -c config.yaml`.

It fixes the known pitfalls once:
- TensorBoard under `trainer.default_root_dir` (no `hp_metric`), so `--trainer.default_root_dir`
  moves logs and checkpoints together and configs never hard-code a `save_dir`;
- checkpoints (`checkpoint_io.LastAndBest`: last.ckpt always the newest state, best by `val/loss`), LearningRateMonitor, Throughput, NonFiniteGuard
  and Budget always present and configurable (`--checkpoint.*`, `--nonfinite.*`, `--budget.*`);
- glibc keeps freed memory (shared/train/allocator.py): a step's buffers are not faulted in afresh;
- `trainer.precision: auto` (shared/train/precision.py): bf16-mixed where bf16 matmuls measure
  faster, else fp32, printed at start;
- `trainer.max_time` handed to Budget (`shared/train/budget.py`) instead of Lightning's Timer: it
  stops the run on training time (validation excluded), the clock time-budgeted schedules read;
- checkpoints written atomically (`shared/train/checkpoint_io.py`), so a kill never leaves a
  `last.ckpt` that cannot be loaded, and read with `weights_only=True`;
- `--ckpt_path last` resumes the newest run folder `<root>/<name>/version_N` and keeps logging
  into it (Lightning alone would look in a fresh `version_N+1` and start from scratch);
- the config saved beside the logs, overwritten on resume;
- user mistakes (`UserError`, a bad flag or value, an unreadable `--ckpt_path`) end with one
  line on stderr and exit 2, and a run that failed before its first checkpoint leaves no
  run folder behind; a non-finite loss exits 3 (`NonFiniteGuard`).
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

from shared.errors import UserError
from shared.train.allocator import keep_freed_memory
from shared.train.precision import trainer_class
from shared.train.quiet import quiet

CKPT_KEYWORDS = ("last", "best", "hpc")


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
    keep_freed_memory()  # no page faults for the buffers every step makes again (shared/train/allocator.py)
    from jsonargparse import ArgumentError

    new_run_dirs: list[Path] = []  # run folders this command creates: removed again if it fails early
    try:
        _cli_class(prog, new_run_dirs)(
            module_cls,
            datamodule_cls,
            subclass_mode_model=subclass_mode_model,
            args=args,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": prog, "default_env": False, "exit_on_error": False},
            trainer_class=trainer_class(),
            trainer_defaults={"default_root_dir": "runs"},
        )
    except FloatingPointError as e:  # NonFiniteGuard: the run's logs and checkpoints stay
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except Exception as e:
        user = _user_error(e)
        if user is None and not isinstance(e, ArgumentError):
            raise
        for folder in new_run_dirs:
            _remove_if_no_checkpoint(folder)
        print(f"error: {_line(user or e)}", file=sys.stderr)
        sys.exit(2)


class _Resolved(Exception):
    """Carries the parsed config out of LightningCLI before it instantiates anything."""


def resolve_config(
    module_cls,
    datamodule_cls,
    args: list[str],
    prog: str = "lm",
    subclass_mode_model: bool = False,
) -> dict:
    """The whole config `prog fit -c YAML --section.key value ...` (args, subcommand first) will run with,
    as plain data: the YAML, every override and every default, parsed and validated by the same parser
    `run_cli` uses, in the form Lightning saves as the run's config.yaml (the subcommand's part).
    Nothing is instantiated: no model, no Trainer, no run folder. A bad flag or value is a one-line
    UserError (jsonargparse's message)."""
    quiet()
    from jsonargparse import ArgumentError

    class Resolve(_cli_class(prog, [])):
        def _set_seed(self) -> None:
            """Seeding belongs to the run: resolving leaves the caller's random state alone."""

        def before_instantiate_classes(self) -> None:
            with warnings.catch_warnings():  # Lightning 2.6 still passes jsonargparse's old skip_none
                warnings.filterwarnings("ignore", message=r".*skip_none parameter was deprecated.*")
                self._dump_config()  # Lightning's own dump (SaveConfigCallback writes the same)
            raise _Resolved(self.config_dump)

    try:
        Resolve(
            module_cls,
            datamodule_cls,
            subclass_mode_model=subclass_mode_model,
            args=args,
            parser_kwargs={"prog": prog, "default_env": False, "exit_on_error": False},
            trainer_class=trainer_class(),
            trainer_defaults={"default_root_dir": "runs"},
        )
    except _Resolved as done:
        return done.args[0]
    except Exception as e:
        user = _user_error(e)
        if user is None and not isinstance(e, ArgumentError):
            raise
        raise UserError(_line(user or e)) from None
    raise AssertionError("LightningCLI returned without instantiating its classes")


def _cli_class(prog: str, new_run_dirs: list[Path]):
    """Our LightningCLI: the callbacks, the atomic checkpoint IO, `--ckpt_path last`, the one logger.
    Run folders it creates are appended to `new_run_dirs`."""
    from jsonargparse import ArgumentError
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import TensorBoardLogger

    from shared.train.budget import Budget
    from shared.train.callbacks import NonFiniteGuard, Throughput
    from shared.train.checkpoint import check_checkpoint_file, load_error
    from shared.train.checkpoint_io import AtomicCheckpointIO, LastAndBest, newest_run

    class CLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(LastAndBest, "checkpoint")  # last.ckpt: the newest state
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
            parser.add_lightning_class_args(Budget, "budget")

        def _parse_ckpt_path(self) -> None:
            """Lightning reads the hyper-parameters of `--ckpt_path` right after parsing: check the file
            first, so a missing or truncated one is one line naming it, not a torch traceback."""
            sub = self.config.get("subcommand")
            path = self.config[sub].get("ckpt_path") if sub else None
            if path and path not in CKPT_KEYWORDS:
                check_checkpoint_file(path)
                try:
                    super()._parse_ckpt_path()
                except ArgumentError as e:
                    raise UserError(
                        f"{path}: its hyper-parameters do not fit `{prog} {sub}` ({_line(e)})"
                    ) from None
                except Exception as e:  # torch.load: corrupt member, weights_only refusal
                    raise UserError(f"{path}: {load_error(e)}") from None

        def instantiate_trainer(self, **kwargs):
            init = self.config_init[self.subcommand] if self.subcommand else self.config_init
            budget = init.get("budget")
            if isinstance(budget, Budget):  # our Budget stops at max_time on the clock the schedule reads
                budget.set_duration(init["trainer"].get("max_time"))
                kwargs["max_time"] = None
            trainer = super().instantiate_trainer(**kwargs)
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a user's own plugin
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            self._resume_from = None
            if cfg.trainer.logger in (None, True):  # the default logger: ours, under default_root_dir
                name = getattr(self.model, "run_name", type(self.model).__name__)
                version = self._resolve_last(cfg, trainer.default_root_dir, name)
                logger = TensorBoardLogger(
                    trainer.default_root_dir, name=name, version=version, default_hp_metric=False
                )
                trainer.loggers = [logger]
                new_run_dirs.extend(_first_missing(Path(logger.log_dir)))
            return trainer

        def _resolve_last(self, cfg, root: str, name: str) -> int | None:
            """For `--ckpt_path last`: the run version to log into (fit) and the checkpoint to load."""
            if cfg.get("ckpt_path") != "last" or cfg.get("checkpoint", {}).get("dirpath"):
                return None  # an explicit path, or a dirpath Lightning searches itself
            found = newest_run(root, name)
            if found is None:
                if self.subcommand == "fit":  # nothing to resume yet: Lightning warns and starts afresh
                    return None
                raise UserError(
                    f"--ckpt_path last: no last.ckpt in the newest run folder under {root}/{name}"
                )
            version, self._resume_from = found
            print(f"resuming from {self._resume_from}", file=sys.stderr)
            return version if self.subcommand == "fit" else None  # evaluations log in a folder of their own

        def _use_resolved_ckpt(self) -> None:
            if getattr(self, "_resume_from", None) is not None:
                self.config_init[self.subcommand]["ckpt_path"] = str(self._resume_from)

        before_fit = before_validate = before_test = before_predict = _use_resolved_ckpt

    return CLI


def _user_error(e: BaseException | None) -> UserError | None:
    """The UserError behind `e`: jsonargparse wraps the ones our configs raise while it instantiates them."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _line(e: BaseException, limit: int = 400) -> str:
    """An exception as one line (jsonargparse messages span several)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_missing(folder: Path) -> list[Path]:
    """The outermost of `folder` and its parents that does not exist yet (what a run would create)."""
    top = None
    while not folder.exists():
        top, folder = folder, folder.parent
    return [top] if top is not None else []


def _remove_if_no_checkpoint(folder: Path) -> None:
    """Delete a folder that a failed command created, unless it holds a checkpoint, so mistakes leave
    nothing that looks like a run."""
    if folder.is_dir() and not any(folder.rglob("*.ckpt")):
        shutil.rmtree(folder, ignore_errors=True)
