"""Bad inputs to every `vision-lm` command (but `caption`): one clear line, a non-zero exit, nothing written.

Same checks as test_bad_inputs.py (`fault_helpers.assert_fails_cleanly`), on a workspace with
a small shapes set, broken copies of it and hand-made checkpoints.
"""

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fault_helpers import ROOT, assert_fails_cleanly, snapshot

from shared.tokenizer import Tokenizer
from text_lm.config import LlamaConfig
from vision_lm.cli import main as vision_lm
from vision_lm.config import SigLIPConfig, TextTowerConfig, VisionConfig
from vision_lm.shapes import make_shapes
from vision_lm.siglip import SigLIP


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _junk_metadata(d: Path) -> None:
    for split in ("train", "val", "test"):  # not JSON, a 1 MB line, a line without file_name
        (d / split / "metadata.jsonl").write_text(
            '{"file_name": "000000.png", "te\n' + "x" * 2**20 + '\n{"a": 1}\n'
        )


def _corrupt_images(d: Path) -> None:
    for png in d.rglob("*.png"):
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(40))


@pytest.fixture(scope="module")
def vws(tmp_path_factory):
    root = tmp_path_factory.mktemp("vws")
    w = SimpleNamespace(root=root, runs=str(root / "runs"), out=str(root / "out"))
    shapes = make_shapes(root / "shapes", 12, 4, 4, seed=1, progress=False)
    w.shapes = str(shapes)
    changes = {
        "junkmeta": _junk_metadata,
        "corrupt": _corrupt_images,
        "badinfo": lambda d: (d / "dataset_info.json").write_text('{"name": "shapes", '),
    }
    for name, change in changes.items():
        shutil.copytree(shapes, root / name)
        change(root / name)
        setattr(w, name, str(root / name))
    (root / "afile").write_text("not a folder")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("mine")
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    tok = Tokenizer.train(["a small red circle", "a large blue square"], 300, progress=False)
    Tokenizer(tok.merges, ["<|bos|>", "<|eos|>"], tok.pattern).save(root / "nopad.json")

    cfg = SigLIPConfig(
        vision=VisionConfig(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=2),
        text=TextTowerConfig(vocab_size=300, max_len=8, dim=32, n_layers=1, n_heads=2),
    )
    state = {f"model.{k}": v for k, v in SigLIP(cfg).state_dict().items()}
    torch.save(
        {"state_dict": state, "model_config": cfg.to_dict(), "tokenizer": tok.to_dict()}, root / "siglip.ckpt"
    )
    (root / "truncated.ckpt").write_bytes((root / "siglip.ckpt").read_bytes()[:3000])
    torch.save({"state_dict": {}, "model_config": LlamaConfig().to_dict()}, root / "llama.ckpt")
    torch.save({"state_dict": state, "payload": Evil(root / "pwned")}, root / "evil.ckpt")
    return w


def fit(w, data: str, *extra: str) -> list[str]:
    small = ["--model.init_args.config.vision.n_layers", "1", "--model.init_args.config.text.n_layers", "1"]
    return ["fit", "-c", str(ROOT / "configs/vision/siglip-shapes.yaml"), "--data.data_dir", data,
            "--trainer.default_root_dir", w.runs, "--trainer.max_steps", "1", "--data.batch_size", "4",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *small, *extra]  # fmt: skip


def shot(w, ckpt: str, image: str | None = None, *extra: str) -> list[str]:
    image = image or f"{w.shapes}/test/000000.png"
    return ["zero-shot", "--checkpoint", ckpt, "--image", image, "--labels", "red circle,blue square", *extra]


