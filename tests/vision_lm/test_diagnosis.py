"""The diagnosis of issue 13: colour/shape linear probes tell a tower that keeps the two apart from one that
entangles them, and held-out pair recall counts whether a caption names the pair at all."""

import math

import torch

from vision_lm.evaluation import attribute_probes, fit_linear_probe, held_out_pair_recall, split_label

COLOURS, SHAPES = ["red", "green", "blue"], ["circle", "square", "triangle"]
HELD_OUT = {"green triangle", "red square", "blue circle"}
PAIRS = [f"{c} {s}" for c in COLOURS for s in SHAPES]


def _features(labels: list[str], factorised: bool, seed: int) -> torch.Tensor:
    """(N, 16): colour one-hot + shape one-hot (factorised), or one-hot of the pair alone (entangled), in a
    random rotation, plus noise."""
    g = torch.Generator().manual_seed(seed)
    if factorised:
        x = torch.zeros(len(labels), 6)
        for i, label in enumerate(labels):
            colour, shape = split_label(label)
            x[i, COLOURS.index(colour)] = x[i, 3 + SHAPES.index(shape)] = 1.0
    else:
        x = torch.nn.functional.one_hot(torch.tensor([PAIRS.index(lb) for lb in labels]), 9).float()
    x = torch.cat([x, torch.zeros(len(labels), 16 - x.shape[1])], 1)
    rotation = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0]
    return x @ rotation + 0.05 * torch.randn(x.shape, generator=g)


def test_split_label_takes_the_last_word_as_the_shape():
    assert split_label("red circle") == ("red", "circle")
    assert split_label("light green triangle") == ("light green", "triangle")


def test_linear_probe_separates_separable_classes():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long() + 2 * (x[:, 3] > 0).long()  # 4 classes, linear boundaries
    predict = fit_linear_probe(x[:150], y[:150], 4)
    assert (predict(x[150:]) == y[150:]).float().mean() > 0.9


def test_probes_tell_factorised_from_entangled_embeddings():
    seen = [p for p in PAIRS if p not in HELD_OUT] * 8
    held = sorted(HELD_OUT) * 8
    for factorised, shape_on_held_out in ((True, 1.0), (False, None)):
        fit = _features(seen, factorised, seed=1)
        sets = {"val": (_features(seen, factorised, 2), seen), "test": (_features(held, factorised, 3), held)}
        out = attribute_probes(fit, seen, sets)
        assert out["colour"]["val"] == out["shape"]["val"] == 1.0
        if factorised:  # shape read off its own directions: held-out pairs are named right
            assert out["shape"]["test"] == shape_on_held_out and out["colour"]["test"] == 1.0
        else:  # a pair code: an unseen pair's code is no seen shape's, the probe fails on it
            assert out["shape"]["test"] < 0.5


def test_held_out_pair_recall_counts_whole_words_of_true_pairs():
    truths = [
        "a small green triangle",
        "a large red square left of a small blue square",
        "a small red circle",
    ]
    generated = ["a small green triangle", "a large red circle left of a small blue square", "a red square"]
    # pairs named by the truths: green triangle (hit), red square (miss); the third truth names none
    assert held_out_pair_recall(generated, truths, sorted(HELD_OUT)) == 0.5
    assert held_out_pair_recall(["a dark green triangles"], ["a green triangle"], ["green triangle"]) == 0.0
    assert math.isnan(held_out_pair_recall(["x"], ["a red circle"], ["green triangle"]))


def test_caption_scores_split_exact_match_by_object_count():
    from vision_lm.caption_eval import caption_scores
    from vision_lm.records import Record

    recs = [
        Record(0, "a small green triangle"),
        Record(1, "a large red square left of a small blue square", single=False),
        Record(2, "a small red circle, a large red square and a small blue circle", single=False),
    ]
    generated = ["a small green triangle", "a large red square left of a small blue square", "a red circle"]
    s = caption_scores(generated, recs, ["green triangle"])
    assert (s["caption_exact"], s["caption_exact_one"], s["caption_exact_several"]) == (2 / 3, 1.0, 0.5)
    assert math.isnan(caption_scores(generated[:1], recs[:1], [])["caption_exact_several"])


def test_question_kind_names_every_question_the_grammar_asks():
    from vision_lm.shapes_questions import QUESTION_KINDS, question_kind, questions
    from vision_lm.shapes_stream import ShapesStream
    from vision_lm.shapes_style import Diversity

    stream = ShapesStream(5, 64, 100, Diversity(extra_colors=True))
    seen = set()
    for k in range(200):
        for kind, qa in questions(stream.scene(k)[0]).items():
            assert [question_kind(q) for q, _ in qa] == [kind] * len(qa)
            seen.add(kind)
    assert seen == set(QUESTION_KINDS)
    assert question_kind("what is in the picture?") is None
    assert question_kind("is the red circle left of the blue square? yes") is None


def test_vqa_scores_split_accuracy_by_kind(monkeypatch):
    from types import SimpleNamespace

    import vision_lm.caption_generate as generate
    from vision_lm.caption_eval import vqa_scores
    from vision_lm.records import Record
    from vision_lm.shapes_questions import question_kind

    recs = [
        Record(0, "x", "how many shapes are there?", "two"),
        Record(1, "x", "what color is the circle?", "red"),
        Record(2, "x", "what color is the square?", "blue"),
        Record(3, "x"),  # no question: not scored
        Record(4, "x", "what is in the picture?", "a cat"),  # scored, of no kind
    ]
    given = []

    def answer(model, tok, pixels, prompts, n, contrast=0.0):
        given.extend(prompts)
        return ["two", "red", "green", "a cat"][: len(prompts)]

    monkeypatch.setattr(generate, "caption_images", answer)
    from vision_lm.checkpoint import LoadedCaptioner

    config = SimpleNamespace(decoder=SimpleNamespace(max_len=24))
    loaded = LoadedCaptioner(SimpleNamespace(config=config), None)
    pixels = torch.zeros(5, 3, 8, 8)
    scores = vqa_scores(loaded, recs, pixels, question_kind)
    assert scores == {"vqa_acc": 0.75, "vqa_acc color": 0.5, "vqa_acc count": 1.0}
    assert given[0] == "answer en how many shapes are there?" and len(given) == 4
    assert vqa_scores(loaded, recs, pixels) == {"vqa_acc": 0.75}
    shape_first = LoadedCaptioner(SimpleNamespace(config=config), None, "shape_first", "shape_first")
    pair = [Record(0, "x", "what is the leftmost shape?", "red circle")]
    monkeypatch.setattr(generate, "caption_images", lambda *a, **k: ["circle red"])
    assert vqa_scores(shape_first, pair, pixels[:1])["vqa_acc"] == 1.0  # read in the grammar's order
    assert vqa_scores(loaded, pair, pixels[:1])["vqa_acc"] == 0.0


def test_colour_free_probe_set_shows_every_shape_in_training_only_colours(shapes, tmp_path):
    from vision_lm.demo_vision_report import colour_free_singles
    from vision_lm.shapes_scene import SHAPES
    from vision_lm.shapes_style import EXTRA_COLORS

    labels, pixels = colour_free_singles(str(shapes), 32, n=60)
    assert pixels.shape == (60, 3, 32, 32) and pixels.min() >= -1 and pixels.max() <= 1
    colours, kinds = zip(*(label.split(" ") for label in labels))
    assert set(colours) <= set(EXTRA_COLORS) and set(kinds) == set(SHAPES)  # colour cannot tell the shape
    assert colour_free_singles(str(tmp_path), 32) is None  # not a shapes folder
