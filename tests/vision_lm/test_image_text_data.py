"""ImageTextDataModule: bad inputs skipped or refused clearly, image conversion, batch layouts, datasets."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from shared.errors import UserError
from vision_lm.data import ImageTextDataModule

CAPTIONS = ["a red square", "a grey disc", "a see-through square"]


def write_folder(root: Path) -> Path:
    """train/: an RGB, a grayscale and an RGBA image, a corrupt PNG, a non-image, plus bad metadata lines."""
    split = root / "train"
    split.mkdir(parents=True)
    Image.new("RGB", (20, 10), (200, 0, 0)).save(split / "rgb.png")
    Image.new("L", (8, 8), 90).save(split / "gray.png")
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(split / "rgba.png")  # fully transparent
    good = (split / "rgb.png").read_bytes()
    (split / "corrupt.png").write_bytes(good[: len(good) // 2])  # truncated
    (split / "notes.png").write_text("not an image")
    lines = [
        {"file_name": "rgb.png", "text": CAPTIONS[0], "label": "red square"},
        {"file_name": "gray.png", "text": CAPTIONS[1]},
        {"file_name": "rgba.png", "text": CAPTIONS[2]},
        {"file_name": "corrupt.png", "text": "broken"},
        {"file_name": "notes.png", "text": "text file"},
        {"file_name": "missing.png", "text": "gone"},
        {"file_name": "rgb.png", "text": "   "},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json\n"
    (split / "metadata.jsonl").write_text(text)
    return root


def test_bad_lines_and_images_are_skipped_with_counts(tmp_path):
    dm = ImageTextDataModule(str(write_folder(tmp_path)), batch_size=2, image_size=16, max_len=8)
    with pytest.warns(UserWarning, match="skipped 3 lines") as record:
        dm.setup("fit")
    msg = str(record[0].message)
    assert "1 empty caption" in msg and "1 missing image file" in msg and "1 malformed metadata line" in msg
    with pytest.warns(UserWarning, match="skipped 2 unreadable or corrupt images"):
        ds = dm.dataset("train")
    assert [r.text for r in ds.records] == CAPTIONS
    assert ds.pixels.shape == (3, 3, 16, 16) and ds.pixels.dtype == torch.uint8
    assert ds.pixels[1].unique().tolist() == [90]  # grey replicated into R, G, B
    assert ds.pixels[2].unique().tolist() == [255]  # transparent -> white background
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (2, 3, 16, 16) and batch["input_ids"].shape == (2, 8)
    assert -1.0 <= batch["pixel_values"].min() and batch["pixel_values"].max() <= 1.0


def test_folder_without_metadata_is_an_error_naming_it(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a.png")
    with pytest.raises(UserError, match=r"train: no metadata\.jsonl"):
        ImageTextDataModule(str(tmp_path)).setup("fit")
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="other: no metadata found"):
        ImageTextDataModule(str(tmp_path / "other")).setup("fit")
    with pytest.raises(UserError, match="make-shapes"):
        ImageTextDataModule(str(tmp_path / "nowhere")).setup("fit")


def test_batch_bigger_than_the_data_and_missing_split_are_errors(tmp_path):
    dm = ImageTextDataModule(str(write_folder(tmp_path)), batch_size=8, image_size=16, max_len=8)
    with pytest.warns(UserWarning):
        dm.setup("fit")
        with pytest.raises(UserError, match="fewer than data.batch_size"):
            dm.train_dataloader()
    with pytest.raises(UserError, match="no test split"):
        dm.test_dataloader()
    with pytest.raises(UserError, match="image_size=32 differs"):
        ImageTextDataModule(str(tmp_path), image_size=32).bind(16, 8)


@pytest.mark.parametrize("mode", ["captioning", "vqa"])
def test_prefix_suffix_layouts(shapes, mode):
    dm = ImageTextDataModule(str(shapes), batch_size=4, image_size=32, max_len=24, mode=mode)
    dm.setup("fit")
    tok = dm.tokenizer
    batch = next(iter(dm.val_dataloader()))
    rec = dm.records("val")[int(batch["index"][0])]
    ids, n = batch["input_ids"][0].tolist(), int(batch["prefix_len"][0])
    prompt = "caption en" if mode == "captioning" else f"answer en {rec.question}"
    target = rec.text if mode == "captioning" else rec.answer
    assert ids[0] == tok.bos_id and ids[n - 1] == tok.token_id("<|sep|>")
    assert tok.decode(ids[1 : n - 1]) == prompt
    suffix = [i for i, m in zip(ids, batch["loss_mask"][0].tolist()) if m]
    assert tok.decode(suffix[:-1]) == target and suffix[-1] == tok.eos_id
    assert set(ids[n + len(suffix) :]) <= {tok.pad_id}


def test_contrastive_layout_and_zero_shot_metadata(shapes, tmp_path):
    # max_len fits every caption (cutting is test_texts_longer_than_max_len_are_cut_with_a_warning's job):
    # the first row of a shuffled batch must have its <|eos|>.
    dm = ImageTextDataModule(str(shapes), batch_size=4, image_size=32, max_len=64, vocab_size=300)
    dm.setup("fit")
    assert dm.tokenizer.vocab_size <= 300 and dm.zero_shot_templates == ["a small {}", "a large {}"]
    assert len(dm.zero_shot_classes) == 24 and "green triangle" in dm.zero_shot_classes
    batch = next(iter(dm.train_dataloader()))
    ids = batch["input_ids"][0].tolist()
    text = dm.records("train")[int(batch["index"][0])].text
    end = ids.index(dm.tokenizer.eos_id)
    assert dm.tokenizer.decode(ids[:end]) == text and set(ids[end + 1 :]) <= {dm.tokenizer.pad_id}
    dm.tokenizer.save(tmp_path / "tok.json")  # a given tokenizer is used as is
    again = ImageTextDataModule(str(shapes), tokenizer=str(tmp_path / "tok.json"))
    again.setup("fit")
    assert again.tokenizer.sha256 == dm.tokenizer.sha256 and not again.tokenizer_trained


def test_reads_a_saved_datasets_dataset_dict(shapes, tmp_path):
    datasets = pytest.importorskip("datasets")
    d = datasets.load_dataset("imagefolder", data_dir=str(shapes))
    d.save_to_disk(str(tmp_path / "saved"))
    dm = ImageTextDataModule(str(tmp_path / "saved"), batch_size=4, image_size=32, max_len=20)
    dm.setup("fit")
    assert set(dm.splits) == {"train", "val", "test"} and len(dm.records("val")) == 16  # conftest's set
    batch = next(iter(dm.val_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert any(r.label and not r.single for r in dm.records("train"))  # scene read from the dataset too


def test_texts_longer_than_max_len_are_cut_with_a_warning(shapes):
    dm = ImageTextDataModule(str(shapes), batch_size=4, image_size=32, max_len=4)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="longer than max_len=4"):
        dm.dataset("train")
    assert next(iter(dm.train_dataloader()))["input_ids"].shape == (4, 4)
