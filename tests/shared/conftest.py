"""Fixtures of the tokenizer tests: a small tokenizer learned from two plays."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.tokenizer import Tokenizer

DATA = Path(__file__).resolve().parents[2] / "data" / "shakespeare"


def play(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    """Vocab 512 learned from two plays; other plays are held out for parity tests."""
    return Tokenizer.train([play("macbeth_gut.txt"), play("julius_caesar_gut.txt")], 512, progress=False)
