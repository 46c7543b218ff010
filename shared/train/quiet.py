"""Silence known-harmless warnings and Lightning's product tips, once, for every command.

Users should see only what matters: progress, metrics and real problems.
"""

from __future__ import annotations

import logging
import os
import warnings

_DONE = False


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("💡 Tip") or "litlogger" in msg or "litmodels" in msg)


def quiet() -> None:
    """Idempotent. The warning filters are re-applied on every call: a `warnings.catch_warnings()`
    block around an earlier call (tests, notebooks) restores the old filters when it exits."""
    global _DONE
    # torch 2.13 + Lightning 2.6: emitted on every fit, harmless.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
    # On CPU-only machines workers are often deliberately 0; the hint is noise there.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings(
        "ignore", message=r".*The number of training batches .* is smaller than the logging.*"
    )
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    # We pass argv to LightningCLI ourselves (the track dispatchers strip the subcommand name).
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
    # The model summary cannot estimate sizes under mixed precision; it still prints the table.
    warnings.filterwarnings("ignore", message=r".*is not supported by the model summary.*")
    # `validate --ckpt_path` of a fit run logs elsewhere; only best_model_path matters there.
    warnings.filterwarnings("ignore", message=r".*The dirpath has changed from.*")
    if _DONE:
        return
    _DONE = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch",
        "lightning.fabric",
    ):
        logging.getLogger(name).addFilter(_DropTips())
