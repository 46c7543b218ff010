"""The synthetic shapes data set: determinism, truth of every text, held-out splits, CLI behaviour."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from shared.errors import UserError
from vision_lm.make_shapes_cli import main
from vision_lm.shapes import SPLITS, make_shapes, read_info
from vision_lm.shapes_scene import (
    COLORS,
    HELD_OUT,
    NOT_IN_TRAINING,
    SHAPES,
    SIZES,
    VAL_HELD_OUT,
    Shape,
    caption,
    class_names,
    radius_px,
    scene_from_json,
    zero_shot_prompt,
    zero_shot_prompts,
)
from vision_lm.shapes_style import HSV_RANGES, RADIUS_RANGES, hsv_of

ROOT = Path(__file__).resolve().parents[2]
N = {"train": 150, "val": 40, "test": 80}
FIELDS = ["file_name", "text", "question", "answer", "label", "held_out", "background", "scene"]


V1_TEST = [  # (index, md5 of the RGB pixels, caption) made by version 1 (commit d92ebdb)
    (0, "98360f1782d80c5b9ffbc7ffbf9864a6", "a small green circle left of a small red square"),
    (7, "a0d2070631a8130732325f09223cabf1", "a large red square"),
]


def read_split(d: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (d / split / "metadata.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "ds"
    return make_shapes(out, n_train=N["train"], n_val=N["val"], n_test=N["test"], seed=3, progress=False)


def all_files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(data, tmp_path):
    again = make_shapes(tmp_path / "b", N["train"], N["val"], N["test"], seed=3, progress=False)
    assert all_files(again) == all_files(data)
    other = make_shapes(tmp_path / "c", N["train"], N["val"], N["test"], seed=4, progress=False)
    assert all_files(other)["train/000000.png"] != all_files(data)["train/000000.png"]


def test_metadata_format_and_info(data):
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["splits"] == N and info["seed"] == 3 and info["image_size"] == 64
    assert info["held_out"] == list(HELD_OUT) and info["shapes"] == list(SHAPES)
    assert info["val_held_out"] == list(VAL_HELD_OUT) and not set(VAL_HELD_OUT) & set(HELD_OUT)
    assert set(info["colors"]) == set(COLORS) and info["classes"] == class_names()
    for split in SPLITS:
        rows = read_split(data, split)
        assert len(rows) == N[split] == len(list((data / split).glob("*.png")))
        for row in rows:
            assert list(row) == FIELDS
            assert (data / split / row["file_name"]).is_file()
            assert all(isinstance(row[k], str) and row[k] for k in FIELDS[:5])
            assert 1 <= len(row["answer"].split()) <= 2
            assert isinstance(row["held_out"], bool) and len(row["background"]) == 3


# Parse captions with a grammar written independently of `caption()`, so the check is not circular.
_PHRASE = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)})"
_GRAMMAR = [
    re.compile(rf"^{_PHRASE}$"),
    re.compile(rf"^{_PHRASE} left of {_PHRASE}$"),
    re.compile(rf"^{_PHRASE}, {_PHRASE} and {_PHRASE}$"),
]


def parse_caption(text: str) -> list[tuple[str, str, str]]:
    for n, pattern in enumerate(_GRAMMAR, start=1):
        if m := pattern.match(text):
            g = m.groups()
            return [g[3 * i : 3 * i + 3] for i in range(n)]
    raise AssertionError(f"caption outside the grammar: {text!r}")


def expected_answer(question: str, scene: list[Shape]) -> str:
    """An oracle for each question form, computed from the scene alone."""
    by_label = {s.label: s for s in scene}
    if question == "how many shapes are there?":
        return ["one", "two", "three"][len(scene) - 1]
    if m := re.fullmatch(r"what color is the (\w+)\?", question):
        return next(s.color for s in scene if s.shape == m[1])
    if m := re.fullmatch(r"what shape is the (\w+) one\?", question):
        return next(s.shape for s in scene if s.color == m[1])
    if m := re.fullmatch(r"what size is the (\w+ \w+)\?", question):
        return by_label[m[1]].size
    if m := re.fullmatch(r"what is the (leftmost|rightmost) shape\?", question):
        pick = min if m[1] == "leftmost" else max
        return pick(scene, key=lambda s: s.x).label
    if m := re.fullmatch(r"is the (\w+ \w+) left of the (\w+ \w+)\?", question):
        return "yes" if by_label[m[1]].x < by_label[m[2]].x else "no"
    raise AssertionError(f"unknown question form: {question!r}")


def in_region(rgb, color: str) -> bool:
    """The fill lies in the colour's HSV region (1.5 degrees / 0.01 of slack for rounding to bytes)."""
    h, s, v = hsv_of(rgb)
    (h0, h1), (s0, s1), (v0, v1) = HSV_RANGES[color]
    h = h - 360 if h0 < 0 and h > 180 else h  # red's range wraps below 0
    return h0 - 1.5 <= h <= h1 + 1.5 and s0 - 0.01 <= s <= s1 + 0.01 and v0 - 0.01 <= v <= v1 + 0.01


