"""`System`: the LightningModule base of the three training systems (text LM, SigLIP, captioner).

A system wraps one model (a plain `nn.Module` built from one config dataclass) with what training
it takes: loss, metrics, logging, optimizer. The base owns the skeleton they share; a subclass
says what differs through a few hooks (`build_model`, `load_initial_weights`, `param_group_options`,
`frozen_modules`, `check_checkpoint`) and writes its own steps and metrics.

- Hyper-parameters are plain data: the config object is kept as `self.config` and stored as its
  `to_dict()`, so checkpoints load with `torch.load(weights_only=True)`.
- `configure_model` builds the model (here, not in `__init__`, so FSDP can shard it as it is
  created), loads starting weights where the system has them (`init_from`), turns on gradient
  checkpointing and compiles it.
- `configure_optimizers`: the injected optimizer (AdamW, or Muon + AdamW) over our parameter groups
  (`shared/train/optim.py`, each group with its role) and the schedule (`shared/train/schedule.py`:
  warmup, then cosine or WSD over the budget, `shared/train/budget.py`), stepped per optimizer step;
  `train/grad_norm` before each step.
- Checkpoints are self-contained (ARCHITECTURE.md section 3): `model_type` ("llama", "siglip",
  "paligemma"), `model_config` and the DataModule's `tokenizer`, all plain data.
- The DataModule is read through `self.data`, typed by the system's `data_contract` Protocol
  (`shared/train/data_contract.py`) and checked on the first read of each DataModule, never probed with `hasattr`.
  A DataModule that may train its own tokenizer (`TrainableTokenizerData`) gets the tokenizer
  saved as `tokenizer.json` in the run folder, and on resume or evaluation a checkpoint's tokenizer
  replaces one it trained; a different tokenizer named explicitly (`data.tokenizer`) is an error.

Subclasses keep an explicit, typed `__init__` with its Args docstring: LightningCLI reads the
subclass's signature and docstring for the YAML keys and `--help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from shared.errors import UserError
from shared.nn.transformer import Transformer
from shared.tokenizer import Tokenizer
from shared.train.budget import find_budget, schedule_length
from shared.train.data_contract import TokenizedData, TrainableTokenizerData, check_contract
from shared.train.finetune import LoRA
from shared.train.optim import configure_optimizer, log_grad_norm
from shared.train.schedule import multiplier_fn


class System(L.LightningModule):
    model_type: ClassVar[str]
    """What the checkpoint says it holds: "llama", "siglip" or "paligemma"."""
    data_contract: ClassVar[type] = TokenizedData
    """The Protocol the trainer's DataModule must satisfy (`self.data`)."""

    def __init__(
        self,
        config,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        compile: bool = False,
        gradient_checkpointing: bool = False,
        schedule: Literal["cosine", "wsd"] = "cosine",
        decay_fraction: float = 0.2,
    ):
        """
        Args:
            config: the model's config dataclass (with `to_dict()` and `name`).
            optimizer: optimizer class and arguments; it receives our parameter groups, each with
                its role (matrix, embedding, head, vector): torch.optim.AdamW,
                shared.train.optim.AdamW (per-role settings) or shared.train.muon.MuonAdamW.
            warmup_steps: linear warmup steps (optimizer steps, under any budget).
            min_lr_ratio: final learning rate as a fraction of the peak.
            compile: torch.compile the model (not the LightningModule).
            gradient_checkpointing: recompute each block's activations in the backward pass instead
                of keeping them (every `Transformer` stack in the model): activation memory of one
                block instead of all, for about one more forward pass; the same gradients.
            schedule: after the warmup, "cosine" down to min_lr_ratio, or "wsd" (the peak, then a
                linear decay to min_lr_ratio over the last decay_fraction of the budget), both as a
                function of the fraction of the budget done: trainer.max_steps, else
                trainer.max_time (training time) or budget.max_tokens.
            decay_fraction: wsd: the last fraction of the budget over which the rate decays.
        """
        if not 0 <= decay_fraction <= 1:
            raise UserError(f"decay_fraction must be in [0, 1], got {decay_fraction}")
        super().__init__()
        self.config = config
        # Lightning collects the arguments of every __init__ up the class chain: the subclass's too.
        self.save_hyperparameters(ignore=["optimizer", "config"])
        self.hparams["config"] = config.to_dict()  # plain dict: safe (weights_only) loading
        self.optimizer_factory = optimizer
        self.model: nn.Module | None = None
        self._checked_data: int | None = None  # id() of the DataModule whose contract has been checked
        self.finetuning: LoRA | None = None
        """Set by a subclass: LoRA (shared/train/finetune.py) trains and saves adapters only; None: all."""

    @property
    def run_name(self) -> str:
        """The run folder's name under the log root: the config's `name`."""
        return self.config.name

    # ------------------------------------------------------------------ what a subclass says
    def build_model(self) -> nn.Module:
        """A fresh model from `self.config`."""
        raise NotImplementedError

    def load_initial_weights(self) -> None:
        """Copy starting weights into the new `self.model` (fine-tuning); by default none."""

    def param_group_options(self) -> dict:
        """Extra keyword arguments of `configure_optimizer`: `no_decay_embeddings`, `lr_multipliers`."""
        return {}

    def frozen_modules(self) -> list[nn.Module]:
        """Parts of the model that do not train (their parameters join no optimizer group)."""
        return []

    def check_checkpoint(self, checkpoint: dict) -> None:
        """Refuse (UserError) a checkpoint this run cannot resume or evaluate as set up; by default any."""

    def count_batch(self, batch) -> dict[str, int]:
        """What a batch holds, {unit: n} (`Throughput`, shared/train/callbacks.py)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ model and optimizer
    def configure_model(self) -> None:
        """Build the model here, not in __init__, so FSDP can shard it as it is created."""
        if self.model is not None:
            return
        self.model = self.build_model()
        self.load_initial_weights()
        if self.finetuning is not None:  # after the base weights, before checkpointing and compile
            self.finetuning.prepare(self.model)
        if self.hparams.gradient_checkpointing:
            for stack in self.model.modules():
                if isinstance(stack, Transformer):
                    stack.gradient_checkpointing = True
        if self.hparams.compile:
            self.model.compile()

    def configure_optimizers(self):
        for part in self.frozen_modules():
            part.requires_grad_(False)
        h = self.hparams
        shape, budget = h.get("schedule", "cosine"), find_budget(self.trainer)
        args = (shape, h.warmup_steps, h.min_lr_ratio, h.get("decay_fraction", 0.2))
        if budget is not None and budget.drives_schedule(self.trainer):
            at, length = multiplier_fn(*args, progress=budget.progress), budget.describe()
        else:
            total = schedule_length(self.trainer)
            at, length = multiplier_fn(*args, total_steps=total), f"{total} optimizer steps"
        if getattr(self.trainer, "is_global_zero", False):
            rank_zero_info(
                f"learning-rate schedule: {h.warmup_steps} warmup steps, then {shape} over {length}"
            )
        return configure_optimizer(self.model, self.optimizer_factory, at, **self.param_group_options())

    def on_before_optimizer_step(self, optimizer):
        log_grad_norm(self)

    # ------------------------------------------------------------------ data
    @property
    def data(self):
        """The trainer's DataModule, checked against `data_contract`; None without a trainer or a
        DataModule (a model rebuilt from a checkpoint, a test calling the system directly)."""
        dm = self._trainer.datamodule if self._trainer is not None else None
        if dm is not None and id(dm) != self._checked_data:  # once per DataModule, not per batch
            check_contract(dm, self.data_contract, type(self).__name__)
            self._checked_data = id(dm)
        return dm

    def _trains_tokenizer(self) -> bool:
        return TrainableTokenizerData in self.data_contract.__mro__

    def _tensorboard(self):
        """The TensorBoard `SummaryWriter` of the run, or None (on other ranks, or with another logger)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    # ------------------------------------------------------------------ checkpoints and tokenizer
    def on_fit_start(self) -> None:
        dm, log_dir = self.data, self.logger.log_dir if self.logger else None
        if not self._trains_tokenizer() or dm is None or dm.tokenizer is None or not log_dir:
            return
        if self.trainer.is_global_zero:
            dm.tokenizer.save(Path(log_dir) / "tokenizer.json")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Self-contained checkpoints: model type, model config and tokenizer, as plain data."""
        checkpoint["model_type"] = self.model_type
        checkpoint["model_config"] = self.config.to_dict()
        dm = self.data
        if dm is not None and dm.tokenizer is not None:
            checkpoint["tokenizer"] = dm.tokenizer.to_dict()
        if self.finetuning is not None:
            self.finetuning.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming or evaluating a checkpoint uses its tokenizer where the DataModule trained its own."""
        self.check_checkpoint(checkpoint)
        if self.finetuning is not None:
            self.finetuning.on_load_checkpoint(checkpoint, self)
        dm, saved = self.data, checkpoint.get("tokenizer")
        if dm is None or saved is None or not self._trains_tokenizer():
            return
        tok = Tokenizer.from_dict(saved, source="checkpoint tokenizer")
        if dm.tokenizer is not None and dm.tokenizer.sha256 == tok.sha256:
            return
        if dm.tokenizer is not None and not dm.tokenizer_trained:
            raise UserError(
                "data.tokenizer differs from the checkpoint's tokenizer; leave data.tokenizer unset"
            )
        dm.set_tokenizer(tok, trained=True)