MS = "make-shapes"
CASES = {  # id: (argv, culprit named in the error)
    "make-shapes/negative-count": (lambda w: [MS, "--out", w.out, "--n-train", "-5"], "--n-train"),
    "make-shapes/not-an-integer": (lambda w: [MS, "--out", w.out, "--n-val", "ten"], "--n-val"),
    "make-shapes/tiny-image": (lambda w: [MS, "--out", w.out, "--image-size", "4"], "--image-size"),
    "make-shapes/out-is-a-file": (lambda w: [MS, "--out", f"{w.root}/afile"], "afile"),
    "make-shapes/foreign-folder": (lambda w: [MS, "--out", f"{w.root}/foreign"], "foreign"),
    "make-shapes/malformed-dataset-info": (lambda w: [MS, "--out", w.badinfo], "dataset_info.json"),
    "fit/missing-data": (lambda w: fit(w, f"{w.root}/nodata"), "nodata"),
    "fit/malformed-metadata": (lambda w: fit(w, w.junkmeta), "junkmeta"),
    "fit/corrupt-images": (lambda w: fit(w, w.corrupt), "no readable images"),
    "fit/malformed-dataset-info": (lambda w: fit(w, w.badinfo), "dataset_info.json"),
    "fit/patch-not-dividing-image": (
        lambda w: fit(w, w.shapes, "--model.init_args.config.vision.patch_size", "7"), "patch_size=7"),
    "fit/text-heads-not-dividing-dim": (
        lambda w: fit(w, w.shapes, "--model.init_args.config.text.n_heads", "3"), "text.n_heads=3"),
    "fit/tokenizer-without-pad": (lambda w: fit(w, w.shapes, "--data.tokenizer", f"{w.root}/nopad.json"), "<|pad|>"),
    "fit/vocab-smaller-than-tokenizer": (
        lambda w: fit(w, w.shapes, "--model.init_args.config.text.vocab_size", "280"), "vocab_size"),
    "fit/negative-batch-size": (lambda w: fit(w, w.shapes, "--data.batch_size", "-4"), "data.batch_size"),
    "fit/truncated-ckpt-path": (lambda w: fit(w, w.shapes, "--ckpt_path", f"{w.root}/truncated.ckpt"), "truncated.ckpt"),
    "zero-shot/corrupt-image": (lambda w: shot(w, f"{w.root}/siglip.ckpt", f"{w.root}/junk.png"), "junk.png"),
    "zero-shot/missing-image": (lambda w: shot(w, f"{w.root}/siglip.ckpt", f"{w.root}/gone.png"), "gone.png"),
    "zero-shot/truncated-checkpoint": (lambda w: shot(w, f"{w.root}/truncated.ckpt"), "truncated.ckpt"),
    "zero-shot/text-checkpoint": (lambda w: shot(w, f"{w.root}/llama.ckpt"), "llama.ckpt"),
    "zero-shot/code-in-checkpoint": (lambda w: shot(w, f"{w.root}/evil.ckpt"), "evil.ckpt"),
    "zero-shot/template-without-braces": (
        lambda w: shot(w, f"{w.root}/siglip.ckpt", None, "--template", "a photo"), "--template"),
    "zero-shot/empty-labels": (
        lambda w: ["zero-shot", "--checkpoint", f"{w.root}/siglip.ckpt", "--image", f"{w.root}/junk.png",
                   "--labels", " , "], "--labels"),
    "export-hf/missing-checkpoint": (
        lambda w: ["export-hf", "--checkpoint", f"{w.root}/gone.ckpt", "--out", w.out], "gone.ckpt"),
    "export-hf/truncated-checkpoint": (
        lambda w: ["export-hf", "--checkpoint", f"{w.root}/truncated.ckpt", "--out", w.out], "truncated.ckpt"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_cleanly(case, vws, capsys):
    argv, culprit = CASES[case]
    assert_fails_cleanly(vision_lm, argv(vws), culprit, capsys, vws.root)
    assert not (vws.root / "pwned").exists()  # the malicious checkpoint ran nothing


def test_the_workspace_is_sound(vws, capsys):
    """The checkpoint and image the cases break are fine as they are."""
    before = snapshot(vws.root)
    vision_lm(shot(vws, str(vws.root / "siglip.ckpt")))
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert snapshot(vws.root) == before
    assert json.loads((vws.root / "shapes" / "dataset_info.json").read_text())["name"] == "shapes"
