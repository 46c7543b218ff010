"""Swapped-attribute hard negatives (vision_lm/hard_negatives.py) and their use in SigLIP's training step."""

import random
import re
from types import SimpleNamespace

import torch

from vision_lm.hard_negatives import AttributeSwapper, groups_from_info

GROUPS = {
    "color": ["red", "green", "blue", "yellow"],
    "shape": ["circle", "square", "triangle"],
    "size": ["small", "large"],
}
HELD_OUT = ["green triangle", "red square", "blue circle"]


def test_groups_come_from_dataset_info_lists_and_dicts():
    info = {"colors": {"red": [1, 2, 3], "blue": [0, 0, 9]}, "shapes": ["circle", "square"], "sizes": {"small": 6},
            "extra_colors": ["teal"], "held_out": HELD_OUT, "name": "shapes"}  # fmt: skip
    assert groups_from_info(info) == {"color": ["blue", "red", "teal"], "shape": ["circle", "square"]}


def test_negatives_change_one_binding_and_never_name_a_held_out_pair():
    swapper, rng = AttributeSwapper(GROUPS, HELD_OUT), random.Random(0)
    captions = ["a small red circle", "a small red circle left of a large blue square",
                "a small yellow triangle, a large red circle and a small blue square"]  # fmt: skip
    kinds = set()
    for caption in captions * 50:
        neg = swapper.negative(caption, rng)
        assert neg is not None and neg != caption and len(neg.split()) == len(caption.split())
        assert not any(re.search(rf"\b{p}\b", neg) for p in HELD_OUT)
        words, neg_words = re.findall(r"[\w-]+", caption), re.findall(r"[\w-]+", neg)
        changed = [(a, b) for a, b in zip(words, neg_words) if a != b]
        if len(changed) == 2 and sorted(words) == sorted(neg_words):
            kinds.add("swap")  # a binding traded between two objects: same words, other pairing
        else:  # one attribute word replaced by another of its group
            assert len(changed) == 1 and changed[0][1] in GROUPS[swapper.group_of[changed[0][0]]]
            kinds.add("replace")
    assert kinds == {"swap", "replace"}
    assert swapper.negative("a photo of a dog", rng) is None  # nothing to swap


def test_training_step_negatives_are_decoded_swapped_and_re_encoded(shapes):
    from vision_lm.data import ImageTextDataModule
    from vision_lm.siglip_module import SigLIPModule
    from vision_lm.text_batch import TextEncoder

    dm = ImageTextDataModule(str(shapes))
    dm.setup()
    module = SigLIPModule(hard_negatives=True)
    module._trainer = SimpleNamespace(datamodule=dm, global_step=0, global_rank=0)
    captions = [r.text for r in dm.splits["train"].records[:16]]
    neg_ids = module._hard_negative_ids(TextEncoder(dm.tokenizer, 16).captions(captions))
    assert neg_ids.shape == (16, 16)
    eos = dm.tokenizer.eos_id
    negs = [dm.tokenizer.decode(row[: row.index(eos)]) for row in neg_ids.tolist()]
    held = dm.info["held_out"]
    for caption, neg in zip(captions, negs):
        assert neg != caption and len(neg.split()) == len(caption.split())
        assert not any(p in neg for p in held)
    batch = {
        "pixel_values": torch.zeros(16, 3, 64, 64),
        "input_ids": TextEncoder(dm.tokenizer, 16).captions(captions),
    }
    module.configure_model()
    module.log = lambda *a, **k: None
    with_negatives = module.training_step(batch, 0)
    module.hparams.hard_negatives = False
    assert with_negatives > module.training_step(batch, 0)  # the extra negative columns add to the loss
