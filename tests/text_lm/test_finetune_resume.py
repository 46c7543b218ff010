"""A LoRA fine-tune stopped mid-run and resumed with `--ckpt_path` from its adapter checkpoint ends
exactly where an uninterrupted run ends: the same loss at every step and the same adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import TINY_TEXT

from shared.tokenizer import Tokenizer
from shared.train.tb_events import read_scalars
from text_lm.cli import main as text_lm
from text_lm.config import LlamaConfig
from text_lm.model import Llama
from text_lm.task_cli import build

pytestmark = pytest.mark.slow  # real (6-step) fits
ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 6, 3  # a small task (3 batches an epoch), so the 6 steps cross an epoch boundary too


@pytest.fixture(scope="module")
def setup(shakespeare_bpe, tmp_path_factory):
    """A random tiny base (with the fixture's tokenizer) and a small next-line task."""
    root = tmp_path_factory.mktemp("ft_resume")
    tok = Tokenizer.load(shakespeare_bpe / "tokenizer.json")
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=320, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    base = root / "base.ckpt"
    torch.save({"state_dict": state, "model_type": "llama", "model_config": model.config.to_dict(),
                "tokenizer": tok.to_dict()}, base)  # fmt: skip
    build(ROOT / "data" / "shakespeare", root / "task", n_train=24, n_val=4, n_test=4, seed=0)
    return root, base, shakespeare_bpe / "tokenizer.json"


def finetune(setup, out: Path, *extra: str) -> None:
    _, base, tokenizer = setup
    text_lm(["finetune", "fit", "-c", str(ROOT / "configs/text/llama-tiny-lora.yaml"), *TINY_TEXT,
             "--model.config.n_heads", "4", "--model.config.n_kv_heads", "2", "--model.config.max_seq_len", "64",
             "--data.seq_len", "64", "--model.init_from", str(base), "--data.data_dir", str(setup[0] / "task"),
             "--data.tokenizer", str(tokenizer), "--model.warmup_steps", "2",
             "--trainer.max_steps", str(STEPS), "--trainer.limit_val_batches", "0",
             "--checkpoint.every_n_train_steps", str(EVERY), "--checkpoint.save_top_k", "-1",
             "--checkpoint.monitor", "null", "--checkpoint.filename", "{step}",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
             "--trainer.default_root_dir", str(out), *extra])  # fmt: skip


def losses(root: Path) -> dict[int, float]:
    folders = sorted({e.parent for e in root.rglob("events.out.tfevents.*")})
    return {step: v for f in folders for step, _, v in read_scalars(f, "train/loss")}


@pytest.mark.parametrize("dropout", ["0.0", "0.1"])  # with dropout, the masks go on as they were too
def test_a_stopped_lora_run_resumes_from_its_adapters_to_the_same_result(setup, tmp_path, dropout):
    finetune(setup, tmp_path / "straight", "--model.lora.dropout", dropout)
    straight = losses(tmp_path / "straight")
    assert sorted(straight) == list(range(STEPS))
    final = torch.load(next((tmp_path / "straight").rglob("last.ckpt")), weights_only=True)

    mid = next((tmp_path / "straight").rglob(f"step={STEPS // 2}.ckpt"))
    stopped = torch.load(mid, weights_only=True)
    assert all(k.endswith(("lora_A", "lora_B")) for k in stopped["state_dict"])  # adapters only
    finetune(setup, tmp_path / "resumed", "--model.lora.dropout", dropout, "--ckpt_path", str(mid))
    resumed = losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(STEPS // 2, STEPS))
    assert all(resumed[s] == straight[s] for s in resumed), (resumed, straight)
    again = torch.load(next((tmp_path / "resumed").rglob("last.ckpt")), weights_only=True)
    assert again["global_step"] == STEPS and set(again["state_dict"]) == set(final["state_dict"])
    for k, v in final["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][k], v, rtol=0, atol=0)
