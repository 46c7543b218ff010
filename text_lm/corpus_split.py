"""Training and validation parts of the counted sources of `text_lm/corpus.py`.

Validation never shares a document with training: whole sources (files) go to one side.
The rule, in order:
1. `--val-files NAME ...`: those sources (by file name or path).
2. the shipped Shakespeare corpus: hamlet, tempest and twelfth_night (ARCHITECTURE.md section 4).
3. several sources: whole sources from the end of the list sorted by name, until they hold
   `--val-fraction` of the bytes, always leaving one for training. If that would put more
   than half of the bytes in validation (a few files of very different sizes), rule 4 is
   applied to the last source instead and the others all train.
4. one source: its last rows until `--val-fraction` of its bytes; a single document is cut at
   the paragraph break (blank line) nearest to that point, else at a line break, and the
   tail validates. (Held-out text then comes from the same work as the training text; finding
   that cut reads the one document whole, the only case where a file is held in memory.)
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError
from text_lm import corpus_read
from text_lm.corpus import Part, Source


def split_sources(
    sources: list[Source], val_files: list[str] | None, val_fraction: float, text_field: str = "text"
) -> tuple[list[Part], list[Part], str]:
    """(train parts, val parts, the rule used) following the module docstring; never an empty side."""
    sources = [s for s in sources if s.n_docs]
    if val_files:
        val, rule = _match(sources, val_files), f"--val-files {' '.join(val_files)}"
        train = [s for s in sources if s not in val]
        return _whole(train), _whole(val), rule
    if len(sources) >= 2:
        ordered = sorted(sources, key=lambda s: s.name)
        total, target = sum(s.n_bytes for s in ordered), val_fraction * sum(s.n_bytes for s in ordered)
        n_val, acc = 0, 0
        while acc < target and n_val < len(ordered) - 1:
            n_val += 1
            acc += ordered[-n_val].n_bytes
        if acc <= total / 2:
            rule = f"last sources by name holding >= {val_fraction:g} of the bytes"
            return _whole(ordered[:-n_val]), _whole(ordered[-n_val:]), rule
        head, last = ordered[:-1], ordered[-1]
    else:
        head, last = [], sources[0]
    train, val = _split_one(last, val_fraction, text_field)
    return _whole(head) + [train], [val], f"tail of {last.name} holding ~{val_fraction:g} of its bytes"


def _whole(sources: list[Source]) -> list[Part]:
    return [Part(s.name, s, s.n_docs, s.n_bytes) for s in sources]


def _match(sources: list[Source], names: list[str]) -> list[Source]:
    picked = []
    for name in names:
        hits = [s for s in sources if s.name == name or s.name.endswith("/" + name.lstrip("/"))]
        if not hits:
            known = ", ".join(Path(s.name).name for s in sources[:8]) + (", ..." if len(sources) > 8 else "")
            raise UserError(f"--val-files: no input named {name!r} (inputs: {known})")
        picked += [s for s in hits if s not in picked]
    return picked


def _split_one(src: Source, fraction: float, text_field: str) -> tuple[Part, Part]:
    n, b = src.n_docs, src.n_bytes
    if n > 1:  # rows: the last ones, at least one, never all
        m, head = corpus_read.rows_split_point(src, text_field, fraction)
        return (
            Part(f"{src.name}[0:{m}]", src, m, head, 0, m),
            Part(f"{src.name}[{m}:{n}]", src, n - m, b - head, m, n),
        )
    if src.kind == "text":
        text = "".join(corpus_read.iter_text(src.path, can_cut=False))
    else:
        text = next(corpus_read.iter_docs(src, text_field))
    cut = cut_near_end(text, fraction)
    head = len(text[:cut].encode("utf-8", "surrogatepass"))
    del text
    names = f"{src.name}[:{cut}]", f"{src.name}[{cut}:]"
    if src.kind == "text":
        at = src.bom + head
        return Part(names[0], src, 1, head, 0, at), Part(names[1], src, 1, b - head, at, None)
    return (
        Part(names[0], src, 1, head, chars=(0, cut)),
        Part(names[1], src, 1, b - head, chars=(cut, None)),
    )


def cut_near_end(text: str, fraction: float) -> int:
    """A character index that leaves about `fraction` of `text` after it, at a paragraph break if any.

    Breaks in the last half of the text are considered: the blank line nearest to the target
    point, else the nearest line break, else the target point itself.
    """
    want = len(text) - max(1, round(len(text) * fraction))
    lo = len(text) // 2
    for sep in ("\n\n", "\n"):
        before, after = text.rfind(sep, lo, want + len(sep)), text.find(sep, want)
        options = [i for i in (before, after) if i >= lo]
        if options:
            cut = min(options, key=lambda i: abs(i - want)) + len(sep)
            while cut < len(text) and text[cut] in "\r\n":
                cut += 1
            if 0 < cut < len(text):
                return cut
    if not 0 < want < len(text):
        raise UserError(f"{len(text)} characters of text cannot be split into training and validation")
    return want
