"""N-best captions re-ranked by SigLIP: the captioner proposes, the contrastive model chooses.

A captioner decodes left to right, so after "a small red" its language prior ("red" was always
followed by "circle" in training) can outvote the image; SigLIP scores a whole caption against
the whole image at once. Re-ranking N candidates by the SigLIP logit exp(t) * cos + b (the
"noisy channel" view of captioning: Rohrbach et al., and CLIP re-ranking in DALL-E, Ramesh et al.
2021) picks the candidate the image supports best:

    candidates = {greedy caption} + {N - 1 samples at temperature T}   (duplicates dropped)
    caption = argmax_c  exp(t) * <u(image), v(c)> + b

It can only pick among what the captioner proposes, so it helps as far as sampling reaches the
right caption, and as far as SigLIP itself tells the candidates apart. Samples rarely reach a
held-out colour-shape pair, so `substitution_search` proposes differently: the greedy caption's
single-token substitutions, searched a sweep at a time (the default of `vision-lm caption --rerank`;
BENCHMARKS.md: held-out test exact 0.06 -> 0.29, against 0.12 for 8 samples).

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
    greedy = caption_images(model, tok, pixels, prompts, max_new_tokens, **sampling)  # temperature 0
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
def siglip_rerank(
    siglip, tokenizer, pixels: torch.Tensor, candidates: list[list[str]], as_read=None
) -> list[str]:
    """SigLIP model + its tokenizer, pixels (B, 3, S, S) at SigLIP's image size, B candidate lists ->
    the best candidate of each image by the SigLIP logit (the first on ties). as_read: texts -> the
    texts SigLIP reads (`LoadedCaptioner.readable`: a shape-first captioner's in the grammar's order)."""
    img = siglip.encode_image(pixels)  # (B, E)
    encoder = TextEncoder(tokenizer, siglip.config.text.max_len)
    best = []
    for b, texts in enumerate(candidates):
        ids = encoder.captions((as_read or list)(texts)).to(pixels.device)  # (N, max_len)
        logits = siglip.logits(img[b : b + 1], siglip.encode_text(ids))[0]  # (N,)
        best.append(texts[int(logits.argmax())])
    return best


@torch.no_grad()
def substitution_search(
    model,
    tok,
    siglip,
    siglip_tok,
    pixels: torch.Tensor,
    siglip_pixels: torch.Tensor,
    captions: list[str],
    top_k: int = 4,
    sweeps: int = 3,
    form_weight: float = 1.0,
    content_weight: float = 0.5,
    contrast: float = 0.0,
    as_read=None,
) -> list[str]:
    """Greedy captions improved one token at a time, the content chosen by SigLIP, the form by the captioner.

    pixels (B, 3, H, W) for the captioner, siglip_pixels (B, 3, S, S) for SigLIP, B captions (the
    greedy ones). Each sweep reads the captioner's own top_k alternatives at every position of the
    current caption (one teacher-forced pass), scores every single-token substitution, and keeps the
    best if it beats the current caption:

        score(c') = exp(t) * <u(image), v(c')> + b  +  form_weight * sum_{j > i} [log p(c'_j | image, c'_<j)
                                                                      - log p(c_j | image, c_<j)]
                    + content_weight * [log p(c'_i | image, c'_<i) - log p(c_i | image, c_<i)]

    where i is the substituted position. The second term is the captioner's likelihood of what
    follows the change, against that of the current caption (its grammar: "a small green triangle
    left of" reads on, "blue large green" does not). The third is its vote on the changed token
    itself, weighted down: that is where its language prior ("green" never preceded "triangle" in
    training) outvotes the image, but it also knows which object an attribute belongs to, which
    SigLIP (one pooled vector) does not. Tuned on the validation columns of the shapes report:
    content_weight 0.5 keeps a captioner's right multi-object captions (seen exact 0.56 -> 0.79
    against 0) and still lets SigLIP name held-out pairs in one-object scenes (BENCHMARKS.md).

    contrast: alpha > 0 makes the content term contrastive (`caption_generate.contrastive_logits`):
    (1 + alpha) times the changed token's log-probability difference minus alpha times that of the
    decoder's prior, read with zero image tokens. The captioner then votes with what the image adds:
    it still knows which object an attribute belongs to, without its prior against held-out pairs.
    The form term and the alternatives proposed stay those of the plain captioner (contrastive, the form
    term breaks the grammar of right captions: seen exact 0.96 -> 0.77 on one seed).

    as_read: captions -> the texts SigLIP reads (`LoadedCaptioner.readable`: a captioner trained with
    `data.caption_order: shape_first` writes "a small circle red", SigLIP reads "a small red circle");
    the search and its result stay in the captioner's own order.
    """
    from vision_lm.caption_generate import special_ids
    from vision_lm.text_batch import CAPTION_PREFIX

    encoder = TextEncoder(tok, model.config.decoder.max_len)
    sig_encoder = TextEncoder(siglip_tok, siglip.config.text.max_len)
    image_tokens = model.encode_image(pixels)  # (B, N, D)
    sig_img = siglip.encode_image(siglip_pixels)  # (B, E)
    banned = torch.tensor(special_ids(tok) + list(range(tok.vocab_size, model.config.decoder.vocab_size)))

    def suffix_logprobs(rows: list[int], texts: list[str]):
        """Teacher-forced log p of every suffix token (caption and <|eos|>): (len(texts), T), 0 elsewhere;
        the same read with zero image tokens (the prior; None without contrast); prefix lengths; log p."""
        batch = encoder.prefix_suffix_batch([CAPTION_PREFIX] * len(texts), texts)
        ids, suffix = batch["input_ids"], batch["loss_mask"]

        def read(tokens):
            logits = model(pixels[rows], ids, batch["prefix_len"], image_tokens=tokens)
            logp = logits.float().index_fill(-1, banned, float("-inf")).log_softmax(-1)  # (n, T, V)
            out = torch.zeros(ids.shape)
            out[:, 1:] = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # position t - 1 predicts id t
            return out.where(suffix, 0.0), logp  # pads' -inf dropped

        out, logp = read(image_tokens[rows])
        prior = read(torch.zeros_like(image_tokens[rows]))[0] if contrast else None
        return out, prior, batch["prefix_len"], logp

    current = list(captions)
    for _ in range(sweeps):
        lp0, prior0, prefix_len, logp = suffix_logprobs(list(range(len(current))), current)
        rows, cands, changed_at, starts = [], [], [], []
        for b, text in enumerate(current):
            starts.append(len(cands))  # image b's candidates are cands[starts[b] : starts[b + 1]]
            p, ids = int(prefix_len[b]), encoder.ids(text)
            alts = logp[b, p - 1 : p - 1 + len(ids)].topk(top_k, dim=-1).indices.tolist()  # (L, k)
            seen = {text}
            rows.append(b), cands.append(text), changed_at.append(len(ids) + 1)  # nothing changed
            for i, options in enumerate(alts):
                for a in options:
                    new = tok.decode(ids[:i] + [a] + ids[i + 1 :]).strip()
                    if a != tok.eos_id and new not in seen:
                        seen.add(new)
                        rows.append(b), cands.append(new), changed_at.append(i)
        form, content = torch.zeros(len(cands)), torch.zeros(len(cands))
        for s in range(0, len(cands), 512):
            lp, prior, pl, _ = suffix_logprobs(rows[s : s + 512], cands[s : s + 512])
            pos = torch.arange(lp.shape[1])[None]  # suffix token j sits at column prefix_len + j
            col = (pl + torch.tensor(changed_at[s : s + 512]))[:, None]  # the changed token's column
            delta = lp - lp0[rows[s : s + 512]]
            form[s : s + 512] = delta.where(pos > col, 0.0).sum(1)
            if contrast:
                delta = (1 + contrast) * delta - contrast * (prior - prior0[rows[s : s + 512]])
            content[s : s + 512] = delta.where(pos == col, 0.0).sum(1)
        sig_txt = torch.cat([
            siglip.encode_text(sig_encoder.captions((as_read or list)(cands[s : s + 512])))
            for s in range(0, len(cands), 512)
        ])  # fmt: skip
        sig = (siglip.logit_scale.exp() * (sig_img[rows] * sig_txt).sum(-1) + siglip.logit_bias).float()
        score = sig + form_weight * form + content_weight * content
        starts.append(len(cands))
        best = [cands[lo + int(score[lo:hi].argmax())] for lo, hi in zip(starts, starts[1:])]  # first on ties
        if best == current:
            break
        current = best
    return current
