"""The real `vision-lm` CLI for the captioner: fit from a SigLIP tower, test, caption, export-hf, mistakes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tb_tags import logged_tags

from vision_lm.cli import main as vision_lm
from vision_lm.config import SigLIPConfig, VisionConfig
from vision_lm.siglip import SigLIP

pytestmark = pytest.mark.slow  # real captioner fits and subprocesses

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "vision"
FAST = ["--data.batch_size", "16", "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
TOWER = dict(image_size=64, patch_size=8, dim=128, n_layers=4, n_heads=4)  # paligemma-shapes.yaml's


def fake_siglip(path: Path, **vision) -> SigLIP:
    """A SigLIP checkpoint as `vision-lm fit` writes it (state_dict under model., config as plain data)."""
    torch.manual_seed(5)
    model = SigLIP(SigLIPConfig(vision=VisionConfig(**{**TOWER, **vision})))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"config": model.config.to_dict()}}, path)
    return model


def siglip_with_tokenizer_of(captioner_ckpt: Path, path: Path) -> None:
    """`fake_siglip` carrying the captioner's tokenizer, as a fit stores it (a re-rank needs a SigLIP)."""
    fake_siglip(path)
    saved = torch.load(path, weights_only=True)
    saved["tokenizer"] = torch.load(captioner_ckpt, weights_only=True)["tokenizer"]
    torch.save(saved, path)


@pytest.fixture(scope="module")
def run(shapes, tmp_path_factory):
    """Three real training steps of the shipped CPU config, the tower taken from a SigLIP and frozen."""
    root = tmp_path_factory.mktemp("runs")
    siglip = fake_siglip(root / "siglip.ckpt")
    vision_lm(["fit", "-c", str(CONFIGS / "paligemma-shapes.yaml"), "--data.data_dir", str(shapes),
               "--trainer.default_root_dir", str(root), "--trainer.max_steps", "3",
               "--trainer.val_check_interval", "3", "--throughput.window", "1",
               "--model.init_args.vision_init_from", str(root / "siglip.ckpt"),
               "--model.init_args.vision_lr_multiplier", "0", "--model.init_args.max_new_tokens", "6", *FAST])  # fmt: skip
    return root / "paligemma-tiny" / "version_0", siglip


def test_fit_starts_from_siglip_and_writes_a_safe_checkpoint(run):
    folder, siglip = run
    ckpt = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (
        ckpt["global_step"] == 3
        and ckpt["model_type"] == "paligemma"
        and ckpt["tokenizer"]["type"] == "byte_bpe"
    )
    assert ckpt["model_config"]["decoder"]["n_kv_heads"] == 1 and (folder / "tokenizer.json").is_file()
    state = ckpt["state_dict"]
    for k, v in siglip.state_dict().items():  # frozen (multiplier 0) after initialisation from SigLIP
        if k.startswith("vision.") and not k.startswith("vision.head."):
            torch.testing.assert_close(state[f"model.{k}"], v, rtol=0, atol=0)
    assert state["model.projector.weight"].abs().sum() > 0  # zero-initialised, then trained
    for tag in ("train/loss", "train/grad_norm", "val/loss", "val/caption_exact", "val/bleu", "val/vqa_acc",
                "train/tokens_per_sec", "samples/captions"):  # fmt: skip
        assert tag in logged_tags(folder), tag


def test_test_subcommand_prints_generation_metrics(run, shapes, tmp_path, capsys):
    cut = "max_new_tokens=. can cut generated captions"  # evaluation must never cut what it scores
    with pytest.warns(Warning, match=cut):
        vision_lm(["test", "-c", str(CONFIGS / "paligemma-shapes.yaml"), "--data.data_dir", str(shapes),
                   "--trainer.default_root_dir", str(tmp_path), "--model.init_args.max_new_tokens", "4",
                   "--ckpt_path", str(run[0] / "checkpoints" / "last.ckpt"), *FAST])  # fmt: skip
    out = capsys.readouterr().out
    assert "test/caption_exact" in out and "test/bleu" in out and "test/vqa_acc" in out


