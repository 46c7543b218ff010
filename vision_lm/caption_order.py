"""The word order a captioner's training captions use (`data.caption_order`; BENCHMARKS.md, issue 13,
"Caption order re-run").

"as_written": the captions as the data has them. "shape_first" (a shapes set): every noun phrase of the
grammar with its shape before its colour, "a small circle red", so that the decoder predicts the shape
before the colour and not from it (held-out colour-shape pairs named 0.36 -> 0.72 of held-out test
captions, greedy, four seeds). The data module rewrites its records and stream (`reorder`), the captioner
records the order in its checkpoint and refuses another (`save`, `check`), and readers put generated
captions back into the grammar's order (`reorder` again: the swap is its own inverse).
"""

from __future__ import annotations

import dataclasses
import re

from shared.errors import UserError

CAPTION_ORDERS = ("as_written", "shape_first")
KEY = "caption_order"
"""The checkpoint key (ARCHITECTURE.md section 2), present only when the order is not "as_written"."""

_PHRASE = re.compile(r"\ba (small|large) (\w+) (\w+)\b")


def swap_color_shape(text: str) -> str:
    """Every noun phrase "a SIZE W1 W2" as "a SIZE W2 W1": a caption of the grammar to its shape-first
    form, and back (the function is its own inverse); text without such phrases is returned as it is."""
    return _PHRASE.sub(r"a \1 \3 \2", text)


def reorder(texts: list[str], order: str) -> list[str]:
    """Captions between the grammar's order and `order` (either way)."""
    return [swap_color_shape(t) for t in texts] if order == "shape_first" else texts


def check_setting(order: str, mode: str) -> None:
    """`data.caption_order` for data in `mode`: one UserError for an unknown order or a SigLIP run."""
    if order not in CAPTION_ORDERS:
        raise UserError(f"data.caption_order must be one of {', '.join(CAPTION_ORDERS)}, got {order!r}")
    if order != "as_written" and mode == "contrastive":
        raise UserError("data.caption_order is for the captioner (data.mode captioning, vqa or multitask)")


def reorder_splits(splits: dict, info: dict, order: str, where: str) -> None:
    """Rewrite every split's record texts into `order` in place (a shapes set only)."""
    if order == "as_written":
        return
    if info.get("name") != "shapes":
        raise UserError(f"data.caption_order {order} rewrites shapes captions; {where} is not a shapes set")
    for split in splits.values():
        split.records = [dataclasses.replace(r, text=swap_color_shape(r.text)) for r in split.records]


def save(checkpoint: dict, order: str) -> None:
    if order != "as_written":
        checkpoint[KEY] = order


def order_of(checkpoint: dict) -> str:
    """The order a captioner checkpoint was trained in."""
    return checkpoint.get(KEY, "as_written")


def check(checkpoint: dict, order: str) -> None:
    """Scored in another caption order than it was trained in, every caption would count as wrong."""
    if order != order_of(checkpoint):
        raise UserError(
            f"the checkpoint was trained with data.caption_order {order_of(checkpoint)}; this run sets {order}"
        )
