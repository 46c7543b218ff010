"""Questions about a scene of the synthetic "shapes" set (VQA): every question a scene supports, grouped by
kind, one picked per scene for the data, and the kind of a question (the report scores each kind apart).
Answers are derived from the scene's description, never from pixels, like its caption (`shapes_scene`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from vision_lm.shapes_scene import Shape

NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


def questions(scene: Sequence[Shape]) -> dict[str, list[tuple[str, str]]]:
    """Every (question, answer) the scene supports, grouped by kind. Answers are 1-2 words.

    Kinds: "count", "color" (of a shape type), "shape" (of a colour), "size",
    "extreme" (leftmost/rightmost, 2+ shapes) and "left_of" (yes/no, 2+ shapes).
    """
    ordered = sorted(scene, key=lambda s: s.x)
    qa: dict[str, list[tuple[str, str]]] = {
        "count": [("how many shapes are there?", NUMBER_WORDS[len(ordered)])],
        "color": [(f"what color is the {s.shape}?", s.color) for s in ordered],
        "shape": [(f"what shape is the {s.color} one?", s.shape) for s in ordered],
        "size": [(f"what size is the {s.label}?", s.size) for s in ordered],
    }
    if len(ordered) >= 2:
        qa["extreme"] = [
            ("what is the leftmost shape?", ordered[0].label),
            ("what is the rightmost shape?", ordered[-1].label),
        ]
        qa["left_of"] = [
            (f"is the {a.label} left of the {b.label}?", "yes" if a.x < b.x else "no")
            for a in ordered
            for b in ordered
            if a is not b
        ]
    return qa


QUESTION_KINDS = ("count", "color", "shape", "size", "extreme", "left_of")
_KIND_OF = [
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"how many shapes are there\?", "count"),
        (r"what color is the \w+\?", "color"),
        (r"what shape is the \w+ one\?", "shape"),
        (r"what size is the \w+ \w+\?", "size"),
        (r"what is the (left|right)most shape\?", "extreme"),
        (r"is the \w+ \w+ left of the \w+ \w+\?", "left_of"),
    )
]


def question_kind(question: str) -> str | None:
    """The kind (`questions`) of a question of the grammar; None for any other text."""
    return next((kind for pattern, kind in _KIND_OF if pattern.fullmatch(question)), None)


def pick_question(scene: Sequence[Shape], rng: random.Random) -> tuple[str, str]:
    """One (question, answer): a kind uniformly, then one question of that kind.

    Choosing the kind first keeps the kinds balanced; otherwise the many yes/no pairs
    of a three-shape scene would crowd out counting.
    """
    qa = questions(scene)
    return rng.choice(qa[rng.choice(sorted(qa))])
