"""Zero-shot prompts learnt from a data set's own captions, so a model is asked in the words it was trained on.

Zero-shot classification (CLIP, Radford et al. 2021) scores each class name put into prompt
templates. The templates must read like the training captions: a text tower trained on "a scan of
a hand, front view" has never seen the bare label "hand", and scores it near chance. CLIP wrote its
templates by hand for each data set; here they are read off the training captions. Each caption
that contains its record's label (as a whole word or phrase, case ignored) gives a template, the
caption with the label replaced by `{}`:

    label "hand", caption "a scan of a hand, front view"   ->   "a scan of a {}, front view"

Templates are ranked by how many different labels they serve, then how many captions; those that
serve a single label (they carry that class's own context) are kept only when nothing serves two.
The best `MAX_TEMPLATES` are used (the score of a class is that of its best template:
`vision_lm/evaluation.py`). A caption's own braces are doubled so `str.format` leaves them alone.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

MAX_TEMPLATES = 5
MAX_CAPTIONS = 50_000
"""Captions read to find templates (the first ones of the split): enough, and bounded."""


def template_of(caption: str, label: str) -> str | None:
    """The caption with its first whole-word occurrence of `label` replaced by "{}", or None."""
    if not label.strip():
        return None
    m = re.search(rf"(?<!\w){re.escape(label.strip())}(?!\w)", caption, flags=re.IGNORECASE)
    if m is None:
        return None
    esc = lambda s: s.replace("{", "{{").replace("}", "}}")  # noqa: E731
    return esc(caption[: m.start()]) + "{}" + esc(caption[m.end() :])


def derive_templates(pairs: Iterable[tuple[str, str]], max_templates: int = MAX_TEMPLATES) -> list[str]:
    """(caption, label) pairs -> up to `max_templates` templates (module docstring); [] if none fits."""
    count: Counter[str] = Counter()
    labels: dict[str, set[str]] = defaultdict(set)
    for n, (caption, label) in enumerate(pairs):
        if n >= MAX_CAPTIONS:
            break
        t = template_of(caption, label) if caption and label else None
        if t is not None:
            count[t] += 1
            labels[t].add(label.lower())
    ranked = sorted(count, key=lambda t: (-len(labels[t]), -count[t], t))
    shared = [t for t in ranked if len(labels[t]) >= 2]
    return (shared or ranked)[:max_templates]


def dataset_templates(info: dict, train_records) -> list[str]:
    """Zero-shot prompts of data that names none: the shapes set's lone-shape captions, else the templates
    its training captions put their labels into (["{}"], the bare label, when none does)."""
    if info.get("name") == "shapes":
        from vision_lm.shapes_scene import zero_shot_prompts

        return zero_shot_prompts("{}")
    from lightning.pytorch.utilities import rank_zero_info

    found = derive_templates((r.text, r.label) for r in train_records if r.label) or ["{}"]
    rank_zero_info(f"zero-shot prompts from the training captions: {found}")
    return found


def class_names(info: dict, splits) -> list[str]:
    """Class names zero-shot classifies among: dataset_info.json's "classes" (held-out ones included), else
    every label in the splits' records."""
    if info.get("classes"):
        return list(info["classes"])
    return sorted({r.label for s in splits for r in s.records if r.label})
