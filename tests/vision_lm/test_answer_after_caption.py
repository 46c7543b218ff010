"""`data.answer_after_caption` (issue 13): VQA rows train the captioner to write the image's caption, then
" => ", then the answer; every reader (validation, the report, `vision-lm caption`) scores the answer alone."""

from types import SimpleNamespace

import torch

from vision_lm.caption_order import readable
from vision_lm.records import Record
from vision_lm.text_batch import ANSWER_SEP, TASKS, answer_of, row_texts


def test_rows_put_the_caption_before_the_answer_and_answer_of_reads_it_back():
    rec = Record(0, "a small red circle", "what color is the circle?", "red")
    assert row_texts(rec, "vqa") == ("answer en what color is the circle?", "red")
    assert row_texts(rec, "vqa", True) == ("answer en what color is the circle?", "a small red circle => red")
    assert (
        row_texts(rec, "caption", True) == row_texts(rec, "caption") == ("caption en", "a small red circle")
    )
    no_caption = Record(1, "", "what is it?", "a cat")  # a VQA-only record: the answer alone
    assert row_texts(no_caption, "vqa", True)[1] == "a cat"
    assert answer_of("a small red circle => red") == "red"
    assert answer_of("red") == "red" and answer_of("a => b => two") == "two"
    assert answer_of("a small red circle") == "a small red circle"  # cut before the answer: scored wrong
    texts, prompts = (
        ["a small circle red => circle red", "a small circle red"],
        ["answer en what?", "caption en"],
    )
    assert readable(texts, prompts, "shape_first", "shape_first", True) == [
        "red circle",
        "a small red circle",
    ]
    assert readable(["x => y"], ["answer en what?"], "as_written", "as_written") == [
        "x => y"
    ]  # trained without


def _batches(shapes, after: bool):
    from vision_lm.data import ImageTextDataModule

    dm = ImageTextDataModule(
        str(shapes), mode="multitask", batch_size=8, max_len=40, image_size=32, train_stream=True,
        caption_order="shape_first", answer_after_caption=after,
    )  # fmt: skip
    dm.setup("fit")
    return dm, next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))


def test_the_data_lays_vqa_rows_out_caption_first_and_leaves_caption_rows(shapes):
    dm, train, val = _batches(shapes, True)
    _, plain_train, plain_val = _batches(shapes, False)
    tok = dm.tokenizer
    for batch, plain, recs in ((train, plain_train, None), (val, plain_val, dm.records("val"))):
        vqa = batch["task"] == TASKS.index("vqa")
        assert vqa.any() and (~vqa).any()
        assert torch.equal(batch["input_ids"][~vqa], plain["input_ids"][~vqa])  # captions as before
        assert torch.equal(batch["prefix_len"], plain["prefix_len"])  # the same prompts
        for ids, mask, plain_ids, plain_mask in zip(
            batch["input_ids"][vqa], batch["loss_mask"][vqa], plain["input_ids"][vqa], plain["loss_mask"][vqa]
        ):
            suffix = tok.decode(ids[mask][:-1]).strip()  # without <|eos|>
            answer = tok.decode(plain_ids[plain_mask][:-1]).strip()
            caption, _, after = suffix.partition(ANSWER_SEP)
            assert after == answer and caption.startswith("a ")  # the scene's caption, shape first
            assert answer_of(suffix) == answer
        if recs is not None:  # a folder split: the row's own record's caption
            index = batch["index"][vqa].tolist()
            suffixes = [
                tok.decode(i[m][:-1]).strip()
                for i, m in zip(batch["input_ids"][vqa], batch["loss_mask"][vqa])
            ]
            assert suffixes == [f"{recs[i].text}{ANSWER_SEP}{recs[i].answer}" for i in index]


