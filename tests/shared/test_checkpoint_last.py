"""`last.ckpt` is the newest state (`shared/train/checkpoint_io.LastAndBest`), whatever the monitored loss did.

Lightning 2.6's `ModelCheckpoint(save_last=True)` writes `last.ckpt` only where it writes a top-k
file: with a validation loss that rises, its `last.ckpt` stays at the first validation.
"""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shared.train.checkpoint_io import LastAndBest


class _Rising(L.LightningModule):
    """A model whose validation loss grows with every step, so the best checkpoint is the first."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(root, max_steps, **trainer_args):
    data = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=2)
    callback = LastAndBest(dirpath=root, monitor="val/loss", mode="min", save_top_k=1, save_last=True)
    trainer = L.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        callbacks=[callback],
        **trainer_args,
    )
    trainer.fit(_Rising(), data, data)
    return callback


def _step(path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


@pytest.mark.parametrize("max_steps", [9, 7], ids=["ends-at-validation", "ends-between-validations"])
def test_last_is_newest_when_the_loss_rises(tmp_path, max_steps):
    callback = _fit(tmp_path, max_steps, val_check_interval=3, check_val_every_n_epoch=None)
    assert _step(tmp_path / "last.ckpt") == max_steps
    assert _step(callback.best_model_path) == 3  # the top-k file stays Lightning's: the lowest loss
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == sorted(["last.ckpt", "epoch=0-step=3.ckpt"])


def test_last_is_newest_with_epoch_end_validation(tmp_path):
    callback = _fit(tmp_path, 80, max_epochs=3, limit_train_batches=10)  # validates at each epoch's end
    assert _step(tmp_path / "last.ckpt") == 30
    assert _step(callback.best_model_path) == 10
