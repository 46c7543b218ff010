"""Token layouts of the vision track's texts, one function per mode.

Contrastive (SigLIP's text tower pools the last position, so every text has the same
fixed length; see `vision_lm/text_tower.py`):

    "a small red circle"  ->  a  small  red  circle  <|eos|>  <|pad|> ... <|pad|>    (max_len ids)

Captioning / VQA (the PaliGemma layout, Beyer et al. 2024; the image tokens come before
these ids in the captioner, so position 0 here follows the last image token):

    prefix "caption en"              suffix "a small red circle"
    <|bos|> caption en <|sep|>  |  a small red circle <|eos|>  |  <|pad|> ...
    `---- prefix_len = 4 ----'     `-- loss_mask = True ---'

The prefix (with the image) is attended bidirectionally, the suffix causally (the
prefix-LM mask, `shared/nn/masks.py`), and only suffix tokens are predicted. VQA uses the
prefix "answer en {question}" and the suffix `answer`, or with `answer_after_caption` the image's
caption, `ANSWER_SEP` and the answer ("a small red circle => red"): a rationale before the answer (Zhang
et al. 2023, "Multimodal chain-of-thought"; BENCHMARKS.md "Answers after the caption": captions and held-out
answers gain; the answer reads the caption only when it weighs more in the loss, `answer_weights`). Such a
captioner's checkpoint says so (`AFTER_CAPTION_KEY`) and its readers keep the answer alone (`answer_of`).
A batch may mix both tasks; its `task` tensor says which each row is (an index into `TASKS`).
"""

from __future__ import annotations

import torch

from shared.tokenizer import Tokenizer

CAPTION_PREFIX = "caption en"
VQA_PREFIX = "answer en {question}"
TASKS = ("caption", "vqa")
"""Row kinds of a captioning/VQA batch; `batch["task"]` holds the index."""
MODE_TASKS = {"contrastive": ("caption",), "captioning": ("caption",), "vqa": ("vqa",), "multitask": TASKS}
"""The row kinds each data mode lays out per record."""


ANSWER_SEP = " => "
"""Between the caption and the answer of an `answer_after_caption` VQA row."""
AFTER_CAPTION_KEY = "answer_after_caption"
"""The captioner checkpoint key (ARCHITECTURE.md section 2), true when its answers follow a caption."""


def row_texts(rec, task: str, answer_after_caption: bool = False) -> tuple[str, str]:
    """(prefix, suffix) of a record in a row of kind `task`: the question and its answer (after the
    record's caption with `answer_after_caption`, where it has one), or the caption."""
    if task == "vqa":
        answer = f"{rec.text}{ANSWER_SEP}{rec.answer}" if answer_after_caption and rec.text else rec.answer
        return VQA_PREFIX.format(question=rec.question), answer
    return CAPTION_PREFIX, rec.text


def answer_of(text: str) -> str:
    """The answer in a VQA suffix written after its caption: what follows the last ANSWER_SEP (all of it
    if none)."""
    return text.rsplit(ANSWER_SEP.strip(), 1)[-1].strip()


def answer_weights(ids: torch.Tensor, loss_mask: torch.Tensor, tok: Tokenizer, weight: float) -> torch.Tensor:
    """(B, T) loss weights: `weight` on the suffix ids after the last ANSWER_SEP of a row (the answer and
    its <|eos|> in a VQA row written after its caption), 1 everywhere else."""
    sep = (ids == tok.encode(ANSWER_SEP.rstrip())[-1]) & loss_mask
    after = sep.flip(1).cumsum(1).flip(1) == 0  # no separator at or after this position
    answer = after & loss_mask & sep.any(1, keepdim=True)
    return 1 + (weight - 1) * answer.float()


CACHE_TEXTS = 100_000
"""Distinct strings an encoder remembers: the shapes language fits; a large real corpus is not held."""


