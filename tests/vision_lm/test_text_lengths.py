"""No caption, question or answer of the shapes set is ever cut: every shipped vision YAML's text length fits
the longest text the shapes grammar can produce, tokenised as a fit tokenises it (issue 13 item 4)."""

import random
import warnings
from pathlib import Path

import yaml

from shared.tokenizer import Tokenizer
from vision_lm import shapes_questions, shapes_scene
from vision_lm.shapes_style import Diversity
from vision_lm.text_batch import ANSWER_SEP, CAPTION_PREFIX, VQA_PREFIX, TextEncoder

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "vision"
EVERYTHING = Diversity(extra_colors=True, extra_shapes=True)  # the longest words any stream may draw


def _training_texts(n: int = 1500) -> list[str]:
    rng = random.Random(0)
    texts = []
    for _ in range(n):
        scene = shapes_scene.sample_scene(rng, 64, "train", EVERYTHING)
        texts += [shapes_scene.caption(scene), *shapes_questions.pick_question(scene, rng)]
    return texts


def _longest(tok: Tokenizer, words: list[str]) -> str:
    return max(words, key=lambda w: len(tok.encode(" " + w)))


def test_shipped_lengths_fit_the_longest_shapes_texts():
    texts = _training_texts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = Tokenizer.train([CAPTION_PREFIX, VQA_PREFIX, *texts], 512, progress=False)
    words = (shapes_scene.SIZES, shapes_scene.color_names(EVERYTHING), shapes_scene.shape_names(EVERYTHING))
    size, colour, shape = (_longest(tok, list(w)) for w in words)
    phrase = f"a {size} {colour} {shape}"  # per-word tokens add up (BPE never merges across words)
    caption = f"{phrase}, {phrase} and {phrase}"  # the 3-shape grammar, each slot at its longest
    label = f"{colour} {shape}"
    question = max([t for t in texts if t.endswith("?")] + [f"is the {label} left of the {label}?"],
                   key=lambda q: len(tok.encode(q)))  # fmt: skip
    answer = max([label, size, "three", "yes"], key=lambda a: len(tok.encode(a)))
    longest_caption = len(tok.encode(caption)) + 1  # + <|eos|> (contrastive layout)
    enc = TextEncoder(tok, 10_000)
    layouts = [
        enc.prefix_suffix(CAPTION_PREFIX, caption),
        enc.prefix_suffix(VQA_PREFIX.format(question=question), answer),
    ]
    longest_prefix_suffix = max(n + sum(mask) for _, n, mask in layouts)  # the unpadded ids
    after = enc.prefix_suffix(VQA_PREFIX.format(question=question), f"{caption}{ANSWER_SEP}{answer}")
    # data.answer_after_caption: the caption, then the answer
    longest_after_caption = after[1] + sum(after[2])
    assert longest_caption >= max(len(tok.encode(t)) + 1 for t in texts)  # the bound covers what was drawn
    for path in sorted(CONFIGS.glob("*.yaml")):
        whole = yaml.safe_load(path.read_text())
        model, after_caption = whole["model"]["init_args"], whole["data"].get("answer_after_caption", False)
        config = model["config"]
        if "text" in config:  # SigLIP: the caption and its <|eos|>
            assert config["text"]["max_len"] >= longest_caption, (path.name, longest_caption)
        else:  # captioner: <|bos|> prompt <|sep|> suffix <|eos|>, and generation long enough for any suffix
            need = longest_after_caption if after_caption else longest_prefix_suffix
            assert config["decoder"]["max_len"] >= need, (path.name, need)
            suffix = sum(after[2]) if after_caption else len(tok.encode(caption)) + 1
            assert model.get("max_new_tokens", 24) >= suffix, (path.name, suffix)
