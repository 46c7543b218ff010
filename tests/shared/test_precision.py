"""`trainer.precision: auto` (`shared/train/precision.py`): the choice follows the measurement, the
CLI accepts and keeps "auto", and a wrong precision is still one error naming the field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shared.errors import UserError
from shared.train import precision
from shared.train.cli import resolve_config
from text_lm.data import TextDataModule
from text_lm.module import LanguageModelModule

ROOT = Path(__file__).resolve().parents[2]


def test_auto_picks_bf16_only_when_it_measures_faster(monkeypatch):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "bf16_autocast_speedup", lambda device: 1.6)
    assert precision.auto_precision("auto")[0] == "bf16-mixed"
    monkeypatch.setattr(precision, "bf16_autocast_speedup", lambda device: 1.1)
    choice, why = precision.auto_precision("cpu")
    assert choice == "32-true" and "1.10x" in why
    assert precision.resolve_precision("bf16-mixed") == "bf16-mixed"  # anything else is left alone
    assert precision.resolve_precision("auto", "cpu") == "32-true"


def test_the_measurements_are_real_ratios():
    for measure in (precision.bf16_autocast_speedup, precision.bf16_matmul_speedup):
        ratio = measure("cpu")
        assert math.isfinite(ratio) and 0.05 < ratio < 50
        assert measure("cpu") is ratio  # measured once per process


def test_the_cli_keeps_auto_and_names_a_wrong_precision():
    args = ["fit", "-c", str(ROOT / "configs/text/llama-tiny.yaml")]
    cfg = resolve_config(LanguageModelModule, TextDataModule, args, prog="text-lm")
    assert cfg["trainer"]["precision"] == "auto"
    with pytest.raises(UserError, match="trainer.precision"):
        resolve_config(
            LanguageModelModule, TextDataModule, [*args, "--trainer.precision", "bf17"], prog="text-lm"
        )
    trainer = precision.trainer_class()(precision="auto", logger=False, enable_checkpointing=False)
    assert trainer.precision in ("bf16-mixed", "32-true")