def test_the_checkpoint_says_so_and_its_readers_keep_the_answer_alone(shapes, tmp_path):
    from vision_lm.checkpoint import captioner_from_checkpoint
    from vision_lm.text_batch import AFTER_CAPTION_KEY

    written = {}
    for after in (True, False):
        module, dm = _module(shapes, after)
        ckpt = {"state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()}}
        module.on_save_checkpoint(ckpt)
        assert ckpt.get(AFTER_CAPTION_KEY, False) is after
        torch.save(ckpt, tmp_path / f"{after}.ckpt")
        written[after] = captioner_from_checkpoint(tmp_path / f"{after}.ckpt")
    prompt = ["answer en what color is the circle?"]
    assert written[True].readable(["a small circle red => red"], prompt) == ["red"]
    assert written[False].readable(["a small circle red => red"], prompt) == ["a small circle red => red"]


def _module(shapes, after: bool):
    import vision_lm.captioner_module as cm
    from vision_lm.paligemma_config import PaliGemmaConfig

    dm, _, _ = _batches(shapes, after)
    config = PaliGemmaConfig.from_dict(
        {"vision": {"image_size": 32, "patch_size": 8, "dim": 32, "n_layers": 1, "n_heads": 2},
         "decoder": {"vocab_size": 512, "max_len": 40, "dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64}}
    )  # fmt: skip
    module = cm.CaptionerModule(config, max_new_tokens=32)
    module._trainer = SimpleNamespace(datamodule=dm, sanity_checking=False, global_step=0, global_rank=0)
    module.configure_model()
    return module, dm


def test_validation_scores_the_answer_alone(shapes, monkeypatch):
    """A wrong caption before the right answer is a right answer; a right caption before a wrong one is not."""
    import vision_lm.captioner_module as cm

    module, dm = _module(shapes, True)
    val = next(iter(dm.val_dataloader()))
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    tok, rows = dm.tokenizer, val["input_ids"].tolist()
    truths = [
        tok.decode([i for i, m in zip(r, m) if m][:-1]).strip()
        for r, m in zip(rows, val["loss_mask"].tolist())
    ]
    vqa = val["task"].tolist()

    def answers(wrong_caption: bool):
        out = []
        for text, task in zip(truths, vqa):
            caption, _, answer = text.partition(ANSWER_SEP)
            if TASKS[task] == "vqa":
                text = (
                    f"a large nothing{ANSWER_SEP}{answer}" if wrong_caption else f"{caption}{ANSWER_SEP}zzz"
                )
            out.append(tok.encode(text))
        return out

    for wrong_caption, want in ((True, 1.0), (False, 0.0)):
        module.vqa_acc.reset(), module.caption_exact.reset()
        monkeypatch.setattr(cm, "generate", lambda *a, w=wrong_caption, **k: answers(w))
        module._eval_step(val, "val")
        assert module.vqa_acc.compute().item() == want
        assert module.caption_exact.compute().item() == 1.0  # caption rows as generated: the truth


def test_answer_weights_fall_on_the_answer_and_its_eos_and_the_loss_takes_them(shapes):
    import torch.nn.functional as F

    from vision_lm.paligemma import suffix_loss
    from vision_lm.text_batch import answer_weights

    dm, train, _ = _batches(shapes, True)
    tok, ids, mask = dm.tokenizer, train["input_ids"], train["loss_mask"]
    weight = answer_weights(ids, mask, tok, 5.0)
    assert set(weight.unique().tolist()) == {1.0, 5.0}
    for row, w, m, task in zip(ids, weight, mask, train["task"].tolist()):
        heavy = row[w == 5].tolist()
        if TASKS[task] == "caption":
            assert heavy == []
        else:
            suffix = tok.decode(row[m][:-1]).strip()
            assert heavy[-1] == tok.eos_id and tok.decode(heavy[:-1]).strip() == answer_of(suffix)
    logits = torch.randn(*ids.shape, 600)
    assert torch.allclose(
        suffix_loss(logits, ids, mask, torch.ones_like(weight)), suffix_loss(logits, ids, mask)
    )
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T - 1)
    w = weight[:, 1:] * mask[:, 1:]
    torch.testing.assert_close(suffix_loss(logits, ids, mask, weight), (ce * w).sum() / w.sum())


def test_answer_weight_needs_answers_after_captions(shapes):
    import pytest

    import vision_lm.captioner_module as cm
    from shared.errors import UserError

    with pytest.raises(UserError, match="answer_weight must be positive"):
        cm.CaptionerModule(answer_weight=0)
    module, dm = _module(shapes, False)
    module.hparams.answer_weight = 5.0
    with pytest.raises(UserError, match="set data.answer_after_caption"):
        module.setup("fit")