class TextEncoder:
    """Encodes texts with a tokenizer, remembering up to CACHE_TEXTS strings (captions repeat a lot)."""

    def __init__(self, tokenizer: Tokenizer, max_len: int, answer_after_caption: bool = False):
        self.tokenizer, self.max_len = tokenizer, max_len
        self.answer_after_caption = answer_after_caption
        """VQA rows answer after the caption (`row_texts`)."""
        self._cache: dict[str, list[int]] = {}
        self.truncated = 0
        """Texts cut to fit max_len so far."""

    def ids(self, text: str) -> list[int]:
        out = self._cache.get(text)
        if out is None:
            out = self.tokenizer.encode(text)
            if len(self._cache) < CACHE_TEXTS:
                self._cache[text] = out
        return out

    def caption(self, text: str) -> list[int]:
        """Contrastive layout: text + <|eos|>, cut or padded with <|pad|> to exactly max_len ids."""
        tok = self.tokenizer
        ids = self.ids(text) + [tok.eos_id]
        if len(ids) > self.max_len:
            self.truncated += 1
            ids = ids[: self.max_len]
        return ids + [tok.pad_id] * (self.max_len - len(ids))

    def captions(self, texts: list[str]) -> torch.Tensor:
        """(B, max_len) int64."""
        return torch.tensor([self.caption(t) for t in texts], dtype=torch.long)

    def prefix_suffix(self, prefix: str, suffix: str) -> tuple[list[int], int, list[bool]]:
        """Captioning/VQA layout (module docstring): ids, prefix length, loss mask, each max_len long.

        A text too long to fit loses the end of its suffix first (the prompt must survive).
        """
        tok = self.tokenizer
        pre = [tok.bos_id] + self.ids(prefix) + [tok.token_id("<|sep|>")]
        suf = self.ids(suffix) + [tok.eos_id]
        if len(pre) + len(suf) > self.max_len:
            self.truncated += 1
            pre = pre[: self.max_len]
            suf = suf[: self.max_len - len(pre)]
        pad = self.max_len - len(pre) - len(suf)
        mask = [False] * len(pre) + [True] * len(suf) + [False] * pad
        return pre + suf + [tok.pad_id] * pad, len(pre), mask

    def overlong(self, pairs, contrastive: bool) -> tuple[int, int]:
        """(texts that would be cut, the longest layout in tokens) of (record, task) pairs, where a
        record has text, question and answer; nothing is cut or counted in `truncated` here."""
        cut = longest = 0
        for rec, task in pairs:
            if contrastive:
                need = len(self.ids(rec.text)) + 1  # + <|eos|>
            else:
                texts = row_texts(rec, task, self.answer_after_caption)
                need = sum(len(self.ids(t)) for t in texts) + 3  # bos, sep, eos
            cut += need > self.max_len
            longest = max(longest, need)
        return cut, longest

    def prefix_suffix_batch(self, prefixes: list[str], suffixes: list[str]) -> dict[str, torch.Tensor]:
        """input_ids (B, max_len), prefix_len (B,), loss_mask (B, max_len) bool."""
        rows = [self.prefix_suffix(p, s) for p, s in zip(prefixes, suffixes)]
        return {
            "input_ids": torch.tensor([r[0] for r in rows], dtype=torch.long),
            "prefix_len": torch.tensor([r[1] for r in rows], dtype=torch.long),
            "loss_mask": torch.tensor([r[2] for r in rows], dtype=torch.bool),
        }


def drop_suffix_words(
    ids: torch.Tensor, loss_mask: torch.Tensor, tok: Tokenizer, rate: float
) -> torch.Tensor:
    """The captioner's `word_dropout`: ids (B, T) with about `rate` of the suffix's non-special ids
    (loss_mask True) replaced by random non-special ids of the vocabulary; <|eos|> and the prefix stay."""
    special = torch.tensor(sorted(tok.special_tokens.values()), device=ids.device)
    allowed = torch.arange(tok.vocab_size, device=ids.device)
    allowed = allowed[~torch.isin(allowed, special)]
    drop = loss_mask & (torch.rand(ids.shape, device=ids.device) < rate) & ~torch.isin(ids, special)
    random_ids = allowed[torch.randint(len(allowed), ids.shape, device=ids.device)]
    return torch.where(drop, random_ids, ids)
