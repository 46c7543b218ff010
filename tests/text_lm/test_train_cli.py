"""The real `text-lm` CLI end to end: fit, resume, fine-tune, DDP, generate, export, configs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY_TEXT

from shared.train.tb_events import read_scalars
from text_lm.cli import main as text_lm

pytestmark = pytest.mark.slow  # real fits, a two-process DDP run, every shipped config

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    *TINY_TEXT, "--model.config.n_heads", "4", "--model.config.n_kv_heads", "2", "--model.sample_tokens", "8",
    "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def fit(config, data_dir, root, *extra):
    text_lm(["fit", "-c", str(ROOT / "configs/text" / config), *TINY, "--data.data_dir", str(data_dir),
             "--trainer.default_root_dir", str(root), *extra])  # fmt: skip


def scalars(root: Path, tag: str) -> dict[int, float]:
    """step -> value of `tag` over every TensorBoard run folder under `root` (a resumed run's too)."""
    folders = sorted({events.parent for events in root.rglob("events.out.tfevents.*")})
    return {step: value for folder in folders for step, _, value in read_scalars(folder, tag)}


def test_fit_writes_checkpoints_and_tensorboard_then_generate_and_export(shakespeare_bpe, tmp_path, capsys):
    fit(
        "llama-moe-tiny.yaml",
        shakespeare_bpe,
        tmp_path,
        "--trainer.max_steps",
        "6",
        "--trainer.val_check_interval",
        "3",
    )
    version = tmp_path / "llama-moe-tiny" / "version_0"
    last = version / "checkpoints" / "last.ckpt"
    assert last.is_file() and list((version / "checkpoints").glob("best-*.ckpt"))
    assert (version / "config.yaml").is_file()
    for tag in ("train/loss", "train/aux_loss", "val/loss", "val/ppl", "val/bpb", "train/grad_norm"):
        assert scalars(version, tag), tag
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # safe loading works
    assert ckpt["model_config"]["moe"]["n_experts"] == 8 and ckpt["tokenizer"]["type"] == "byte_bpe"

    from text_lm.generate_cli import main as generate

    capsys.readouterr()
    generate(["--checkpoint", str(last), "--prompt", "The", "--max-new-tokens", "5", "--temperature", "0"])
    first = capsys.readouterr().out
    generate(["--checkpoint", str(last), "--prompt", "The", "--max-new-tokens", "5", "--temperature", "0"])
    assert first.startswith("The") and capsys.readouterr().out == first

    transformers = pytest.importorskip("transformers")
    from text_lm.checkpoint import model_from_checkpoint
    from text_lm.export_cli import main as export

    export(["--checkpoint", str(last), "--out", str(tmp_path / "hf")])
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours, _ = model_from_checkpoint(last)
    idx = torch.randint(0, 320, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx).logits, atol=1e-5, rtol=1e-4)


def test_resume_continues_exactly(shakespeare_bpe, tmp_path):
    every = ["--trainer.max_steps", "8", "--checkpoint.every_n_train_steps", "4", "--checkpoint.save_top_k", "-1",
             "--checkpoint.monitor", "null", "--checkpoint.filename", "{step}", "--trainer.limit_val_batches", "0"]  # fmt: skip
    fit("llama-tiny.yaml", shakespeare_bpe, tmp_path / "straight", *every)
    straight = scalars(tmp_path / "straight", "train/loss")
    mid = next((tmp_path / "straight").rglob("step=4.ckpt"))
    fit("llama-tiny.yaml", shakespeare_bpe, tmp_path / "resumed", *every, "--ckpt_path", str(mid))
    resumed = scalars(tmp_path / "resumed", "train/loss")
    assert set(resumed) == {4, 5, 6, 7} and all(resumed[s] == straight[s] for s in resumed)


def test_fine_tune_loads_weights_only_and_rejects_other_shapes(shakespeare_bpe, tmp_path, capsys):
    fit(
        "llama-tiny.yaml",
        shakespeare_bpe,
        tmp_path / "a",
        "--trainer.max_steps",
        "2",
        "--trainer.limit_val_batches",
        "0",
    )
    last = next((tmp_path / "a").rglob("last.ckpt"))
    fit("llama-tiny.yaml", shakespeare_bpe, tmp_path / "b", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
        "--model.init_from", str(last))  # fmt: skip
    with pytest.raises(SystemExit) as e:
        fit("llama-tiny.yaml", shakespeare_bpe, tmp_path / "c", "--trainer.max_steps", "2", "--model.init_from", str(last),
            "--model.config.dim", "64")  # fmt: skip
    assert e.value.code == 2
    assert "shape" in capsys.readouterr().err


def test_ddp_two_cpu_processes_see_different_batches(shakespeare_bpe, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}"}
    cmd = [sys.executable, "-m", "text_lm.cli", "fit", "-c", str(ROOT / "configs/text/llama-tiny.yaml"), *TINY,
           "--data.data_dir", str(shakespeare_bpe), "--trainer.default_root_dir", str(tmp_path),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
           "--trainer.callbacks+=batch_recorder.BatchRecorder", f"--trainer.callbacks.out_dir={tmp_path}"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["batches"] != ranks[1]["batches"]


# The fine-tuning configs (-lora, -sft) read instruction data: `text-lm finetune`, tests/text_lm/test_finetune.py.
FINETUNE = ("-lora.yaml", "-sft.yaml")
CONFIGS = sorted(
    str(p.relative_to(ROOT / "configs/text"))
    for p in (ROOT / "configs/text").rglob("*.yaml")
    if not p.name.endswith(FINETUNE)
)


@pytest.mark.parametrize("config", CONFIGS)
def test_every_text_config_parses(config, shakespeare_bpe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        text_lm(
            [
                "fit",
                "-c",
                str(ROOT / "configs/text" / config),
                "--data.data_dir",
                str(shakespeare_bpe),
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    assert "model:" in capsys.readouterr().out


@pytest.mark.parametrize("config", CONFIGS)
def test_every_text_config_instantiates_and_trains_a_step(config, shakespeare_bpe, tmp_path):
    """The YAML's own model (full size, the fixture's vocabulary: nanogpt-char's byte-level 261 is
    smaller than its 320) on CPU: one fast_dev_run step on a 16-token window."""
    vocab = str(json.loads((shakespeare_bpe / "meta.json").read_text())["vocab_size"])
    text_lm(["fit", "-c", str(ROOT / "configs/text" / config), "--data.data_dir", str(shakespeare_bpe),
             "--model.config.vocab_size", vocab,
             "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32",
             "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false", "--model.compile", "false",
             "--model.sample_tokens", "4", "--data.seq_len", "16", "--data.batch_size", "1",
             "--data.num_workers", "0", "--trainer.default_root_dir", str(tmp_path),
             "--trainer.callbacks+=batch_recorder.BatchRecorder", f"--trainer.callbacks.out_dir={tmp_path}",
             "--trainer.callbacks.n=1"])  # fmt: skip
    seen = json.loads((tmp_path / "rank0.json").read_text())
    assert seen["world_size"] == 1 and len(seen["batches"][0][0]) == 8
