"""Captioning and VQA: the image and the prompt are encoded once (prefill), then the answer is
decoded one token at a time with the KV cache.

Batched prompts of different lengths are left-padded inside the text region, so every
row's prompt ends in the same column and the new tokens of all rows are written to the
same cache slot:

    columns:   0 .. N-1        N ..              N+P-1 | N+P ..
    row 0:     img ... img     <pad> <bos> caption en <sep> | a small red circle <eos>
    row 1:     img ... img     <bos> answer en what ... <sep> | red <eos> ...

Pad keys are masked out (`with_key_padding`) and RoPE positions skip the pads
(`positions` = running count of real tokens), so a padded row computes exactly what it
would alone. One (B, 1, S, S) mask for the whole run is built up front; the prefill reads
its top-left block, decoding step c its row c. The vision tower runs once per call.

Shapes: B prompts, N image tokens, P longest prompt, S = N + P + max_new_tokens.
"""

from __future__ import annotations

import torch

from shared.nn.masks import prefix_lm_mask, with_key_padding
from shared.nn.sampling import decode_step
from shared.tokenizer import Tokenizer
from vision_lm.paligemma import PaliGemma
from vision_lm.text_batch import CAPTION_PREFIX


def prompt_ids(tok: Tokenizer, prompt: str = CAPTION_PREFIX) -> list[int]:
    """The prefix ids of the training layout: <|bos|> prompt <|sep|>."""
    return [tok.bos_id, *tok.encode(prompt), tok.token_id("<|sep|>")]


@torch.inference_mode()  # RoPE tables grown here are rebuilt before training uses them (shared/nn/rope.py)
def generate(
    model: PaliGemma,
    pixels: torch.Tensor,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    image_tokens: torch.Tensor | None = None,
    vocab_limit: int | None = None,
    banned_ids: list[int] | None = None,
) -> list[list[int]]:
    """pixels (B, 3, H, W) and B prompts (prefix ids) -> B lists of new ids, each cut before <|eos|>.

    temperature 0 is greedy. use_cache=False re-runs the decoder over the whole sequence at
    each step (the slow reference path; the image tokens are still computed once).
    image_tokens: `model.encode_image(pixels)` when the caller already has it. vocab_limit: sample
    only ids below it (the tokenizer's size when the embedding table has spare rows). banned_ids: ids never
    generated (`special_ids`: the special tokens other than <|eos|>, which no caption or answer holds).
    """
    B, device = len(prompts), pixels.device
    P = max(len(p) for p in prompts)
    ids = torch.full((B, P), pad_id, dtype=torch.long, device=device)
    keep = torch.zeros(B, P, dtype=torch.bool, device=device)
    for b, p in enumerate(prompts):
        ids[b, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        keep[b, P - len(p) :] = True
    img = (
        model.encode_image(pixels) if image_tokens is None else image_tokens
    )  # (B, N, D): the only tower call
    txt = model.embed_text(ids)  # (B, P, D)
    x = torch.cat([img.to(txt.dtype), txt], dim=1)  # (B, N + P, D)
    n0 = x.shape[1]
    S = n0 + max_new_tokens
    real = torch.cat([torch.ones(B, img.shape[1], dtype=torch.bool, device=device), keep], dim=1)
    real = torch.cat([real, torch.ones(B, max_new_tokens, dtype=torch.bool, device=device)], dim=1)  # (B, S)
    prompt_len = torch.full((B,), n0, device=device)
    mask = with_key_padding(prefix_lm_mask(prompt_len, S), real)  # (B, 1, S, S)
    positions = (real.cumsum(1) - 1).clamp(min=0)  # (B, S): RoPE positions without the pads

    caches = model.make_kv_caches(B, S, dtype=x.dtype) if use_cache else None
    logits = model.decode(x, mask[:, :, :n0, :n0], caches, 0, positions[:, :n0])[:, -1]  # prefill
    out = torch.empty(B, 0, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    banned = torch.tensor(banned_ids or [], dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        if len(banned):
            logits = logits.index_fill(-1, banned, float("-inf"))  # (B, V)
        nxt = decode_step(logits, done, eos_id, temperature, top_k, top_p, generator, vocab_limit)  # (B,)
        out = torch.cat([out, nxt[:, None]], dim=1)
        if done.all() or step == max_new_tokens - 1:
            break
        c = n0 + step  # the column of the token just sampled
        new = model.embed_text(nxt[:, None]).to(x.dtype)  # (B, 1, D)
        if use_cache:
            logits = model.decode(new, mask[:, :, c : c + 1, : c + 1], caches, c, positions[:, c : c + 1])
        else:
            x = torch.cat([x, new], dim=1)  # (B, c + 1, D)
            logits = model.decode(x, mask[:, :, : c + 1, : c + 1], None, 0, positions[:, : c + 1])
        logits = logits[:, -1]
    return [row[: row.index(eos_id)] if eos_id in row else row for row in out.tolist()]


def special_ids(tok: Tokenizer) -> list[int]:
    """The special tokens other than <|eos|> (<|bos|>, <|sep|>, <|pad|>, <image>, ...): never part of a text."""
    return sorted(i for i in tok.special_tokens.values() if i != tok.eos_id)


def caption_images(
    model: PaliGemma,
    tok: Tokenizer,
    pixels: torch.Tensor,
    prompts: list[str],
    max_new_tokens: int = 32,
    **sampling,
) -> list[str]:
    """Texts generated for images (B, 3, H, W) and one prompt string per image ("caption en",
    "answer en what color is the circle?")."""
    ids = [prompt_ids(tok, p) for p in prompts]
    new = generate(
        model, pixels, ids, max_new_tokens, tok.eos_id, tok.pad_id, vocab_limit=tok.vocab_size,
        banned_ids=special_ids(tok), **sampling,
    )  # fmt: skip
    return [tok.decode(row).strip() for row in new]
