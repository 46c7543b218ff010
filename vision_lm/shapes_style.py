"""How varied the shapes scenes look: hues and tints within each named colour, sizes, backgrounds,
and training-only colours and shapes.

Why: a model that sees each colour-shape pair in one exact RGB, one radius and on one white
background can memorise pairs instead of learning colour and shape as separate factors, and then
names a held-out pair ("green triangle") as a seen one of the same colour. Attribute diversity and
coverage of combinations, not data scale, are what let a model compose unseen pairs (del Rio et al.,
CVPR 2025; Uselis et al., ICML 2025). So training scenes draw, per shape:

- a colour from a region of HSV space around the named colour (hue range, saturation and value
  ranges: shades and tints that a person still gives the same name; the canonical RGB of
  `shapes_scene.COLORS` lies inside each region);
- a radius from a range around the size's canonical one (small 0.08-0.12, large 0.15-0.20 of the
  side: the two never meet, so "small"/"large" stay decidable);
- and per scene a plain background: a light tint of any hue (or, one time in five, a dark grey).

`extra_colors` / `extra_shapes` add names that appear only in training (never in val, test or the
zero-shot classes): more combinations per held-out colour and shape, so "green" is seen on many
shapes and "triangle" in many colours. They are off by default: they enlarge the caption language
a small model must learn, and whether they pay for that is an ablation (BENCHMARKS.md).

Validation and test folders use `CANONICAL` (the exact colours, radii and white background of
version 1), so their numbers compare across versions.
"""

from __future__ import annotations

import colorsys
import dataclasses
import random

from shared.errors import UserError

# name: (hue degrees lo, hi), (saturation lo, hi), (value lo, hi); hue may wrap below 0.
HSV_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-8, 8), (0.65, 1.0), (0.65, 1.0)),
    "green": ((100, 140), (0.55, 1.0), (0.45, 0.9)),
    "blue": ((210, 235), (0.6, 1.0), (0.6, 1.0)),
    "yellow": ((46, 58), (0.75, 1.0), (0.85, 1.0)),
    "purple": ((272, 295), (0.45, 0.85), (0.5, 0.85)),
    "orange": ((22, 35), (0.75, 1.0), (0.85, 1.0)),
}
EXTRA_COLORS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "olive": ((48, 65), (0.6, 1.0), (0.35, 0.55)),
    "lime": ((65, 90), (0.6, 1.0), (0.7, 1.0)),
    "teal": ((150, 170), (0.6, 1.0), (0.45, 0.8)),
    "cyan": ((175, 192), (0.6, 1.0), (0.75, 1.0)),
    "sky": ((195, 206), (0.5, 1.0), (0.75, 1.0)),
    "indigo": ((243, 262), (0.55, 1.0), (0.4, 0.8)),
    "magenta": ((300, 318), (0.6, 1.0), (0.7, 1.0)),
    "pink": ((320, 340), (0.3, 0.55), (0.9, 1.0)),
    "rose": ((340, 350), (0.65, 1.0), (0.5, 0.9)),
    "brown": ((18, 32), (0.55, 0.85), (0.3, 0.5)),
}
"""Training-only colours filling the hue circle between the named regions (none overlaps one): every
shape is then seen at hues on both sides of every named colour, so a shape's features cannot be tied
to the few colours it was drawn in (BENCHMARKS.md, issue 13: three extras left the held-out shape at
chance, this dense set is what moved it)."""
EXTRA_SHAPES: tuple[str, ...] = ("cross", "ring")
"""Training-only shapes, unlike the four named ones even when small (see `shapes.render`)."""
RADIUS_RANGES = {"small": (0.08, 0.12), "large": (0.15, 0.20)}
"""Radius as a fraction of the image side, per size word (canonical: 0.10 and 0.17)."""
WHITE = (255, 255, 255)


@dataclasses.dataclass(frozen=True)
class Diversity:
    """Which variations scenes draw (module docstring). Every field false is `CANONICAL`."""

    colour_jitter: bool = True
    """Hue, saturation and value drawn within each named colour's region."""
    size_jitter: bool = True
    """Radius drawn within each size word's range."""
    backgrounds: bool = True
    """A plain background of a random light tint or dark grey instead of white."""
    extra_colors: bool = False
    """Add `EXTRA_COLORS` (training only)."""
    extra_shapes: bool = False
    """Add `EXTRA_SHAPES` (training only)."""

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "data.stream") -> Diversity:
        """Strict: an unknown key or a non-boolean value is one UserError naming `where.key`."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key, value in (d or {}).items():
            if key not in names:
                raise UserError(f"{where}.{key}: unknown option (known: {', '.join(names)})")
            if not isinstance(value, bool):
                raise UserError(f"{where}.{key} must be true or false, got {value!r}")
        return cls(**(d or {}))

    def to_dict(self) -> dict[str, bool]:
        return dataclasses.asdict(self)


CANONICAL = Diversity(False, False, False, False, False)


def rgb_from_hsv(h_deg: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360) / 360, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def hsv_of(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """(hue degrees in [0, 360), saturation, value) of an RGB triple (tests check the regions)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    return h * 360, s, v


def region(color: str):
    """(hue, saturation, value) ranges of a named or extra colour."""
    return {**HSV_RANGES, **EXTRA_COLORS}[color]


def centre_rgb(color: str) -> tuple[int, int, int]:
    """The middle of a colour's region (the fill of an extra colour without `colour_jitter`)."""
    return rgb_from_hsv(*(sum(r) / 2 for r in region(color)))


def jittered_rgb(rng: random.Random, color: str) -> tuple[int, int, int]:
    """A fill drawn uniformly in hue, saturation and value within the colour's region."""
    (h0, h1), (s0, s1), (v0, v1) = region(color)
    return rgb_from_hsv(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))


def jittered_radius(rng: random.Random, size: str, image_size: int) -> int:
    """A pixel radius drawn within `RADIUS_RANGES[size]` (at least 2 px)."""
    lo, hi = RADIUS_RANGES[size]
    return max(2, round(rng.uniform(lo, hi) * image_size))


def draw_background(rng: random.Random, div: Diversity) -> tuple[int, int, int]:
    """White, or a light tint of any hue (s <= 0.15, v >= 0.8), or one time in five a dark grey."""
    if not div.backgrounds:
        return WHITE
    if rng.random() < 0.2:
        return rgb_from_hsv(rng.uniform(0, 360), rng.uniform(0, 0.1), rng.uniform(0.08, 0.25))
    return rgb_from_hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.8, 1.0))
