"""A user's own imagefolder of "real" images (issue 13 item 5): greyscale scans of mixed sizes with labels
in sentences, a broken file, RGBA, P, 16-bit and EXIF-rotated images; labels from metadata or folders;
zero-shot prompts from the captions; lazy reading; the shipped SigLIP config trains on it unchanged."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_lm.data import ImageTextDataModule
from vision_lm.records import Record, image_tensor, open_image, read_imagefolder_split
from vision_lm.templates import derive_templates, template_of

LABELS = ["hand", "foot", "skull", "knee"]
SENTENCES = ["scan of a {}", "{} x-ray"]


def scan(rng: random.Random, k: int, size: tuple[int, int]) -> Image.Image:
    """Greyscale noise over horizontal stripes whose period tells the class (k)."""
    w, h = size
    y = np.arange(h)[:, None] * np.ones((1, w))
    a = (
        128
        + 90 * np.sign(np.sin(y * np.pi / (2 + 2 * k)))
        + np.array([rng.gauss(0, 20) for _ in range(w * h)]).reshape(h, w)
    )
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))  # mode L


def write_real_folder(root: Path, per_label: int = 3) -> Path:
    rng = random.Random(0)
    for split in ("train", "val", "test"):
        d = root / split
        d.mkdir(parents=True)
        rows = []
        for i in range(per_label):
            for k, label in enumerate(LABELS):
                name = f"{label}_{i}.png"
                scan(rng, k, (20 + 9 * i + k, 14 + 5 * k)).save(d / name)
                rows.append({"file_name": name, "text": SENTENCES[(i + k) % 2].format(label), "label": label})
        if split == "train":
            rows += _odd_files(d)
        if split == "val":
            rows[0]["text"] = "scan of a hand " + "with a very long note about the patient and the ward " * 3
        (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _odd_files(d: Path) -> list[dict]:
    """What real folders hold: a truncated JPEG, RGBA, P with transparency, 16-bit, EXIF-rotated."""
    Image.new("RGB", (30, 20), (90, 90, 90)).save(d / "ok.jpg")
    (d / "broken.jpg").write_bytes((d / "ok.jpg").read_bytes()[:60])
    rgba = Image.new("RGBA", (18, 12), (0, 0, 0, 0))
    rgba.paste((40, 40, 40, 255), (0, 0, 9, 12))
    rgba.save(d / "rgba.png")
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    pal.paste(1, (0, 0, 8, 16))
    pal.save(d / "pal.png", transparency=0)
    deep = np.tile(np.linspace(0, 4000, 24, dtype=np.uint16), (10, 1))
    Image.fromarray(deep).save(d / "deep.png")  # mode I;16
    side = Image.new("L", (40, 20), 0)
    side.paste(255, (0, 0, 20, 20))  # stored sideways: the white half is on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    side.save(d / "rotated.jpg", exif=exif.tobytes(), quality=95)
    return [
        {"file_name": n, "text": SENTENCES[0].format(lab), "label": lab}
        for n, lab in [("broken.jpg", "hand"), ("rgba.png", "foot"), ("pal.png", "knee"),
                       ("deep.png", "skull"), ("rotated.jpg", "hand")]
    ]  # fmt: skip


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    return write_real_folder(tmp_path_factory.mktemp("real") / "scans")


def test_modes_exif_and_depth_become_upright_rgb(real):
    d = real / "train"
    up = open_image(Record(str(d / "rotated.jpg")))
    assert up.size == (20, 40)  # turned upright by its EXIF tag
    px = image_tensor(up, 16).float()
    assert px[:, :6].mean() > 200 and px[:, -6:].mean() < 50  # the white half is now on top
    assert (
        image_tensor(open_image(Record(str(d / "rgba.png"))), 12)[:, 6, -1].tolist() == [255] * 3
    )  # clear -> white
    pal = image_tensor(open_image(Record(str(d / "pal.png"))), 16)
    assert pal[:, 8, 2].tolist() == [200] * 3 and pal[:, 8, 13].tolist() == [255] * 3  # index 0 is clear
    deep = image_tensor(open_image(Record(str(d / "deep.png"))), 24)
    assert deep.min() == 0 and deep.max() == 255 and len(deep.unique()) > 20  # scaled, not clipped white


def test_datamodule_reads_it_with_templates_from_its_captions(real):
    dm = ImageTextDataModule(str(real), batch_size=4, image_size=16, max_len=16)
    dm.setup("fit")
    assert dm.zero_shot_classes == sorted(LABELS)
    assert dm.zero_shot_templates == ["scan of a {}", "{} x-ray"]  # not the bare "{}"
    with pytest.warns(UserWarning, match="skipped 1 unreadable") as caught:
        ds = dm.dataset("train")
    assert len(caught) == 1 and ds.pixels.shape == (16, 3, 16, 16)  # 12 scans + 5 odd files - 1 broken
    with pytest.warns(UserWarning, match=r"val: 1 of 12 texts .* evaluation scores the cut texts: raise"):
        dm.dataset("val")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 16, 16) and batch["input_ids"].shape == (4, 16)


def test_lazy_reading_decodes_per_item_and_stands_in_for_broken_files(real):
    dm = ImageTextDataModule(str(real), batch_size=4, image_size=16, max_len=16, cache_images=False)
    dm.setup("fit")
    ds = dm.dataset("train")
    assert ds.pixels is None and len(ds) == 17  # nothing decoded, nothing dropped up front
    broken = next(i for i, r in enumerate(ds.records) if r.image.endswith("broken.jpg"))
    with pytest.warns(UserWarning, match="broken.jpg: unreadable or corrupt image, replaced"):
        pixels, index, rec, _ = ds[broken]
    assert index == broken + 1 and torch.equal(pixels, ds[broken + 1][0])
    cached = ImageTextDataModule(str(real), image_size=16, max_len=16, cache_images=True)
    cached.setup("fit")
    with pytest.warns(UserWarning):
        reference = cached.dataset("train")
    assert torch.equal(ds[0][0], reference[0][0])  # the same pixels either way


def test_labels_from_class_folders_and_templates_rules(tmp_path):
    d = tmp_path / "train"
    for label in ("cat", "dog"):
        (d / label).mkdir(parents=True)
        Image.new("L", (8, 8), 50).save(d / label / "1.png")
    rows = [{"file_name": f"{lab}/1.png", "text": f"my {lab} at home"} for lab in ("cat", "dog")]
    (d / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.label for r in read_imagefolder_split(d, "contrastive").records] == ["cat", "dog"]
    assert template_of("A {Cat} sat", "cat") == "A {{{}}} sat" and template_of("catalogue", "cat") is None
    pairs = [("a cat", "cat"), ("a dog", "dog"), ("Rex the dog, asleep", "dog")]
    assert derive_templates(pairs) == ["a {}"]  # one that serves two labels beats one label's own
    assert (
        derive_templates([("Rex the dog", "dog")]) == ["Rex the {}"] and derive_templates([("x", "y")]) == []
    )


@pytest.mark.slow
def test_shipped_siglip_config_trains_and_scores_zero_shot_on_it(real, tmp_path):
    from tb_tags import logged_tags

    from vision_lm.cli import main as vision_lm

    config = Path(__file__).resolve().parents[2] / "configs" / "vision" / "siglip-shapes.yaml"
    vision_lm(["fit", "-c", str(config), "--data.data_dir", str(real), "--trainer.default_root_dir", str(tmp_path),
               "--trainer.max_steps", "1", "--trainer.val_check_interval", "1", "--data.batch_size", "8",
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])  # fmt: skip
    run = tmp_path / "siglip-tiny" / "version_0"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["zero_shot_templates"] == ["scan of a {}", "{} x-ray"]
    assert {"val/zero_shot_acc", "val/recall@1_i2t"} <= set(logged_tags(run))


def test_a_saved_datasets_table_is_read_lazily_too(real, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    d = datasets.load_dataset("imagefolder", data_dir=str(real), cache_dir=str(tmp_path / "cache"))
    d.save_to_disk(str(tmp_path / "saved"))
    dm = ImageTextDataModule(
        str(tmp_path / "saved"), batch_size=4, image_size=16, max_len=16, cache_images=False
    )
    dm.setup("fit")
    with pytest.warns(UserWarning, match="longer than max_len"):
        ds = dm.dataset("val")
    assert ds.pixels is None and isinstance(ds.records[0].image, int)  # row numbers, decoded when read
    files = ImageTextDataModule(str(real), image_size=16, max_len=16, cache_images=False)
    files.setup("fit")
    with pytest.warns(UserWarning):  # the long val caption
        same = files.dataset("val")
    assert torch.equal(ds[3][0], same[3][0]) and ds[3][2].text == same[3][2].text
