"""What many test files share: prepared data made once per session and the `gpu` marker's skip.
The tiny text model's overrides are `tests/tiny.py`'s `TINY_TEXT` (a constant the tests' own helpers
use at import time, so a module rather than a fixture).

Markers (registered in pyproject.toml): `slow` tests train for real or start subprocesses; they run
in `make test`, and `pytest -m "not slow"` leaves them out for a quick loop. `gpu` tests need CUDA
and are skipped without it.

Reading TensorBoard scalars back is `shared.train.tb_events.read_scalars`, the reports' own reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLAYS = ROOT / "data" / "shakespeare"


def pytest_collection_modifyitems(config, items):
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def shakespeare_bpe(tmp_path_factory) -> Path:
    """`text-lm prepare` of the sonnets and Macbeth (the sonnets are the validation split), vocab 320.
    Shared, so read only: a test that damages it works on a copy."""
    from text_lm.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "bpe"
    files = [str(PLAYS / "sonnets_gut.txt"), str(PLAYS / "macbeth_gut.txt")]
    prepare(out, files, vocab_size=320, val_files=["sonnets_gut.txt"], num_workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """The synthetic shapes set, 48 train / 16 val / 16 test images (`vision-lm make-shapes`)."""
    from vision_lm.shapes import make_shapes

    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", 48, 16, 16, seed=2, progress=False)
