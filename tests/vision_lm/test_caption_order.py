"""`data.caption_order shape_first` (issue 13): the captioner trains on shape-first noun phrases, the
checkpoint says so, and what users read (`vision-lm caption`, the report) is in the grammar's order."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.errors import UserError
from vision_lm.caption_order import reorder_answers, swap_color_shape
from vision_lm.shapes_scene import Shape, caption
from vision_lm.shapes_stream import ShapesStream
from vision_lm.shapes_style import Diversity


def test_swap_writes_the_shape_first_grammar_and_undoes_it(monkeypatch):
    stream = ShapesStream(7, 64, 100, Diversity(extra_colors=True))
    scenes = [stream.scene(k)[0] for k in range(300)]
    written = [caption(s) for s in scenes]
    monkeypatch.setattr(Shape, "phrase", property(lambda s: f"a {s.size} {s.shape} {s.color}"))
    shape_first = [caption(s) for s in scenes]
    assert any(", " in c for c in written) and any(" left of " in c for c in written)
    assert [swap_color_shape(c) for c in written] == shape_first != written
    assert [swap_color_shape(c) for c in shape_first] == written
    assert swap_color_shape("red circle") == "red circle"  # labels and answers have no phrase


def module_and_data(shapes, order="shape_first"):
    from vision_lm.captioner_module import CaptionerModule
    from vision_lm.data import ImageTextDataModule

    dm = ImageTextDataModule(
        str(shapes), mode="multitask", batch_size=8, train_stream=True, caption_order=order
    )
    module = CaptionerModule()
    module._trainer = SimpleNamespace(datamodule=dm, global_step=0, global_rank=0, state=None)
    dm.setup("fit")
    module.setup("fit")
    module.configure_model()
    return module, dm


def test_training_and_validation_read_shape_first_captions(shapes):
    _, dm = module_and_data(shapes)
    _, plain = module_and_data(shapes, "as_written")
    for split in ("val", "test"):
        got, want = dm.records(split), plain.records(split)
        assert [r.text for r in got] == [swap_color_shape(r.text) for r in want]
        assert [r.question for r in got] == [r.question for r in want]
        assert [r.answer for r in got] == reorder_answers([r.answer for r in want], "shape_first")
    streamed, written = dm.records("train"), plain.records("train")
    assert [streamed[j].text for j in range(0, 80, 2)] == [
        swap_color_shape(written[j].text) for j in range(0, 80, 2)
    ]
    pairs = [(streamed[j].answer, written[j].answer) for j in range(0, 80, 2) if " " in written[j].answer]
    assert pairs and all(a.split() == b.split()[::-1] for a, b in pairs)  # "what is the leftmost shape?"


def test_answers_that_name_a_pair_swap_and_the_others_stay():
    assert reorder_answers(["red circle", "circle", "two", "yes", "small"], "shape_first") == [
        "circle red", "circle", "two", "yes", "small"
    ]  # fmt: skip
    assert reorder_answers(["red circle"], "as_written") == ["red circle"]


def test_the_checkpoint_records_the_order_and_readers_undo_it(shapes):
    from vision_lm.checkpoint import LoadedCaptioner

    module, dm = module_and_data(shapes)
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["caption_order"] == ckpt["answer_order"] == "shape_first"
    loaded = LoadedCaptioner(module.model, dm.tokenizer, ckpt["caption_order"], ckpt["answer_order"])
    assert loaded.readable(["a small circle red left of a large square blue", "yes"]) == [
        "a small red circle left of a large blue square",
        "yes",
    ]
    assert loaded.own_order(loaded.readable(["a small circle red"])) == ["a small circle red"]
    prompts = ["answer en what is the leftmost shape?", "caption en", "answer en what shape is the red one?"]
    assert loaded.readable(["circle red", "a small circle red", "circle"], prompts) == [
        "red circle", "a small red circle", "circle"
    ]  # fmt: skip
    before = LoadedCaptioner(module.model, dm.tokenizer, "shape_first")  # no answer_order: answers as written
    assert before.readable(["red circle", "a small circle red"], prompts[:2]) == [
        "red circle",
        "a small red circle",
    ]
    with pytest.raises(UserError, match="before answers followed it"):
        module.on_load_checkpoint({"caption_order": "shape_first"})
    plain, _ = module_and_data(shapes, "as_written")
    with pytest.raises(UserError, match="caption_order shape_first"):
        plain.on_load_checkpoint(ckpt)  # evaluating it as written would score the wrong order
    ckpt_plain = {}
    plain.on_save_checkpoint(ckpt_plain)
    assert "caption_order" not in ckpt_plain


def test_mistakes_are_one_user_error(shapes, tmp_path):
    from vision_lm.data import ImageTextDataModule

    with pytest.raises(UserError, match="caption_order must be one of"):
        ImageTextDataModule(str(shapes), mode="captioning", caption_order="colour_last")
    with pytest.raises(UserError, match="for the captioner"):
        ImageTextDataModule(str(shapes), mode="contrastive", caption_order="shape_first")
    mine = shutil.copytree(shapes, tmp_path / "mine")
    info = json.loads((mine / "dataset_info.json").read_text())
    (mine / "dataset_info.json").write_text(json.dumps({**info, "name": "mine"}))
    with pytest.raises(UserError, match="not a shapes set"):
        ImageTextDataModule(str(mine), mode="captioning", caption_order="shape_first").setup("fit")


@pytest.mark.slow
def test_the_cli_trains_it_prints_the_grammar_and_refuses_another_order_in_evaluation(
    shapes, tmp_path, capsys, monkeypatch
):
    import torch

    import vision_lm.caption_generate as generate
    from vision_lm.cli import main as vision_lm

    config = str(Path(__file__).resolve().parents[2] / "configs" / "vision" / "paligemma-shapes.yaml")
    quiet = ["--data.batch_size", "8", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
             "false", "--trainer.limit_val_batches", "1", "--model.init_args.max_new_tokens", "24"]  # fmt: skip
    vision_lm(["fit", "-c", config, "--data.data_dir", str(shapes), "--data.caption_order", "shape_first",
               "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "2", *quiet])  # fmt: skip
    ckpt = str(tmp_path / "paligemma-tiny" / "version_0" / "checkpoints" / "last.ckpt")
    assert torch.load(ckpt, weights_only=True)["caption_order"] == "shape_first"
    image = str(shapes / "test" / "000000.png")
    monkeypatch.setattr(
        generate, "caption_images", lambda *a, **k: ["a large square blue left of a small circle red"]
    )
    capsys.readouterr()
    vision_lm(["caption", "--checkpoint", ckpt, "--image", image])
    assert capsys.readouterr().out.strip() == "a large blue square left of a small red circle"
    vision_lm(["export-hf", "--checkpoint", ckpt, "--out", str(tmp_path / "hf")])
    assert "writes captions shape_first" in capsys.readouterr().out  # transformers prints the trained order
    for argv, culprit in [
        (
            ["test", "-c", config, "--data.data_dir", str(shapes), "--ckpt_path", ckpt, *quiet],
            "caption_order",
        ),
    ]:
        with pytest.raises(SystemExit) as e:
            vision_lm(argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code == 2 and culprit in err
