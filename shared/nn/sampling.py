"""Next-token sampling: temperature, top-k and top-p (nucleus, Holtzman et al. 2019).

temperature = 0 means greedy (argmax). Top-k keeps the k most likely tokens; top-p keeps
the smallest set whose probability reaches p (the most likely token is always kept).
"""

from __future__ import annotations

import torch


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, V) -> token ids (B,)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already reaches p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def decode_step(
    logits: torch.Tensor,
    done: torch.Tensor,
    eos_id: int | None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    vocab_limit: int | None = None,
) -> torch.Tensor:
    """One step of a decoding loop: logits (B, V) -> next ids (B,).

    Samples among ids below `vocab_limit` (the tokenizer's size when the embedding has spare
    rows); rows already finished (`done`, (B,) bool) repeat `eos_id`, and rows that sample it
    are marked in `done`, in place.
    """
    if vocab_limit is not None:
        logits = logits[:, :vocab_limit]
    nxt = sample_next(logits, temperature, top_k, top_p, generator)
    if eos_id is not None:
        nxt = nxt.masked_fill(done, eos_id)
        done |= nxt == eos_id
    return nxt
