"""`text-lm ladder`: the rung configs change one thing each; a two-rung ladder runs end to end."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from tiny import TINY_TEXT

from text_lm.cli import main as text_lm
from text_lm.config import LlamaConfig
from text_lm.model import Llama

ROOT = Path(__file__).resolve().parents[2]
LADDER = ROOT / "configs/text/ladder"
RUNGS = sorted(LADDER.glob("*.yaml"))
TINY = [*TINY_TEXT, "--model.sample_tokens", "4", "--trainer.limit_val_batches", "2", "--throughput.window", "1"]  # fmt: skip


def differences(a, b, path=""):
    """Dotted paths where two parsed YAML trees differ (a sub-tree present in one only is one place)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [path.lstrip(".")]


def load(path: Path) -> dict:
    cfg = yaml.safe_load(path.read_text())
    cfg["model"]["config"].pop("name")
    return cfg


def test_rungs_zero_to_five_each_change_one_thing():
    assert [p.stem for p in RUNGS] == [
        "0-gpt2",
        "1-rmsnorm",
        "2-rope",
        "3-swiglu",
        "4-gqa",
        "5-moe",
        "6-modern",
    ]
    changed = [differences(load(a), load(b)) for a, b in zip(RUNGS[:6], RUNGS[1:6])]
    assert changed == [
        ["model.config.norm"],
        ["model.config.position"],
        ["model.config.mlp"],
        ["model.config.n_kv_heads"],
        ["model.config.moe"],
    ]
    # The ends of the ladder are the shipped presets: GPT-2 exactly, Llama-MoE up to its biases.
    assert differences(load(RUNGS[0]), load(ROOT / "configs/text/gpt2-tiny.yaml")) == []
    top = differences(load(RUNGS[5]), load(ROOT / "configs/text/llama-moe-tiny.yaml"))
    assert top == ["model.aux_loss_coef", "model.config.bias"]  # 0.01 is also the module's default


def test_the_2025_rung_is_the_dense_llama_rung_with_the_recipe_only():
    """Rung 6 keeps rung 4's data, width, depth, heads, budget and precision; what it changes is the recipe."""
    changed = differences(load(RUNGS[4]), load(RUNGS[6]))
    assert changed == [
        "model.config.bias", "model.config.logit_softcap", "model.config.mlp", "model.config.qk_norm",
        "model.config.tie_embeddings", "model.config.zero_init_out", "model.decay_fraction", "model.min_lr_ratio",
        "model.optimizer.class_path", "model.optimizer.init_args.betas", "model.optimizer.init_args.groups",
        "model.optimizer.init_args.lr", "model.optimizer.init_args.muon_lr", "model.optimizer.init_args.weight_decay",
        "model.schedule", "model.warmup_steps",
    ]  # fmt: skip
    modern = load(RUNGS[6])
    assert modern["model"]["optimizer"]["class_path"] == "shared.train.muon.MuonAdamW"
    assert modern["model"]["optimizer"]["init_args"]["weight_decay"] == 0.0


def test_moe_rung_keeps_the_active_parameters():
    with torch.device("meta"):
        dense, moe = (Llama(LlamaConfig(**load(p)["model"]["config"])) for p in RUNGS[4:6])
    assert moe.num_params() > 2.5 * dense.num_params()
    assert moe.num_params(active=True) == pytest.approx(dense.num_params(active=True), rel=0.01)