def test_caption_prints_one_line_per_image(run, shapes, capsys):
    ckpt = str(run[0] / "checkpoints" / "last.ckpt")
    images = [str(shapes / "test" / f"00000{i}.png") for i in range(3)]
    capsys.readouterr()
    vision_lm(["caption", "--checkpoint", ckpt, "--image", *images, "--max-new-tokens", "5"])
    assert len(capsys.readouterr().out.splitlines()) == 3
    vision_lm(["caption", "--checkpoint", ckpt, "--image", images[0], "--question", "how many shapes are there?",
               "--temperature", "0.8", "--top-k", "5", "--seed", "1", "--max-new-tokens", "3"])  # fmt: skip
    assert len(capsys.readouterr().out.splitlines()) == 1
    vision_lm(
        ["caption", "--checkpoint", ckpt, "--image", *images[:2], "--contrast", "1", "--max-new-tokens", "5"]
    )
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_export_hf_gives_the_same_logits(run, shapes, tmp_path):
    transformers = pytest.importorskip("transformers")
    from vision_lm.checkpoint import captioner_from_checkpoint
    from vision_lm.records import load_image_file
    from vision_lm.text_batch import TextEncoder

    ckpt = run[0] / "checkpoints" / "last.ckpt"
    vision_lm(["export-hf", "--checkpoint", str(ckpt), "--out", str(tmp_path)])
    hf = transformers.PaliGemmaForConditionalGeneration.from_pretrained(tmp_path).eval()
    loaded = captioner_from_checkpoint(ckpt)
    tok, image_id = loaded.tokenizer, hf.config.image_token_index
    assert image_id == tok.token_id("<image>") and (tmp_path / "bpe_tokenizer.json").is_file()
    ids, n, mask = TextEncoder(tok, 24).prefix_suffix("caption en", "a small red circle")
    ids = torch.tensor([ids])
    pixels = load_image_file(shapes / "test" / "000000.png", 64)
    types = torch.tensor([[0] * (64 + n) + [1] * (24 - n)])
    with torch.no_grad():
        ours = loaded.model(pixels, ids, torch.tensor([n]))
        theirs = hf(input_ids=torch.cat([torch.full((1, 64), image_id), ids], 1), pixel_values=pixels,
                    token_type_ids=types).logits[:, 64:]  # fmt: skip
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_user_mistakes_exit_2_with_one_line(run, shapes, tmp_path, capsys):
    ckpt = str(run[0] / "checkpoints" / "last.ckpt")
    fake_siglip(tmp_path / "other.ckpt", dim=64)
    image = str(shapes / "test" / "000000.png")
    cases = [
        (["caption", "--checkpoint", str(tmp_path / "other.ckpt"), "--image", image], "SigLIP"),
        (["caption", "--checkpoint", ckpt, "--image", str(tmp_path / "no.png")], "no.png"),
        (
            [
                "caption",
                "--checkpoint",
                ckpt,
                "--image",
                image,
                image,
                "--prompt",
                "a",
                "--prompt",
                "b",
                "--prompt",
                "c",
            ],
            "3 prompts",
        ),  # fmt: skip
        (["caption", "--checkpoint", ckpt, "--image", image, "--temperature", "-1"], "--temperature"),
        (["caption", "--checkpoint", ckpt, "--image", image, "--contrast", "-1"], "--contrast"),
        (
            ["caption", "--checkpoint", ckpt, "--image", image, "--contrast", "1", "--plausibility", "0"],
            "--plausibility",
        ),
        (
            [
                "fit",
                "-c",
                str(CONFIGS / "paligemma-shapes.yaml"),
                "--data.data_dir",
                str(shapes),
                "--trainer.default_root_dir",
                str(tmp_path),
                "--model.init_args.vision_init_from",
                str(tmp_path / "other.ckpt"),
                *FAST,
            ],
            "vision.dim",
        ),  # fmt: skip
    ]
    for argv, culprit in cases:
        with pytest.raises(SystemExit) as e:
            vision_lm(argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code == 2 and err.startswith("error: ") and culprit in err


# LoRA configs need a base captioner (init_from): tests/vision_lm/test_captioner_lora.py runs theirs.
@pytest.mark.parametrize(
    "config", sorted(p.name for p in CONFIGS.glob("paligemma-*.yaml") if "lora" not in p.name)
)
def test_every_captioner_config_parses_and_runs_a_step(config, shapes, tmp_path, capsys):
    base = ["-c", str(CONFIGS / config), "--data.data_dir", str(shapes)]
    with pytest.raises(SystemExit) as e:
        vision_lm(["fit", *base, "--print_config"])
    assert not e.value.code
    assert "class_path: vision_lm.captioner_module.CaptionerModule" in capsys.readouterr().out
    cpu = ["--trainer.accelerator", "cpu", "--trainer.precision", "32", "--model.init_args.compile", "false",
           "--data.num_workers", "0", "--data.batch_size", "4", "--trainer.fast_dev_run", "1",
           "--model.init_args.vision_init_from", "null", "--model.init_args.max_new_tokens", "2",
           "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    vision_lm(["fit", *base, *cpu])


def test_caption_help_does_not_import_lightning():
    code = (
        "import sys\nfrom vision_lm.cli import main\n"
        "try:\n    main(['caption', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('lightning', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("[]") and "--prompt" in out and "--question" in out


def test_caption_rerank_prints_the_candidate_siglip_scores_highest(run, shapes, tmp_path, capsys):
    from vision_lm.caption_generate import caption_images
    from vision_lm.caption_rerank import n_best, siglip_rerank, substitution_search
    from vision_lm.checkpoint import captioner_from_checkpoint, siglip_from_checkpoint
    from vision_lm.records import load_image_file
    from vision_lm.text_batch import TextEncoder

    ckpt = run[0] / "checkpoints" / "last.ckpt"
    siglip_with_tokenizer_of(ckpt, tmp_path / "siglip.ckpt")
    image = str(shapes / "test" / "000001.png")
    capsys.readouterr()
    vision_lm(["caption", "--checkpoint", str(ckpt), "--image", image, "--rerank", str(tmp_path / "siglip.ckpt"),
               "--n-best", "4", "--seed", "3", "--max-new-tokens", "6"])  # fmt: skip
    printed = capsys.readouterr().out.strip()
    cap, sig = captioner_from_checkpoint(ckpt), siglip_from_checkpoint(tmp_path / "siglip.ckpt")
    pixels = load_image_file(image, 64)
    candidates = n_best(cap.model, cap.tokenizer, pixels, ["caption en"], 4, 1.0,
                        torch.Generator().manual_seed(3), max_new_tokens=6)[0]  # fmt: skip
    assert printed in candidates and len(set(candidates)) == len(candidates) >= 1
    ids = TextEncoder(sig.tokenizer, 16).captions(candidates)
    with torch.no_grad():  # the reference: SigLIP's own forward over every candidate
        logits = sig.model(pixels.expand(len(candidates), -1, -1, -1), ids).logits_per_image[0]
    assert printed == candidates[int(logits.argmax())]
    assert siglip_rerank(sig.model, sig.tokenizer, pixels, [candidates]) == [printed]
    # the default candidates: the greedy caption's substitutions
    vision_lm(["caption", "--checkpoint", str(ckpt), "--image", image, "--rerank", str(tmp_path / "siglip.ckpt"),
               "--max-new-tokens", "6"])  # fmt: skip
    printed = capsys.readouterr().out.strip()
    with torch.no_grad():
        greedy = caption_images(cap.model, cap.tokenizer, pixels, ["caption en"], 6)
        want = substitution_search(cap.model, cap.tokenizer, sig.model, sig.tokenizer, pixels, pixels, greedy)
    assert [printed] == want
    for argv, culprit in (
        (["--n-best", "3"], "--n-best"),
        (["--candidates", "samples"], "--candidates"),
        (
            ["--rerank", str(tmp_path / "siglip.ckpt"), "--candidates", "substitutions", "--n-best", "3"],
            "--n-best",
        ),
        (["--rerank", str(tmp_path / "siglip.ckpt"), "--temperature", "0.7"], "--temperature"),
        (["--rerank", str(tmp_path / "siglip.ckpt"), "--question", "how many shapes are there?"], "--rerank"),
    ):
        with pytest.raises(SystemExit) as e:
            vision_lm(["caption", "--checkpoint", str(ckpt), "--image", image, *argv])
        assert e.value.code == 2 and culprit in capsys.readouterr().err.strip().splitlines()[-1]


def test_report_scores_every_column_and_splits_exact_match_by_object_count(run, shapes, tmp_path, capsys):
    from vision_lm.demo_vision_report import main as report

    ckpt = run[0] / "checkpoints" / "last.ckpt"
    siglip_with_tokenizer_of(ckpt, tmp_path / "siglip.ckpt")
    capsys.readouterr()
    report(["--data", str(shapes), "--captioner", str(ckpt), "--siglip", str(tmp_path / "siglip.ckpt"),
            "--rerank", "substitutions", "--no-probes", "--examples", "1", "--contrast", "1"])  # fmt: skip
    assert torch.is_grad_enabled()  # the report leaves its caller's autograd on
    rows = {}  # "  name  v v v": the table's rows, "-" where a column has nothing to score
    out = capsys.readouterr().out
    assert "decoded contrastively (--contrast 1" in out
    for line in out.splitlines():
        *name, a, b, c = ["", "", ""] + line.split()
        if "".join(name) and all(v == "-" or v.replace(".", "", 1).isdigit() for v in (a, b, c)):
            rows[" ".join(name).strip()] = [None if v == "-" else float(v) for v in (a, b, c)]
    whole, one, several = (rows[f"captioner {k}"] for k in
                           ("caption exact-match", "exact-match, one-object images", "exact-match, several objects"))  # fmt: skip
    test = 2  # the test column: both kinds of scene in the fixture's 16 images
    assert one[test] is not None and several[test] is not None
    assert min(one[test], several[test]) <= whole[test] <= max(one[test], several[test])
    assert "captioner exact-match, several objects, SigLIP re-rank of substitutions" in rows
