"""Scenes of the synthetic "shapes" data set: sampling, captions, labels (questions: `shapes_questions`).

A scene is a short list of shapes, each a `Shape(shape, color, size, x, y, radius)`
with its centre `(x, y)` in pixels and the radius of the circle it is drawn inside.
Everything a model is asked about is derived from this description, never from the
pixels, so each caption and answer is true by construction. This module is pure
Python (no Pillow, no numpy); `vision_lm.shapes` renders scenes and writes folders.

Rules that keep the language exact and unambiguous:
- 1-3 shapes per scene, each of a different shape type and a different colour, so
  "the circle" or "the red one" always names exactly one object and captions never
  need plurals ("two red circles").
- Shapes never overlap (their bounding circles keep a gap) and their centres are at
  least `image_size // 8` pixels apart horizontally, so "left of" is visible.
- Shapes are listed left to right (increasing `x`), the one canonical order.

Caption grammar (exact; captions are compared by exact match):
    phrase  := "a" SIZE COLOR SHAPE                 e.g. "a small red circle"
    1 shape := phrase                               "a large green triangle"
    2 shapes:= phrase "left of" phrase              "a small red circle left of a large blue square"
    3 shapes:= phrase "," phrase "and" phrase       "a small red circle, a large blue square and a small yellow diamond"

Held-out combinations (generalisation, not memorisation): the (colour, shape) pairs
in `HELD_OUT` never appear in train or val scenes, and every test scene contains at
least one. Each held-out colour and shape still appears in training, only never
together, so a model must compose "green" and "triangle" it learnt separately.
`VAL_HELD_OUT` is a further pair absent from training, shown in half of the validation
scenes (the odd ones) so that model selection can watch composition without ever looking
at the test pairs. `in_training(colour, shape)` is the one test of what training may show:
images, captions, questions and any negative caption a loss builds.

How scenes look (hues, radii, backgrounds, training-only colours and shapes) is
`vision_lm/shapes_style.py`; a `Shape` carries its own fill (`rgb`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from vision_lm.shapes_style import (
    CANONICAL,
    EXTRA_COLORS,
    EXTRA_SHAPES,
    Diversity,
    centre_rgb,
    jittered_radius,
    jittered_rgb,
)

VERSION = 2
"""Bump when sampling, rendering or text changes, so old folders are not reused.
2: diverse training scenes (`shapes_style`), the validation held-out pair, `rgb`, `background`
and `held_out` in the metadata; test images are byte-identical to version 1's."""
RNG_KEY = "shapes-v1"
"""Namespace of the per-image random generators; kept at v1 so that test images stay the same."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 150, 40),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 0),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
"""Colour names and their RGB fill, chosen far apart so that a 64 px image leaves no doubt."""

# A star was left out on purpose: at 64 px a small star (about 12 px across) is a blob.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
HELD_OUT: tuple[str, ...] = ("green triangle", "red square", "blue circle")
"""Colour-shape labels that appear only in the test split."""
VAL_HELD_OUT: tuple[str, ...] = ("orange diamond",)
"""Absent from training too; in the odd validation scenes, for model selection (never a test pair)."""
NOT_IN_TRAINING: frozenset[str] = frozenset(HELD_OUT + VAL_HELD_OUT)
SCENE_KINDS = ("train", "val_held_out", "test")

MAX_SHAPES = 3
_RADIUS_FRACTION = {"small": 0.10, "large": 0.17}  # of the image side


@dataclasses.dataclass(frozen=True)
class Shape:
    """One object of a scene: what it is, and where it is (pixels, origin top-left)."""

    shape: str
    color: str
    size: str
    x: int
    y: int
    radius: int
    """Radius in pixels of the circle the shape is drawn inside (its extent)."""
    rgb: tuple[int, int, int] | None = None
    """Fill colour; None: the canonical `COLORS[color]`."""

    @property
    def fill(self) -> tuple[int, int, int]:
        return tuple(self.rgb) if self.rgb is not None else COLORS[self.color]

    @property
    def label(self) -> str:
        """The class string, "<colour> <shape>", e.g. "red circle"."""
        return f"{self.color} {self.shape}"

    @property
    def phrase(self) -> str:
        """The noun phrase of the caption, e.g. "a small red circle"."""
        return f"a {self.size} {self.color} {self.shape}"


def class_names(include_held_out: bool = True) -> list[str]:
    """All "<colour> <shape>" labels, colours outer, shapes inner, in constant order."""
    names = [f"{c} {s}" for c in COLORS for s in SHAPES]
    return names if include_held_out else [n for n in names if n not in HELD_OUT]


def in_training(color: str, shape: str) -> bool:
    """May training show a `color` `shape`? False for the test and validation held-out pairs."""
    return f"{color} {shape}" not in NOT_IN_TRAINING


def color_names(div: Diversity = CANONICAL) -> list[str]:
    """Colours scenes draw from: the named six, plus the training-only extras when asked."""
    return [*COLORS, *(EXTRA_COLORS if div.extra_colors else ())]


def shape_names(div: Diversity = CANONICAL) -> list[str]:
    return [*SHAPES, *(EXTRA_SHAPES if div.extra_shapes else ())]


def zero_shot_prompt(label: str) -> str:
    """The text a zero-shot classifier scores for `label`: the caption grammar minus the size.

    "red circle" -> "a red circle". Training captions always carry a size, so this prompt
    is one step out of distribution; `zero_shot_prompts` gives the two in-distribution
    captions of a lone shape for prompt ensembling (average their normalised text
    embeddings, as CLIP does with its templates).
    """
    return f"a {label}"


def zero_shot_prompts(label: str) -> list[str]:
    """The exact captions a scene holding one shape of class `label` can get, one per size."""
    return [f"a {size} {label}" for size in SIZES]


def radius_px(size: str, image_size: int) -> int:
    """Pixel radius of a `size` shape in an `image_size` image (at least 2 px)."""
    return max(2, round(_RADIUS_FRACTION[size] * image_size))


def _place(rng: random.Random, kinds: Sequence[tuple], image_size: int) -> list[Shape] | None:
    """Rejection-sample non-overlapping positions for (shape, color, size, radius, rgb) kinds;
    None when a shape found no room."""
    gap = max(1, image_size // 32)  # background between two shapes' bounding circles
    min_dx = max(2, image_size // 8)  # horizontal distance that makes "left of" visible
    placed: list[Shape] = []
    for shape, color, size, r, rgb in kinds:
        for _ in range(100):
            x = rng.randint(r + 1, image_size - 2 - r)
            y = rng.randint(r + 1, image_size - 2 - r)
            if all(
                (x - o.x) ** 2 + (y - o.y) ** 2 >= (r + o.radius + gap) ** 2 and abs(x - o.x) >= min_dx
                for o in placed
            ):
                placed.append(Shape(shape, color, size, x, y, r, rgb))
                break
        else:
            return None
    return sorted(placed, key=lambda s: s.x)


def sample_scene(
    rng: random.Random, image_size: int, kind: str = "train", div: Diversity = CANONICAL
) -> list[Shape]:
    """Draw a scene: 1-3 shapes of distinct types and colours, sorted left to right.

    kind "train": no shape is a pair `in_training` refuses; "val_held_out": one shape, in a
    random slot, is a `VAL_HELD_OUT` pair and the others are allowed in training; "test": one
    shape is a `HELD_OUT` pair and the others are unconstrained. `div` says how varied the
    shapes look; `CANONICAL` draws nothing more from `rng` than version 1 did, so canonical
    scenes of the same generator are those of version 1.
    """
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}")
    colors_all, shapes_all = color_names(div), shape_names(div)
    while True:
        n = rng.randint(1, MAX_SHAPES)
        if kind == "train":
            shapes, colors = rng.sample(shapes_all, n), rng.sample(colors_all, n)
            if not all(in_training(c, s) for c, s in zip(colors, shapes)):
                continue
        else:
            first_color, first_shape = rng.choice(HELD_OUT if kind == "test" else VAL_HELD_OUT).split(" ")
            shapes = [first_shape] + rng.sample([s for s in shapes_all if s != first_shape], n - 1)
            colors = [first_color] + rng.sample([c for c in colors_all if c != first_color], n - 1)
            if kind == "val_held_out" and not all(in_training(c, s) for c, s in zip(colors[1:], shapes[1:])):
                continue
        kinds = [(s, c, rng.choice(SIZES)) for s, c in zip(shapes, colors)]
        rng.shuffle(kinds)  # the held-out shape must not always be placed first
        kinds = [
            (
                s,
                c,
                size,
                jittered_radius(rng, size, image_size) if div.size_jitter else radius_px(size, image_size),
                jittered_rgb(rng, c) if div.colour_jitter else COLORS.get(c) or centre_rgb(c),
            )
            for s, c, size in kinds
        ]
        scene = _place(rng, kinds, image_size)
        if scene is not None:
            return scene


def held_out_in(scene: Sequence[Shape]) -> list[str]:
    """The scene's colour-shape labels that training never shows (empty for a training scene)."""
    return [s.label for s in scene if not in_training(s.color, s.shape)]


