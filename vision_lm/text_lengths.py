"""No caption or answer is cut silently: texts longer than the model's text length are counted and named
in one warning per split (issue 13 item 4). The data module calls `warn_overlong` when it builds a split.
"""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_warn

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from vision_lm.caption_generate import prompt_ids
from vision_lm.image_dataset import ImageTextDataset
from vision_lm.text_batch import CAPTION_PREFIX, TextEncoder

CHECK_TEXTS = 20_000
"""Training texts whose token length is checked at setup (evaluation splits: all of them)."""


def warn_overlong(
    where: str,
    split: str,
    ds: ImageTextDataset,
    tokenizer: Tokenizer,
    max_len: int,
    contrastive: bool,
    answer_after_caption: bool = False,
) -> None:
    """Warn once, clearly, when texts do not fit max_len: they would be cut in training and scored
    cut in evaluation. Evaluation splits are checked in full, training on its first CHECK_TEXTS."""
    limit = CHECK_TEXTS if split == "train" else len(ds)
    pairs = [p for _, p in zip(range(limit), ds.pairs())]
    cut, longest = TextEncoder(tokenizer, max_len, answer_after_caption).overlong(pairs, contrastive)
    if cut:
        checked = f"{len(pairs)}" + (" (the first)" if len(ds) > limit else "")
        rank_zero_warn(
            f"{where} {split}: {cut} of {checked} texts are longer than max_len={max_len} "
            f"tokens (the longest needs {longest}) and are cut"
            + ("; evaluation scores the cut texts" if split != "train" else "")
            + f": raise the model's text max_len to {longest} to keep them whole"
        )


def check_decoder_lengths(tok: Tokenizer, decoder, max_new_tokens: int) -> None:
    """The captioner's decoder against its data's tokenizer: a warning when generation may cut a caption
    (evaluation must never cut what it scores), one UserError when the vocabulary does not fit."""
    # the longest suffix (+ <|eos|>) a row holds
    longest = decoder.max_len - len(prompt_ids(tok, CAPTION_PREFIX))
    if max_new_tokens < longest:
        rank_zero_warn(
            f"max_new_tokens={max_new_tokens} can cut generated captions: a caption of up to "
            f"{longest} tokens fits decoder.max_len={decoder.max_len}; raise it to {longest}"
        )
    if tok.vocab_size > decoder.vocab_size:
        raise UserError(
            f"the tokenizer has {tok.vocab_size} tokens but model.config.decoder.vocab_size "
            f"is {decoder.vocab_size}; raise it to at least {tok.vocab_size}"
        )
