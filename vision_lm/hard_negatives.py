"""Swapped-attribute hard negatives for the sigmoid loss: captions that differ from the true one in one
attribute binding, so the only way to tell them apart is to see which colour goes with which shape.

A contrastive model trained on random negatives can match images and texts as bags of words
(Yuksekgonul et al. 2023, "When and why vision-language models behave like bags-of-words"):
"a red circle left of a blue square" and "a blue circle left of a red square" share every word,
and a batch rarely holds both. NegCLIP's remedy is to add, per image, a caption with its words
swapped as an extra negative. Here, per caption, one of:

- swap: two words of one attribute group trade places between objects
  ("a red circle left of a blue square" -> "a blue circle left of a red square");
- replace: one attribute word becomes another of its group ("a small red circle" -> "a small red
  square"), the only kind a one-object caption allows.

Groups are word lists (colours, shapes, sizes: for the shapes set, from its dataset_info.json).
A negative naming a forbidden pair (the held-out colour-shape pairs, which training must never
show, not even as a negative) is redrawn; a caption without two attribute words gives none.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping

_WORD = re.compile(r"[\w-]+|[^\w-]+")


def groups_from_info(info: Mapping) -> dict[str, list[str]]:
    """Attribute groups of a data set's dataset_info.json: every key among colors/shapes/sizes (and
    training-only extras such as train_colors) whose value is a list or a dict of single words."""
    groups: dict[str, list[str]] = {}
    for key, value in info.items():
        if not any(name in key for name in ("color", "colour", "shape", "size")):
            continue
        words = list(value) if isinstance(value, (list, dict)) else []
        words = [w for w in words if isinstance(w, str) and re.fullmatch(r"[\w-]+", w)]
        group = "color" if "colo" in key else "shape" if "shape" in key else "size"
        groups[group] = sorted(set(groups.get(group, [])) | set(words))
    return {g: words for g, words in groups.items() if len(words) >= 2}  # one word swaps with nothing


class AttributeSwapper:
    """caption -> one hard negative (module docstring), or None when the caption allows none."""

    def __init__(self, groups: Mapping[str, Iterable[str]], forbidden: Iterable[str] = (), tries: int = 10):
        self.group_of = {w: g for g, words in groups.items() for w in words}
        self.words = {g: sorted(set(words)) for g, words in groups.items()}
        self.forbidden = [re.compile(rf"(?<![\w-]){re.escape(p)}(?![\w-])") for p in forbidden]
        self.tries = tries

    def allowed(self, text: str) -> bool:
        return not any(p.search(text) for p in self.forbidden)

    def negative(self, caption: str, rng: random.Random) -> str | None:
        parts = _WORD.findall(caption)
        slots = [i for i, w in enumerate(parts) if w in self.group_of]
        if not slots:
            return None
        for _ in range(self.tries):
            out = list(parts)
            i = rng.choice(slots)
            group = self.group_of[parts[i]]
            partners = [j for j in slots if self.group_of[parts[j]] == group and parts[j] != parts[i]]
            if partners and rng.random() < 0.5:  # swap a binding between two objects
                j = rng.choice(partners)
                out[i], out[j] = parts[j], parts[i]
            else:  # replace, preferring a word the caption does not use yet
                used = {parts[j] for j in slots}
                choices = [w for w in self.words[group] if w not in used] or [
                    w for w in self.words[group] if w != parts[i]
                ]
                if not choices:
                    continue
                out[i] = rng.choice(choices)
            text = "".join(out)
            if text != caption and self.allowed(text):
                return text
        return None
