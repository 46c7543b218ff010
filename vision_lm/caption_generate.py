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

With `contrast` > 0 (contrastive decoding, below) every prompt runs twice, with its image and with
all-zero image tokens, as rows B..2B-1 of the same batch; both read the same chosen tokens.

Shapes: B prompts, N image tokens, P longest prompt, S = N + P + max_new_tokens.
"""

from __future__ import annotations

import math

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
    contrast: float = 0.0,
    plausibility: float = 0.1,
) -> list[list[int]]:
    """pixels (B, 3, H, W) and B prompts (prefix ids) -> B lists of new ids, each cut before <|eos|>.

    temperature 0 is greedy. use_cache=False re-runs the decoder over the whole sequence at
    each step (the slow reference path; the image tokens are still computed once).
    image_tokens: `model.encode_image(pixels)` when the caller already has it. vocab_limit: sample
    only ids below it (the tokenizer's size when the embedding table has spare rows). banned_ids: ids never
    generated (`special_ids`: the special tokens other than <|eos|>, which no caption or answer holds).
    contrast, plausibility: `contrastive_logits`' alpha and beta (contrast 0: the plain decoder).
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
    if contrast:  # rows B.. are the prompts again without the image (zero image tokens)
        img, ids, keep = torch.cat([img, torch.zeros_like(img)]), ids.repeat(2, 1), keep.repeat(2, 1)
    R = ids.shape[0]  # rows decoded: B, or 2B with contrast
    txt = model.embed_text(ids)  # (R, P, D)
    x = torch.cat([img.to(txt.dtype), txt], dim=1)  # (R, N + P, D)
    n0 = x.shape[1]
    S = n0 + max_new_tokens
    real = torch.cat([torch.ones(R, img.shape[1], dtype=torch.bool, device=device), keep], dim=1)
    real = torch.cat([real, torch.ones(R, max_new_tokens, dtype=torch.bool, device=device)], dim=1)  # (R, S)
    prompt_len = torch.full((R,), n0, device=device)
    mask = with_key_padding(prefix_lm_mask(prompt_len, S), real)  # (R, 1, S, S)
    positions = (real.cumsum(1) - 1).clamp(min=0)  # (R, S): RoPE positions without the pads

    caches = model.make_kv_caches(R, S, dtype=x.dtype) if use_cache else None
    logits = model.decode(x, mask[:, :, :n0, :n0], caches, 0, positions[:, :n0])[:, -1]  # prefill
    out = torch.empty(B, 0, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    banned = torch.tensor(banned_ids or [], dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        if len(banned):
            logits = logits.index_fill(-1, banned, float("-inf"))  # (R, V)
        if contrast:
            logits = contrastive_logits(logits[:B], logits[B:], contrast, plausibility)  # (B, V)
        nxt = decode_step(logits, done, eos_id, temperature, top_k, top_p, generator, vocab_limit)  # (B,)
        out = torch.cat([out, nxt[:, None]], dim=1)
        if done.all() or step == max_new_tokens - 1:
            break
        c = n0 + step  # the column of the token just sampled
        new = model.embed_text(nxt.repeat(R // B)[:, None]).to(x.dtype)  # (R, 1, D)
        if use_cache:
            logits = model.decode(new, mask[:, :, c : c + 1, : c + 1], caches, c, positions[:, c : c + 1])
        else:
            x = torch.cat([x, new], dim=1)  # (R, c + 1, D)
            logits = model.decode(x, mask[:, :, : c + 1, : c + 1], None, 0, positions[:, : c + 1])
        logits = logits[:, -1]
    return [row[: row.index(eos_id)] if eos_id in row else row for row in out.tolist()]


def contrastive_logits(
    with_image: torch.Tensor, without_image: torch.Tensor, alpha: float, beta: float = 0.1
) -> torch.Tensor:
    """Next-token scores (B, V) with the decoder's language prior taken out: logits (B, V) of the same
    prefixes read with the image and with zero image tokens ->

        score(v) = (1 + alpha) * log p(v | image, text) - alpha * log p(v | text)
                   for the plausible v, p(v | image, text) >= beta * max_u p(u | image, text); -inf elsewhere

    A captioner trained on seen colour-shape pairs learns "green" -> "circle" from the text alone;
    dividing by p(v | text)^alpha (classifier-free guidance, Sanchez et al. 2023; Visual Contrastive
    Decoding, Leng et al., CVPR 2024) lifts what the image adds to the text, so a held-out pair the image
    shows can win. The plausibility cut (Li et al. 2023, Contrastive Decoding) keeps tokens the image-
    conditioned decoder itself finds unlikely out: without it, any token the prior rules out wins.
    BENCHMARKS.md (four captioner seeds, alpha 0.5, beta 0.1): greedy held-out test exact 0.36 -> 0.46,
    seen level at 0.90; with the SigLIP re-rank 0.57 -> 0.64.
    """
    lp = with_image.float().log_softmax(-1)
    prior = without_image.float().log_softmax(-1)
    score = (1 + alpha) * lp - alpha * prior.clamp(min=-1e4)  # a banned id (-inf in both) stays -inf
    cut = lp.max(-1, keepdim=True).values + math.log(beta)
    return score.masked_fill(lp < cut, float("-inf"))


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
