"""The captioner judged on records of a folder: its captions (greedy, or chosen by a SigLIP), their
exact-match, BLEU-4 and held-out pair recall, and VQA accuracy. Used by `demo_vision_report`.

Shapes: B images (3, S, S), normalised; a record has text, question and answer.
"""

from __future__ import annotations


def captions_of(
    loaded,
    recs,
    pixels,
    rerank=None,
    n_best: int = 0,
    greedy: list[str] | None = None,
    batch_size: int = 100,
    contrast: float = 0.0,
    plausibility: float = 0.1,
) -> list[str]:
    """Greedy captions of images (B, 3, S, S); with `rerank` = (SigLIP Loaded, its pixels), the best by
    SigLIP (`caption_rerank.py`) of n_best candidates sampled from a fixed seed, or with n_best 0, of
    the greedy captions' token substitutions (`greedy`: those captions, when the caller has them).
    contrast, plausibility: contrastive decoding's alpha and beta (`caption_generate.contrastive_logits`;
    alpha 0: plain); alpha is also that of the substitution search's content term. Captions come back
    in the grammar's order whatever order the captioner was trained in (`LoadedCaptioner.readable`)."""
    import torch

    from vision_lm.caption_generate import caption_images
    from vision_lm.caption_rerank import n_best as propose
    from vision_lm.caption_rerank import siglip_rerank, substitution_search
    from vision_lm.text_batch import CAPTION_PREFIX

    tok, n = loaded.tokenizer, loaded.model.config.decoder.max_len  # a suffix is never longer than max_len
    out: list[str] = []
    generator = torch.Generator().manual_seed(0)
    decoding = dict(contrast=contrast, plausibility=plausibility)
    for start in range(0, len(recs), batch_size):
        px = pixels[start : start + batch_size]
        prompts = [CAPTION_PREFIX] * len(px)
        if rerank is None:
            out += loaded.readable(caption_images(loaded.model, tok, px, prompts, n, **decoding))
            continue
        siglip, siglip_px = rerank
        siglip_px = siglip_px[start : start + batch_size]
        if n_best:
            cands = propose(loaded.model, tok, px, prompts, n_best, 1.0, generator, n, **decoding)
            out += loaded.readable(
                siglip_rerank(siglip.model, siglip.tokenizer, siglip_px, cands, loaded.readable)
            )
        else:
            start_from = (
                loaded.own_order(greedy[start : start + batch_size])
                if greedy
                else caption_images(loaded.model, tok, px, prompts, n, **decoding)
            )
            found = substitution_search(
                loaded.model,
                tok,
                siglip.model,
                siglip.tokenizer,
                px,
                siglip_px,
                start_from,
                contrast=contrast,
                as_read=loaded.readable,
            )
            out += loaded.readable(found)
    return out


def caption_scores(captions: list[str], recs, pairs: list[str]) -> dict[str, float]:
    from torchmetrics.functional.text import bleu_score

    from vision_lm.evaluation import held_out_pair_recall

    truths = [r.text for r in recs]
    hits = [p == t for p, t in zip(captions, truths)]
    scores = {
        "caption_exact": sum(hits) / len(recs),
        "bleu": float(bleu_score(captions, [[t] for t in truths], n_gram=4)),
        "held_out_pair_recall": held_out_pair_recall(captions, truths, pairs),
    }
    # binding shows only where an image holds several objects: exact-match apart on the two kinds (nan if none)
    for key, single in (("caption_exact_one", True), ("caption_exact_several", False)):
        kind = [h for h, r in zip(hits, recs) if r.single == single]
        scores[key] = sum(kind) / len(kind) if kind else float("nan")
    return scores


def vqa_scores(
    loaded, recs, pixels, kind_of=None, batch_size: int = 100, contrast: float = 0.0
) -> dict[str, float]:
    """{"vqa_acc": accuracy over the records with a question}, and with `kind_of` (question -> kind or
    None, e.g. `shapes_questions.question_kind`) the accuracy of each kind as "vqa_acc KIND"."""
    from vision_lm.caption_generate import caption_images
    from vision_lm.text_batch import VQA_PREFIX

    qa = [i for i, r in enumerate(recs) if r.question and r.answer]
    hits, n = [], loaded.model.config.decoder.max_len  # an answer is never cut
    for start in range(0, len(qa), batch_size):
        rows = qa[start : start + batch_size]
        prompts = [VQA_PREFIX.format(question=recs[i].question) for i in rows]
        answers = caption_images(loaded.model, loaded.tokenizer, pixels[rows], prompts, n, contrast=contrast)
        hits += [a == recs[i].answer for a, i in zip(loaded.readable(answers, prompts), rows)]
    scores = {"vqa_acc": sum(hits) / max(1, len(qa))}
    by_kind: dict[str, list[bool]] = {}
    for i, hit in zip(qa, hits):
        kind = kind_of(recs[i].question) if kind_of else None
        if kind is not None:
            by_kind.setdefault(kind, []).append(hit)
    return scores | {f"vqa_acc {k}": sum(v) / len(v) for k, v in sorted(by_kind.items())}