@pytest.mark.slow
def test_two_rung_ladder_writes_table_plot_json_and_tensorboard(
    shakespeare_bpe, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: one thread each, steady on a busy machine
    out = tmp_path / "ladder"
    text_lm(["ladder", "--rungs", "0,5", "--budget-tokens", "2000", "--out", str(out), "--data-dir", str(shakespeare_bpe),
             *TINY])  # fmt: skip
    printed = capsys.readouterr().out
    assert "[ladder 1/2] 0-gpt2" in printed and "[ladder 2/2] 5-moe" in printed
    data = json.loads((out / "ladder.json").read_text())
    gpt2, moe = data["rungs"]
    for r in (gpt2, moe):
        assert r["steps"] == 16 and r["tokens"] == 2048  # ceil(2000 / (4 x 32)) steps
        assert math.isfinite(r["val_bpb"]) and r["tokens_per_sec"] > 0 and r["peak_memory_bytes"] > 0
        assert [p["step"] for p in r["curve"]] == [2, 4, 6, 8, 10, 12, 14, 16]  # 8 validations
        assert list(Path(r["run"]).glob("version_0/events.out.tfevents.*"))
    assert gpt2["kv_cache_bytes_per_token"] == 2 * 2 * 8 * 4 * 4  # K+V x layers x KV heads x head dim x fp32
    assert moe["kv_cache_bytes_per_token"] == gpt2["kv_cache_bytes_per_token"] // 2  # GQA: 4 of 8 heads
    assert moe["params_active"] < moe["params_total"]
    table = (out / "ladder.md").read_text()
    assert "| 0 GPT-2 baseline |" in table and "| 5 +MoE |" in table and "--budget-tokens 2000" in table
    assert (out / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "ladder-0-gpt2", "ladder-5-moe", "ladder.json", "ladder.md", "ladder.png"
    ]  # fmt: skip

    # A second seed of rung 0: its own run folder and row; the table's row becomes the mean, with the spread.
    text_lm(["ladder", "--rungs", "0", "--seeds", "7", "--budget-tokens", "2000", "--out", str(out),
             "--data-dir", str(shakespeare_bpe), *TINY])  # fmt: skip
    rungs = json.loads((out / "ladder.json").read_text())["rungs"]
    assert [(r["rung"], r["seed"]) for r in rungs] == [(0, 7), (0, 1337), (5, 1337)] and rungs[1] == gpt2
    assert (out / "ladder-0-gpt2-seed7" / "version_0").is_dir()
    mean = (rungs[0]["val_bpb"] + rungs[1]["val_bpb"]) / 2
    row = next(line for line in (out / "ladder.md").read_text().splitlines() if line.startswith("| 0 GPT-2"))
    assert f"| {mean:.4f} | 2 | {abs(rungs[0]['val_bpb'] - rungs[1]['val_bpb']):.4f} |" in row
    assert rungs[0]["val_bpb"] != rungs[1]["val_bpb"]  # another seed is another run

    # One more rung with the same setup joins the table in ladder order; the others keep their rows.
    text_lm(["ladder", "--rungs", "1", "--budget-tokens", "2000", "--out", str(out), "--data-dir", str(shakespeare_bpe),
             *TINY])  # fmt: skip
    rungs = json.loads((out / "ladder.json").read_text())["rungs"]
    assert [r["rung"] for r in rungs] == [0, 0, 1, 5] and rungs[1] == gpt2
    assert "command for rungs 0, 5: `text-lm ladder --rungs 0,5" in (out / "ladder.md").read_text()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "ladder-0-gpt2", "ladder-0-gpt2-seed7", "ladder-1-rmsnorm", "ladder-5-moe"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget-tokens", "0"], "--budget-tokens must be positive"),
        (["--budget-tokens", "5", "--budget-minutes", "1"], "not allowed with argument"),
        (["--rungs", "0,9"], "no rung [9]"),
        (["--seeds", "1,x"], "--seeds takes comma-separated integers"),
        (["--bogus"], "unrecognized argument --bogus"),
        (["--data-dir", "/nonexistent"], "text-lm prepare --out /nonexistent"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        text_lm(["ladder", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1


def test_bad_fit_override_is_one_line_before_any_training(shakespeare_bpe, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        text_lm(
            ["ladder", "--data-dir", str(shakespeare_bpe), "--out", str(tmp_path), "--model.config.dimm", "3"]
        )
    err = capsys.readouterr().err
    assert e.value.code == 2 and "0-gpt2.yaml" in err and "dimm" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_resolve_config_gives_what_fit_runs_with_and_touches_nothing(tmp_path):
    """The ladder's view of a rung: the YAML, the overrides and the CLI's own defaults, parsed without
    instantiating anything (no run folder) and without seeding the caller's random state."""
    from shared.errors import UserError
    from shared.train.cli import resolve_config
    from text_lm.data import TextDataModule
    from text_lm.module import LanguageModelModule

    rng = torch.get_rng_state()
    args = [
        "fit",
        "-c",
        str(RUNGS[1]),
        "--model.config.dim",
        "64",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    cfg = resolve_config(LanguageModelModule, TextDataModule, args, prog="text-lm")
    assert cfg["model"]["config"]["dim"] == 64 and cfg["model"]["config"]["norm"] == "rmsnorm"
    assert cfg["trainer"]["default_root_dir"] == str(tmp_path) and cfg["trainer"]["precision"] == "auto"
    assert cfg["checkpoint"]["monitor"] == "val/loss" and cfg["seed_everything"] == 1337  # run_cli's defaults
    assert not any(tmp_path.iterdir()) and torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(UserError, match="dimm"):
        resolve_config(
            LanguageModelModule, TextDataModule, [*args, "--model.config.dimm", "3"], prog="text-lm"
        )
