"""LoRA on the captioner through the real `vision-lm` CLI: a whole-captioner `init_from`, adapters only
trained and saved (naming the base by hash), resume, rebuild from the checkpoint (caption, test),
export-hf merged with the unmerged logits, and a bad base refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fault_helpers import assert_fails_cleanly

from shared.errors import UserError
from shared.nn.lora import LoRALinear
from shared.tokenizer import Tokenizer
from shared.train.finetune import state_sha256, trainable_counts
from vision_lm.captioner_module import CaptionerModule
from vision_lm.checkpoint import captioner_from_checkpoint
from vision_lm.cli import main as vision_lm
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig

pytestmark = pytest.mark.slow  # real (2-step) fits and subprocesses

ROOT = Path(__file__).resolve().parents[2]
LORA_YAML = str(ROOT / "configs" / "vision" / "paligemma-shapes-lora.yaml")
VISION = dict(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
DECODER = dict(vocab_size=320, max_len=24, dim=32, n_layers=2, n_heads=4, n_kv_heads=1, hidden_dim=64)
TINY = [  # the tiny captioner above, and a fast run
    *(a for k, v in VISION.items() for a in (f"--model.init_args.config.vision.{k}", str(v))),
    *(a for k, v in DECODER.items() for a in (f"--model.init_args.config.decoder.{k}", str(v))),
    "--data.train_stream", "false", "--data.batch_size", "8", "--trainer.precision", "32",
    "--trainer.limit_val_batches", "1", "--trainer.log_every_n_steps", "1", "--model.init_args.max_new_tokens", "4",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]  # fmt: skip


def tiny_config(**decoder) -> PaliGemmaConfig:
    return PaliGemmaConfig(vision=VISION, decoder={**DECODER, **decoder}, zero_init_projector=False)


def save_base(path: Path, model: PaliGemma, tok: Tokenizer) -> None:
    """A captioner checkpoint as `vision-lm fit` writes it (model type, config, tokenizer as plain data)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "model_type": "paligemma", "model_config": model.config.to_dict(),
                "tokenizer": tok.to_dict()}, path)  # fmt: skip


def base_state(path: Path) -> dict[str, torch.Tensor]:
    return {k[6:]: v for k, v in torch.load(path, weights_only=True)["state_dict"].items()}


@pytest.fixture(scope="module")
def lora_run(shapes, tmp_path_factory):
    """A random tiny base captioner (its own tokenizer), then 2 LoRA steps of the shipped config on it."""
    root = tmp_path_factory.mktemp("lora")
    texts = [
        "caption en",
        "answer en",
        "a small red circle",
        "a large blue square",
        "what color is the triangle",
    ]
    tok = Tokenizer.train(texts, 300, progress=False)
    torch.manual_seed(0)
    model = PaliGemma(tiny_config())
    with torch.no_grad():  # norms away from 1, larger weights: logits that differ between inputs
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_base(root / "base.ckpt", model, tok)
    fit(root, shapes, 2)
    return root, tok


def fit(root: Path, shapes: Path, steps: int, *extra: str) -> None:
    vision_lm(["fit", "-c", LORA_YAML, *TINY, "--data.data_dir", str(shapes), "--trainer.default_root_dir",
               str(root), "--model.init_args.init_from", str(root / "base.ckpt"), "--trainer.max_steps",
               str(steps), "--trainer.val_check_interval", "2", *extra])  # fmt: skip


def last(root: Path) -> Path:
    return root / "paligemma-tiny-lora" / "version_0" / "checkpoints" / "last.ckpt"