def caption(scene: Sequence[Shape]) -> str:
    """The canonical caption (grammar in the module docstring), shapes left to right."""
    phrases = [s.phrase for s in sorted(scene, key=lambda s: s.x)]
    if len(phrases) == 1:
        return phrases[0]
    if len(phrases) == 2:
        return f"{phrases[0]} left of {phrases[1]}"
    return ", ".join(phrases[:-1]) + f" and {phrases[-1]}"


def label(scene: Sequence[Shape]) -> str:
    """The scene's class for zero-shot: the largest shape, ties going to the leftmost.

    Only single-shape scenes make this unambiguous; evaluate zero-shot accuracy on
    those, or accept that a classifier may name another shape of a busy scene.
    """
    ordered = sorted(scene, key=lambda s: s.x)
    return max(ordered, key=lambda s: s.radius).label  # max keeps the first of equals


def scene_to_json(scene: Sequence[Shape]) -> list[dict]:
    """The scene as JSON-ready dicts, left to right."""
    return [{**dataclasses.asdict(s), "rgb": list(s.fill)} for s in sorted(scene, key=lambda s: s.x)]


def scene_from_json(items: Sequence[dict]) -> list[Shape]:
    """Inverse of `scene_to_json`."""
    return [Shape(**{**item, "rgb": tuple(item["rgb"]) if item.get("rgb") else None}) for item in items]
