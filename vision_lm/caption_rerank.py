"""N-best captions re-ranked by SigLIP: the captioner proposes, the contrastive model chooses.

A captioner decodes left to right, so after "a small red" its language prior ("red" was always
followed by "circle" in training) can outvote the image; SigLIP scores a whole caption against
the whole image at once. Re-ranking N candidates by the SigLIP logit exp(t) * cos + b (the
"noisy channel" view of captioning: Rohrbach et al., and CLIP re-ranking in DALL-E, Ramesh et al.
2021) picks the candidate the image supports best:

    candidates = {greedy caption} + {N - 1 samples at temperature T}   (duplicates dropped)
    caption = argmax_c  exp(t) * <u(image), v(c)> + b

It can only pick among what the captioner proposes, so it helps as far as sampling reaches the
right caption, and as far as SigLIP itself tells the candidates apart.

Shapes: B images, N candidates per image, E SigLIP embedding size.
"""

from __future__ import annotations

import torch

from vision_lm.caption_generate import caption_images
from vision_lm.text_batch import TextEncoder


def n_best(
    model,
    tok,
    pixels: torch.Tensor,
    prompts: list[str],
    n: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    max_new_tokens: int = 32,
    **sampling,
) -> list[list[str]]:
    """pixels (B, 3, H, W) -> B lists of distinct candidates, the greedy one first, then up to n - 1
    samples at `temperature` (> 0)."""
    greedy = caption_images(model, tok, pixels, prompts, max_new_tokens)
    out = [[g] for g in greedy]
    if n > 1:
        reps = n - 1
        samples = caption_images(
            model,
            tok,
            pixels.repeat_interleave(reps, 0),  # (B * (n - 1), 3, H, W)
            [p for p in prompts for _ in range(reps)],
            max_new_tokens,
            temperature=temperature,
            generator=generator,
            **sampling,
        )
        for b in range(len(out)):
            for s in samples[b * reps : (b + 1) * reps]:
                if s not in out[b]:
                    out[b].append(s)
    return out


@torch.no_grad()
def siglip_rerank(siglip, tokenizer, pixels: torch.Tensor, candidates: list[list[str]]) -> list[str]:
    """SigLIP model + its tokenizer, pixels (B, 3, S, S) at SigLIP's image size, B candidate lists ->
    the best candidate of each image by the SigLIP logit (the first on ties)."""
    img = siglip.encode_image(pixels)  # (B, E)
    encoder = TextEncoder(tokenizer, siglip.config.text.max_len)
    best = []
    for b, texts in enumerate(candidates):
        ids = encoder.captions(texts).to(pixels.device)  # (N, max_len)
        logits = siglip.logits(img[b : b + 1], siglip.encode_text(ids))[0]  # (N,)
        best.append(texts[int(logits.argmax())])
    return best