def test_checkpoint_holds_only_decoder_adapters_and_names_its_base(lora_run):
    root, tok = lora_run
    ckpt = torch.load(last(root), map_location="cpu", weights_only=True)
    keys = list(ckpt["state_dict"])
    assert keys and all(k.endswith(("lora_A", "lora_B")) and k.startswith("model.decoder.") for k in keys)
    assert len(keys) == 2 * 2 * DECODER["n_layers"]  # A and B of qkv_proj and o_proj per decoder layer
    base = PaliGemma(tiny_config())
    base.load_state_dict(base_state(root / "base.ckpt"))
    ft = ckpt["finetune"]
    assert ft["base"] == str(root / "base.ckpt") and ft["lora"]["rank"] == 8
    assert ft["base_sha256"] == state_sha256(base.state_dict())
    assert ckpt["tokenizer"] == tok.to_dict()  # the base's tokenizer replaced the one the data trained
    assert any(v.abs().sum() > 0 for k, v in ckpt["state_dict"].items() if k.endswith("lora_B"))  # B trained
    # small: adapters + their optimizer state, not the model (the base file holds the model alone)
    assert last(root).stat().st_size < 0.5 * (root / "base.ckpt").stat().st_size


def test_only_adapters_train(tmp_path):
    """The system itself: after configure_model, every parameter that trains is an adapter."""
    base_path = tmp_path / "base.ckpt"
    torch.manual_seed(1)
    save_base(base_path, PaliGemma(tiny_config()), Tokenizer.train(["caption en"], 270, progress=False))
    lora = {"rank": 4, "targets": ["decoder.*.qkv_proj", "vision.*.qkv_proj"]}
    system = CaptionerModule(tiny_config(), init_from=str(base_path), lora=lora)
    system.configure_model()
    trainable = [n for n, p in system.model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert any(n.startswith("vision.") for n in trainable) and any(
        n.startswith("decoder.") for n in trainable
    )
    n_train, n_all = trainable_counts(system.model)
    assert n_train / n_all < 0.05
    for n, p in base_state(base_path).items():  # the base is where training starts
        torch.testing.assert_close(system.model.state_dict()[n], p, rtol=0, atol=0)


def test_resume_continues_the_adapters(lora_run, shapes):
    root, _ = lora_run
    before = torch.load(last(root), weights_only=True)
    fit(root, shapes, 4, "--ckpt_path", "last")
    after = torch.load(last(root), weights_only=True)
    assert after["global_step"] == 4 and set(after["state_dict"]) == set(before["state_dict"])
    assert after["finetune"]["base_sha256"] == before["finetune"]["base_sha256"]
    assert any(not torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())
    assert not (root / "paligemma-tiny-lora" / "version_1").exists()


def test_rebuilt_from_checkpoint_caption_and_test(lora_run, shapes, tmp_path, capsys):
    root, _ = lora_run
    loaded = captioner_from_checkpoint(last(root))
    wrapped = [n for n, m in loaded.model.named_modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == 2 * DECODER["n_layers"] and all(n.startswith("decoder.") for n in wrapped)
    frozen = {k: v for k, v in loaded.model.state_dict().items() if "lora_" not in k}
    assert state_sha256(frozen) == state_sha256(base_state(root / "base.ckpt"))  # the base did not move
    images = [str(shapes / "test" / f"00000{i}.png") for i in range(2)]
    capsys.readouterr()
    vision_lm(["caption", "--checkpoint", str(last(root)), "--image", *images, "--max-new-tokens", "3"])
    assert len(capsys.readouterr().out.splitlines()) == 2
    vision_lm(["test", "-c", LORA_YAML, *TINY, "--data.data_dir", str(shapes), "--trainer.default_root_dir",
               str(tmp_path), "--model.init_args.init_from", str(root / "base.ckpt"),
               "--ckpt_path", str(last(root))])  # fmt: skip
    assert "test/caption_exact" in capsys.readouterr().out


def test_export_merges_with_the_unmerged_logits(lora_run):
    from vision_lm.hf_paligemma import load_hf

    root, _ = lora_run
    vision_lm(["export-hf", "--checkpoint", str(last(root)), "--out", str(root / "hf")])
    unmerged = captioner_from_checkpoint(last(root)).model
    merged = load_hf(root / "hf").eval()
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    torch.manual_seed(2)
    pixels, ids, prefix_len = torch.randn(2, 3, 32, 32), torch.randint(3, 300, (2, 10)), torch.tensor([4, 6])
    with torch.no_grad():
        want = unmerged(pixels, ids, prefix_len)
        torch.testing.assert_close(merged(pixels, ids, prefix_len), want, atol=1e-5, rtol=1e-5)
        base = PaliGemma(tiny_config())
        base.load_state_dict(base_state(root / "base.ckpt"))
        assert (base.eval()(pixels, ids, prefix_len) - want).abs().max() > 1e-6  # the adapters matter
    transformers = pytest.importorskip("transformers")
    hf = transformers.PaliGemmaForConditionalGeneration.from_pretrained(root / "hf").eval()
    n, image_id = unmerged.config.n_image_tokens, hf.config.image_token_index
    suffix = (torch.arange(10)[None] >= prefix_len[:, None]).long()
    inputs = {"input_ids": torch.cat([torch.full((2, n), image_id), ids], 1),
              "token_type_ids": torch.cat([torch.zeros(2, n, dtype=torch.long), suffix], 1),
              "attention_mask": torch.ones(2, n + 10, dtype=torch.long)}  # fmt: skip
    with torch.no_grad():
        got = hf(pixel_values=pixels, **inputs).logits[:, n:]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # the converter's parity (RoPE offset)


def test_a_changed_base_is_refused_in_one_line(lora_run, tmp_path, capsys):
    root, tok = lora_run
    moved = torch.load(root / "base.ckpt", weights_only=True)
    next(iter(moved["state_dict"].values())).add_(1.0)
    torch.save(moved, tmp_path / "other.ckpt")
    ckpt = torch.load(last(root), weights_only=True)
    ckpt["finetune"]["base"] = str(tmp_path / "other.ckpt")
    torch.save(ckpt, tmp_path / "lora.ckpt")
    with pytest.raises(UserError, match="the base changed since"):
        captioner_from_checkpoint(tmp_path / "lora.ckpt")
    argv = ["export-hf", "--checkpoint", str(tmp_path / "lora.ckpt"), "--out", str(tmp_path / "hf")]
    assert_fails_cleanly(vision_lm, argv, "the base changed since", capsys, tmp_path)


def test_missing_or_incompatible_base_is_one_line(lora_run, shapes, tmp_path, capsys):
    root, tok = lora_run
    save_base(tmp_path / "wide.ckpt", PaliGemma(tiny_config(dim=48)), tok)
    system = CaptionerModule(tiny_config(), init_from=str(tmp_path / "wide.ckpt"), lora={"rank": 2})
    with pytest.raises(UserError, match=r"its decoder.dim is 48, model.config.decoder.dim is 32"):
        system.configure_model()
    with pytest.raises(UserError, match="checkpoint not found"):
        CaptionerModule(tiny_config(), init_from=str(tmp_path / "nope.ckpt")).configure_model()
    with pytest.raises(UserError, match="set model.init_args.init_from"):
        CaptionerModule(tiny_config(), lora={"rank": 2})
    with pytest.raises(UserError, match="not both"):
        CaptionerModule(tiny_config(), init_from="a.ckpt", vision_init_from="b.ckpt")
    argv = ["fit", "-c", LORA_YAML, *TINY, "--data.data_dir", str(shapes), "--trainer.default_root_dir",
            str(tmp_path), "--model.init_args.init_from", str(tmp_path / "nope.ckpt")]  # fmt: skip
    assert_fails_cleanly(vision_lm, argv, "nope.ckpt: checkpoint not found", capsys, tmp_path)


def test_lora_config_parses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        vision_lm(["fit", "-c", LORA_YAML, "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "rank: 8" in out and "decoder.*.qkv_proj" in out
