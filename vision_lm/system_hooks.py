"""Hooks every vision-track system shares: a self-contained checkpoint carries its tokenizer.

`TokenizerHooks` is mixed into a LightningModule whose DataModule is `ImageTextDataModule`:
- fit saves the tokenizer as `tokenizer.json` in the run folder;
- each checkpoint stores the tokenizer (plain dict, so `weights_only` loading works);
- resuming or evaluating a checkpoint uses its tokenizer, replacing one the DataModule
  trained itself; a different tokenizer named explicitly (`data.tokenizer`) is an error.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError
from shared.tokenizer import Tokenizer


class TokenizerHooks:
    def on_fit_start(self) -> None:
        dm, log_dir = self._datamodule(), self.logger.log_dir if self.logger else None
        tok = getattr(dm, "tokenizer", None)
        if tok is not None and log_dir and self.trainer.is_global_zero:
            tok.save(Path(log_dir) / "tokenizer.json")

    def save_tokenizer(self, checkpoint: dict) -> None:
        tok = getattr(self._datamodule(), "tokenizer", None)
        if tok is not None:
            checkpoint["tokenizer"] = tok.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        dm, saved = self._datamodule(), checkpoint.get("tokenizer")
        if dm is None or saved is None or not hasattr(dm, "set_tokenizer"):
            return
        tok = Tokenizer.from_dict(saved, source="checkpoint tokenizer")
        if dm.tokenizer is not None and dm.tokenizer.sha256 == tok.sha256:
            return
        if dm.tokenizer is not None and not dm.tokenizer_trained:
            raise UserError(
                "data.tokenizer differs from the checkpoint's tokenizer; leave data.tokenizer unset"
            )
        dm.set_tokenizer(tok, trained=True)

    def _datamodule(self):
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def _tensorboard(self):
        """The TensorBoard `SummaryWriter` of the run, or None (on other ranks, or with another logger)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None
