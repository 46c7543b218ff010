"""The word order a captioner's training captions use (`data.caption_order`; BENCHMARKS.md, issue 13,
"Caption order re-run").

"as_written": the captions as the data has them. "shape_first" (a shapes set): every noun phrase of the
grammar with its shape before its colour, "a small circle red", so that the decoder predicts the shape
before the colour and not from it (held-out colour-shape pairs named 0.36 -> 0.72 of held-out test
captions, greedy, four seeds). Answers that name a pair ("what is the leftmost shape?" -> "red circle")
follow: "circle red" (BENCHMARKS.md, "Answers shape first"). The data module rewrites its records and
stream (`reorder`, `reorder_answers`), the captioner records the order in its checkpoint and refuses
another (`save`, `check`), and readers put generated captions and answers back into the grammar's order
(`readable`: each swap is its own inverse). Checkpoints from before answers followed have no
`answer_order` key: their answers are read as written.
"""

from __future__ import annotations

import dataclasses
import re

from shared.errors import UserError
from vision_lm.text_batch import VQA_PREFIX, answer_of

CAPTION_ORDERS = ("as_written", "shape_first")
KEY = "caption_order"
"""The checkpoint key (ARCHITECTURE.md section 2), present only when the order is not "as_written"."""

ANSWER_KEY = "answer_order"
"""The checkpoint key of the order answers that name a pair were trained in (beside KEY, same rule)."""

_PHRASE = re.compile(r"\ba (small|large) (\w+) (\w+)\b")
_PAIR = re.compile(r"(\w+) (\w+)")


def swap_color_shape(text: str) -> str:
    """Every noun phrase "a SIZE W1 W2" as "a SIZE W2 W1": a caption of the grammar to its shape-first
    form, and back (the function is its own inverse); text without such phrases is returned as it is."""
    return _PHRASE.sub(r"a \1 \3 \2", text)


def reorder(texts: list[str], order: str) -> list[str]:
    """Captions between the grammar's order and `order` (either way)."""
    return [swap_color_shape(t) for t in texts] if order == "shape_first" else texts


def reorder_answers(answers: list[str], order: str) -> list[str]:
    """Answers between the grammar's order and `order`: a two-word answer of the shapes grammar is a pair,
    "red circle" <-> "circle red"; the others (one word) stay."""
    if order == "as_written":
        return answers
    return [a if not _PAIR.fullmatch(a) else " ".join(reversed(a.split())) for a in answers]


def rewrite(text: str, answer: str, order: str) -> tuple[str, str]:
    """A record's caption and answer, as the grammar writes them, in `order`."""
    return reorder([text], order)[0], reorder_answers([answer], order)[0]


def readable(
    texts: list[str], prompts: list[str], order: str, answer_order: str, after_caption: bool = False
) -> list[str]:
    """Generated texts in the grammar's order, each read by its prompt: "answer en ..." an answer (with
    `after_caption`, a captioner trained with `data.answer_after_caption`, the part after its caption)."""
    return [
        reorder_answers([answer_of(t) if after_caption else t], answer_order)[0]
        if p.startswith(VQA_PREFIX.split("{")[0])
        else reorder([t], order)[0]
        for t, p in zip(texts, prompts, strict=True)
    ]


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
        records = []
        for r in split.records:
            text, answer = rewrite(r.text, r.answer, order)
            records.append(dataclasses.replace(r, text=text, answer=answer))
        split.records = records


def save(checkpoint: dict, order: str) -> None:
    if order != "as_written":
        checkpoint[KEY] = checkpoint[ANSWER_KEY] = order


def order_of(checkpoint: dict) -> str:
    """The order a captioner checkpoint was trained in."""
    return checkpoint.get(KEY, "as_written")


def answer_order_of(checkpoint: dict) -> str:
    """The order a captioner checkpoint's answers that name a pair were trained in."""
    return checkpoint.get(ANSWER_KEY, "as_written")


def check(checkpoint: dict, order: str) -> None:
    """Scored in another caption order than it was trained in, every caption would count as wrong."""
    if order != order_of(checkpoint):
        raise UserError(
            f"the checkpoint was trained with data.caption_order {order_of(checkpoint)}; this run sets {order}"
        )
    if order != answer_order_of(checkpoint):
        raise UserError(
            f"the checkpoint was trained with data.caption_order {order} before answers followed it; "
            "evaluate or resume it with the version that trained it, or train it again"
        )
