"""`text-lm make-task`, `text-lm finetune fit` with LoRA, its checkpoint, merged exports and `text-lm chat`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from tiny import TINY_TEXT

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.train.finetune import state_sha256
from text_lm.checkpoint import model_from_checkpoint
from text_lm.cli import main as text_lm
from text_lm.config import LlamaConfig
from text_lm.model import Llama
from text_lm.task_cli import build

pytestmark = pytest.mark.slow  # a real (3-step) fit
ROOT = Path(__file__).resolve().parents[2]


def save_base(path: Path, model: Llama, tok: Tokenizer) -> None:
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "model_type": "llama", "model_config": model.config.to_dict(),
                "tokenizer": tok.to_dict()}, path)  # fmt: skip


@pytest.fixture(scope="module")
def lora_run(shakespeare_bpe, tmp_path_factory):
    """A random tiny base, the next-line task (a few examples per split), 3 LoRA steps through the CLI."""
    root = tmp_path_factory.mktemp("finetune")
    tok = Tokenizer.load(shakespeare_bpe / "tokenizer.json")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=320, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128)
    base = root / "base.ckpt"
    save_base(base, Llama(cfg), tok)
    info = build(ROOT / "data" / "shakespeare", root / "task", n_train=48, n_val=8, n_test=8, seed=0)
    assert "hamlet_gut" in info["plays"]["test"] and "hamlet_gut" not in info["plays"]["train"]
    text_lm(["finetune", "fit", "-c", str(ROOT / "configs/text/llama-tiny-lora.yaml"), *TINY_TEXT,
             "--model.config.n_heads", "4", "--model.config.n_kv_heads", "2", "--model.config.max_seq_len", "128",
             "--data.seq_len", "64", "--model.init_from", str(base), "--data.data_dir", str(root / "task"),
             "--data.tokenizer", str(shakespeare_bpe / "tokenizer.json"), "--trainer.max_steps", "3",
             "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
             "--trainer.default_root_dir", str(root)])  # fmt: skip
    return root, base, root / "llama-tiny-lora" / "version_0" / "checkpoints" / "last.ckpt"


def test_checkpoint_holds_only_adapters_and_names_its_base(lora_run):
    root, base, last = lora_run
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["state_dict"] and all(k.endswith(("lora_A", "lora_B")) for k in ckpt["state_dict"])
    base_model = Llama(LlamaConfig.from_dict(ckpt["model_config"]))
    base_model.load_state_dict(
        {k[6:]: v for k, v in torch.load(base, weights_only=True)["state_dict"].items()}
    )
    assert ckpt["finetune"]["base_sha256"] == state_sha256(base_model.state_dict())
    assert ckpt["finetune"]["lora"]["rank"] == 8 and ckpt["finetune"]["base"] == str(base)
    model, _ = model_from_checkpoint(last)
    trained = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    assert state_sha256(trained) == state_sha256(base_model.state_dict())  # the base did not move
    assert any(v.abs().sum() > 0 for k, v in ckpt["state_dict"].items() if k.endswith("lora_B"))  # B trained


def test_export_hf_merges_with_unmerged_logits(lora_run):
    transformers = pytest.importorskip("transformers")
    root, _, last = lora_run
    model, _ = model_from_checkpoint(last)  # adapters unmerged
    text_lm(["export-hf", "--checkpoint", str(last), "--out", str(root / "hf")])
    hf = transformers.AutoModelForCausalLM.from_pretrained(root / "hf").eval()
    idx = torch.randint(0, 320, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx).logits, atol=1e-5, rtol=1e-5)
    assert "chat_template" in (root / "hf" / "tokenizer_config.json").read_text()


def test_a_changed_base_is_refused(lora_run, tmp_path):
    _, base, last = lora_run
    ckpt = torch.load(last, weights_only=True)
    moved = torch.load(base, weights_only=True)
    next(iter(moved["state_dict"].values())).add_(1.0)
    save_path = tmp_path / "other_base.ckpt"
    torch.save(moved, save_path)
    ckpt["finetune"]["base"] = str(save_path)
    torch.save(ckpt, tmp_path / "lora.ckpt")
    with pytest.raises(UserError, match="the base changed since"):
        model_from_checkpoint(tmp_path / "lora.ckpt")


def test_chat_keeps_history_resets_and_refuses_an_overlong_message_in_one_line(lora_run, monkeypatch, capsys):
    import text_lm.generate
    from text_lm.chat_cli import main as chat

    _, _, last = lora_run
    prompts, real = [], text_lm.generate.generate_tokens

    def spy(model, prompt, *args, **kwargs):
        prompts.append(prompt[0].tolist())
        yield from real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(text_lm.generate, "generate_tokens", spy)
    lines = "Who is there?\n" + "Nay, answer me. " * 40 + "\n\nStand, and unfold yourself.\n/reset\nHe.\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    with pytest.raises(SystemExit) as exit_info:
        chat(["--checkpoint", str(last), "--max-new-tokens", "8", "--temperature", "0"])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out
    assert err.count("\n") == 1 and err.startswith("error: the message is too long")
    tok = model_from_checkpoint(last)[1]
    said = [tok.decode(p) for p in prompts]
    assert len(said) == 3
    assert said[0] == "<|user|>Who is there?<|eos|><|assistant|>"  # the role-token layout
    assert said[1].startswith(said[0]) and said[1].endswith(
        "<|user|>Stand, and unfold yourself.<|eos|><|assistant|>"
    )
    assert said[2] == "<|user|>He.<|eos|><|assistant|>"  # after /reset


def test_history_drops_the_oldest_exchanges_to_fit_the_context(lora_run):
    from text_lm.chat_cli import fit_history

    tok = model_from_checkpoint(lora_run[2])[1]
    turns = [{"role": r, "content": f"{r} {i} speaks"} for i in range(3) for r in ("user", "assistant")][:-1]
    ids, kept = fit_history(tok, [], turns, room=1000)
    assert kept == turns
    alone = len(fit_history(tok, [], turns[-1:], room=1000)[0])
    ids, kept = fit_history(tok, [], turns, room=alone)
    assert kept == turns[-1:] and len(ids) == alone
    with pytest.raises(UserError, match="too long"):
        fit_history(tok, [], turns, room=alone - 1)


def test_chat_bad_flag_is_one_line(lora_run, capsys):
    from text_lm.chat_cli import main as chat

    with pytest.raises(SystemExit) as exit_info:
        chat(["--checkpoint", str(lora_run[2]), "--top-p", "2"])
    assert exit_info.value.code != 0 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("config", ["llama-tiny-lora.yaml", "llama-tiny-sft.yaml"])
def test_finetune_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        text_lm(["finetune", "fit", "-c", str(ROOT / "configs/text" / config), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "tokenizer:" in out and ("rank: 8" in out) == ("lora" in config)


def test_export_gguf_writes_the_merged_weights(lora_run):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    from shared.nn.lora import merge_lora

    root, _, last = lora_run
    text_lm(["export-gguf", "--checkpoint", str(last), "--out", str(root / "m.gguf")])
    model, _ = model_from_checkpoint(last)
    base_o = model.stack.layers[0].attn.o_proj.weight.detach().clone()
    merge_lora(model)
    merged_o = model.stack.layers[0].attn.o_proj.weight.detach()
    tensors = {t.name: t for t in gguf.GGUFReader(root / "m.gguf").tensors}
    written = torch.from_numpy(np.array(tensors["blk.0.attn_output.weight"].data)).reshape(merged_o.shape)
    assert not torch.equal(merged_o, base_o)  # the adapters moved it
    torch.testing.assert_close(written, merged_o, atol=0, rtol=0)
