"""An export is a model transformers can feed text: `AutoTokenizer` and `pipeline("text-generation")` load
the folder, and greedy decoding there equals `text-lm generate --temperature 0`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.tokenizer import Tokenizer
from text_lm.config import LlamaConfig
from text_lm.export_cli import main as export
from text_lm.generate_cli import main as generate
from text_lm.model import Llama

transformers = pytest.importorskip("transformers")
DATA = Path(__file__).resolve().parents[2] / "data" / "shakespeare"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random Llama with a real tokenizer, saved as a checkpoint the commands read, then exported."""
    root = tmp_path_factory.mktemp("export")
    tok = Tokenizer.train(
        [(DATA / "macbeth_gut.txt").read_text(encoding="utf-8")[:30_000]], 384, progress=False
    )
    cfg = LlamaConfig.preset(
        "llama-tiny", vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2
    )
    torch.manual_seed(0)
    model = Llama(cfg)
    ckpt = root / "last.ckpt"
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "model_config": cfg.to_dict(), "tokenizer": tok.to_dict()}, ckpt)
    export(["--checkpoint", str(ckpt), "--out", str(root / "hf")])
    return ckpt, root / "hf", tok


def test_auto_tokenizer_gives_our_ids(exported):
    _, out, tok = exported
    auto = transformers.AutoTokenizer.from_pretrained(out)
    for text in ["ROMEO:\n  But soft!", "émoji 😀 <|eos|>\t\tend", ""]:
        assert auto(text)["input_ids"] == tok.encode(text, allowed_special="all")


def test_pipeline_greedy_equals_text_lm_generate(exported, capsys):
    ckpt, out, _ = exported
    prompt, n = "MACBETH:\nIf it were done", 24
    generate(
        ["--checkpoint", str(ckpt), "--prompt", prompt, "--max-new-tokens", str(n), "--temperature", "0"]
    )
    ours = capsys.readouterr().out.removesuffix("\n")
    pipe = transformers.pipeline("text-generation", model=str(out), device="cpu")
    theirs = pipe(prompt, max_new_tokens=n, do_sample=False)[0]["generated_text"]
    assert len(ours) > len(prompt)
    assert theirs == ours
