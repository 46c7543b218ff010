"""The real `vision-lm` CLI end to end: fit, test, zero-shot, export-hf, every shipped YAML, mistakes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tb_tags import logged_tags

from vision_lm.cli import main as vision_lm

pytestmark = pytest.mark.slow  # real SigLIP fits and subprocesses

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "vision"
FAST = ["--data.batch_size", "16", "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def run(shapes, tmp_path_factory):
    """Three real training steps of the shipped CPU config, with one validation."""
    root = tmp_path_factory.mktemp("runs")
    vision_lm(["fit", "-c", str(CONFIGS / "siglip-shapes.yaml"), "--data.data_dir", str(shapes),
               "--trainer.default_root_dir", str(root), "--trainer.max_steps", "3",
               "--trainer.val_check_interval", "3", "--throughput.window", "1", *FAST])  # fmt: skip
    return root / "siglip-tiny" / "version_0"


def test_fit_writes_a_self_contained_safe_checkpoint(run):
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and (run / "tokenizer.json").is_file() and (run / "config.yaml").is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain data only
    assert ckpt["global_step"] == 3 and ckpt["tokenizer"]["type"] == "byte_bpe"
    assert ckpt["hyper_parameters"]["config"]["vision"]["patch_size"] == 8
    assert ckpt["zero_shot_templates"] == ["a small {}", "a large {}"]
    tags = logged_tags(run)
    for tag in ("train/loss", "train/temperature", "train/bias", "val/loss", "val/zero_shot_acc",
                "val/recall@1_i2t", "val/recall@1_t2i", "val/recall@5_i2t", "val/recall@5_t2i",
                "train/images_per_sec", "val/similarity"):  # fmt: skip
        assert tag in tags, tag


def test_test_subcommand_prints_held_out_metrics(run, shapes, tmp_path, capsys):
    vision_lm(["test", "-c", str(CONFIGS / "siglip-shapes.yaml"), "--data.data_dir", str(shapes),
               "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
               *FAST])  # fmt: skip
    out = capsys.readouterr().out
    assert "test/zero_shot_acc" in out and "test/recall@1_i2t" in out


def test_zero_shot_prints_labels_best_first(run, shapes, capsys):
    image = shapes / "test" / "000000.png"
    labels = "green triangle,red square,blue circle,yellow diamond"
    capsys.readouterr()
    vision_lm(["zero-shot", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--image", str(image),
               "--labels", labels])  # fmt: skip
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert sorted(name for name, _ in lines) == sorted(labels.split(","))
    probs = [float(p) for _, p in lines]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-3)


def test_export_hf_matches_transformers(run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from vision_lm.checkpoint import siglip_from_checkpoint
    from vision_lm.records import load_image_file

    vision_lm(["export-hf", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path)])
    assert (tmp_path / "bpe_tokenizer.json").is_file()
    hf = transformers.SiglipModel.from_pretrained(tmp_path).eval()
    loaded = siglip_from_checkpoint(run / "checkpoints" / "last.ckpt")
    pixels = torch.cat([load_image_file(p, 64) for p in sorted((run.parents[2]).rglob("000001.png"))[:1]] * 2)
    from vision_lm.text_batch import TextEncoder

    ids = TextEncoder(loaded.tokenizer, 16).captions(["a small red circle", "a large blue square"])
    with torch.no_grad():
        a, b = loaded.model(pixels, ids), hf(input_ids=ids, pixel_values=pixels)
    torch.testing.assert_close(a.logits_per_image, b.logits_per_image, atol=1e-5, rtol=1e-4)


def test_user_mistakes_exit_2_with_one_line(run, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:1000])  # truncated
    cases = [
        ["zero-shot", "--checkpoint", str(bad), "--image", "x.png", "--labels", "a"],
        ["zero-shot", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--image", str(tmp_path / "no.png"),
         "--labels", "a,b"],
        ["zero-shot", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--image", str(bad), "--labels", " , "],
        ["export-hf", "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")],
    ]  # fmt: skip
    for argv, culprit in zip(cases, ["bad.ckpt", "no.png", "--labels", "missing.ckpt"]):
        with pytest.raises(SystemExit) as e:
            vision_lm(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and culprit in err and "\n" not in err


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("siglip-*.yaml")))
def test_every_vision_config_parses_and_runs_a_step(config, shapes, tmp_path, capsys):
    base = ["-c", str(CONFIGS / config), "--data.data_dir", str(shapes)]
    with pytest.raises(SystemExit) as e:
        vision_lm(["fit", *base, "--print_config"])
    assert not e.value.code
    assert "class_path: vision_lm.siglip_module.SigLIPModule" in capsys.readouterr().out
    cpu = ["--trainer.accelerator", "cpu", "--trainer.precision", "32", "--model.init_args.compile", "false",
           "--data.num_workers", "0", "--data.batch_size", "4", "--trainer.fast_dev_run", "1",
           "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    vision_lm(["fit", *base, *cpu])


def test_light_commands_do_not_import_lightning():
    code = (
        "import sys\nfrom vision_lm.cli import main\n"
        "for cmd in (['zero-shot', '--help'], ['export-hf', '--help'], ['make-shapes', '--help']):\n"
        "    try:\n        main(cmd)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("[]")
    assert "--labels" in out and "--template" in out and "--independent" in out


def test_validation_scores_seen_and_held_out_pairs_apart(run, shapes):
    import json

    rows = [json.loads(line) for line in (shapes / "val" / "metadata.jsonl").read_text().splitlines()]
    singles = {bool(r.get("held_out")) for r in rows if len(r["scene"]) == 1}
    tags = logged_tags(run)
    for tag in ("val/zero_shot_acc_seen", "val/zero_shot_acc_held_out"):
        assert (tag in tags) == (singles == {True, False}), tag  # logged exactly when val mixes both kinds
    assert singles == {True, False}  # the session set does mix them (version-2 shapes: odd val scenes)