def test_every_text_is_true_of_its_scene_and_image(data):
    kinds, fills, radii, backgrounds = set(), set(), set(), set()
    for split in SPLITS:
        for row in read_split(data, split):
            scene = scene_from_json(row["scene"])
            assert [s.x for s in scene] == sorted(s.x for s in scene)
            assert parse_caption(row["text"]) == [(s.size, s.color, s.shape) for s in scene]
            assert caption(scene) == row["text"]
            assert len({s.shape for s in scene}) == len({s.color for s in scene}) == len(scene)
            assert row["answer"] == expected_answer(row["question"], scene)
            kinds.add(" ".join(row["question"].split()[:2]))
            largest = max(s.radius for s in scene)
            assert row["label"] == next(s.label for s in scene if s.radius == largest)
            img = Image.open(data / split / row["file_name"]).convert("RGB")
            assert img.size == (64, 64)
            for i, s in enumerate(scene):
                assert img.getpixel((s.x, s.y)) == s.fill, (split, row["file_name"], s)
                if split == "train":  # diverse: within the colour's region and the size's range
                    lo, hi = RADIUS_RANGES[s.size]
                    assert in_region(s.fill, s.color) and lo * 64 - 0.5 <= s.radius <= hi * 64 + 0.5
                    fills.add(s.fill), radii.add(s.radius)
                else:  # canonical, as version 1
                    assert s.fill == COLORS[s.color] and s.radius == radius_px(s.size, 64)
                for o in scene[i + 1 :]:  # bounding circles never touch: captions stay visible
                    assert (s.x - o.x) ** 2 + (s.y - o.y) ** 2 > (s.radius + o.radius) ** 2
            assert img.getpixel((0, 0)) == tuple(row["background"])
            backgrounds.add(tuple(row["background"]))
            if split != "train":
                assert row["background"] == [255, 255, 255]
    assert kinds == {"how many", "what color", "what shape", "what size", "what is", "is the"}  # all kinds
    assert len(fills) > 100 and len(radii) >= 6 and len(backgrounds) > 100  # train varies


def pairs_of(row: dict) -> set[str]:
    return {s["color"] + " " + s["shape"] for s in row["scene"]}


def test_held_out_pairs_never_in_training(data):
    """Train: no held-out pair (test or validation) in any image or text. Val: even images seen pairs
    only, odd ones the validation pair and never a test pair. Test: a test pair in every image."""
    for row in read_split(data, "train"):
        assert not pairs_of(row) & NOT_IN_TRAINING and row["held_out"] is False
        text = " ".join((row["text"], row["question"], row["answer"], row["label"]))
        assert not any(h in text for h in NOT_IN_TRAINING)
    for i, row in enumerate(read_split(data, "val")):
        assert not pairs_of(row) & set(HELD_OUT)
        assert (pairs_of(row) & set(VAL_HELD_OUT) != set()) == bool(i % 2) == row["held_out"]
        if not i % 2:
            assert not any(h in " ".join((row["text"], row["question"], row["answer"])) for h in VAL_HELD_OUT)
    seen = set()
    for row in read_split(data, "test"):
        held = pairs_of(row) & set(HELD_OUT)
        assert held and row["held_out"], row
        seen |= held
    assert seen == set(HELD_OUT)


def test_test_images_are_those_of_version_1():
    """Test images come from version 1's generators (same colours, radii, background, draws), so
    test figures compare across versions: md5 of the pixels of test images of --seed 0 at version 1."""
    import hashlib

    from vision_lm.shapes import example

    for index, md5, text in V1_TEST:
        img, meta = example(0, "test", index, 64)
        assert (hashlib.md5(img.tobytes()).hexdigest(), meta["text"]) == (md5, text)


def test_zero_shot_prompts_match_lone_shape_captions():
    names = class_names()
    assert len(names) == len(COLORS) * len(SHAPES) and set(HELD_OUT) <= set(names)
    assert not set(HELD_OUT) & set(class_names(include_held_out=False))
    assert zero_shot_prompt("red circle") == "a red circle"
    lone = [caption([Shape("circle", "red", size, 30, 30, radius_px(size, 64))]) for size in SIZES]
    assert zero_shot_prompts("red circle") == lone


def test_imagefolder_loader_reads_it(data, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ds = datasets.load_dataset("imagefolder", data_dir=str(data), cache_dir=str(tmp_path / "cache"))
    assert {k: len(v) for k, v in ds.items()} == {"train": 150, "validation": 40, "test": 80}
    first = ds["train"][0]
    assert first["text"] == read_split(data, "train")[0]["text"] and first["image"].size == (64, 64)
    assert first["scene"][0]["color"] in COLORS


@pytest.mark.parametrize(
    "flag,value",
    [("--n-train", "-1"), ("--n-val", "-2"), ("--n-test", "-3"), ("--image-size", "15")],
)
def test_cli_bad_input_exits_2_with_one_line(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "x"), flag, value, "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and flag in err[0]
    assert not (tmp_path / "x").exists()


def test_rerun_is_a_no_op_and_other_args_need_force(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["--out", str(out), "--n-train", "5", "--n-val", "2", "--n-test", "2", "--no-progress"]
    main(args)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    main(args)
    assert "already exists, up to date" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    with pytest.raises(SystemExit) as e:
        main([*args, "--seed", "1"])
    assert e.value.code == 2 and "--force" in capsys.readouterr().err
    main([*args, "--seed", "1", "--force"])
    assert read_info(out)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or old folders left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a shapes data set"):
        make_shapes(foreign, 2, 1, 1, force=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_killed_run_never_looks_complete(tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "vision_lm.make_shapes_cli", "--out", str(out), "--n-train", "200000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tmp_path / f"ds.tmp-{proc.pid}"
    deadline = time.monotonic() + 30
    while not (tmp / "train" / "000010.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tmp.is_dir() and not out.exists() and read_info(out) is None

    make_shapes(out, 3, 1, 1, progress=False)  # the next run completes and sweeps the dead run's folder
    assert read_info(out)["splits"] == {"train": 3, "val": 1, "test": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_small_images_and_light_imports(tmp_path):
    out = make_shapes(tmp_path / "tiny", 30, 0, 10, image_size=16, progress=False)
    for split in ("train", "test"):
        for row in read_split(out, split):
            img = Image.open(out / split / row["file_name"]).convert("RGB")
            assert all(img.getpixel((s["x"], s["y"])) == tuple(s["rgb"]) for s in row["scene"])
    code = "import sys, vision_lm.make_shapes_cli; print(any(m.split('.')[0] in ('torch', 'lightning') for m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        == "False"
    )


def test_a_folder_of_an_older_version_with_the_same_arguments_is_remade(tmp_path, capsys):
    out = make_shapes(tmp_path / "ds", 3, 1, 1, progress=False)
    info = read_info(out)
    (out / "dataset_info.json").write_text(json.dumps({**info, "version": 1}))
    make_shapes(out, 3, 1, 1, progress=False)
    assert "was made by make-shapes version 1; remaking it" in capsys.readouterr().out
    assert read_info(out) == info and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
