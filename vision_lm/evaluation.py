"""Zero-shot classification and image-text retrieval, the two ways a contrastive model is judged.

Zero-shot (CLIP, Radford et al. 2021): put each class name into a few prompt templates
("a small {}", "a large {}"), embed them, and give each image the class with the highest
score, where a class's score is that of its best-matching template. No classifier is
trained, so classes never seen in training (the shapes set's held-out combinations) can be
named. CLIP averages the templates' embeddings instead; that suits templates that differ
only in wording ("a photo of a {}", "a picture of a {}"), but the shapes templates differ in
something the image shows (the size), and their average matches neither a small nor a
large shape well (measured: 28% vs 79% on the validation split of one run).

Retrieval, Recall@K: image -> text (i2t): the fraction of images with a true caption among
their K most similar texts; text -> image (t2i): the fraction of texts with a true image
among their K most similar images. Texts are the distinct caption strings of the split
(identical strings are one text), and an image with several true captions is a hit if
any of them is in its top K, so duplicates neither help nor hurt.

Shapes: I images, T distinct texts, C classes, E embedding size.
"""

from __future__ import annotations

import torch

from vision_lm.text_batch import TextEncoder


def pair_matrix(image_keys: list, texts: list[str]) -> tuple[list[int], list[int], torch.Tensor]:
    """Records (one per pair) -> first record of each distinct image, of each distinct text, and
    the (I, T) bool matrix of true pairs."""
    img_pos: dict = {}
    txt_pos: dict[str, int] = {}
    img_rows, txt_rows, pairs = [], [], []
    for r, (key, text) in enumerate(zip(image_keys, texts)):
        if key not in img_pos:
            img_pos[key] = len(img_rows)
            img_rows.append(r)
        if text not in txt_pos:
            txt_pos[text] = len(txt_rows)
            txt_rows.append(r)
        pairs.append((img_pos[key], txt_pos[text]))
    positives = torch.zeros(len(img_rows), len(txt_rows), dtype=torch.bool)
    for i, t in pairs:
        positives[i, t] = True
    return img_rows, txt_rows, positives


def recall_at_k(sim: torch.Tensor, positives: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """sim (I, T) similarities and positives (I, T) bool -> {"recall@K_i2t", "recall@K_t2i"}."""
    positives = positives.to(sim.device)
    out = {}
    for k in ks:
        top_t = sim.topk(min(k, sim.shape[1]), dim=1).indices  # (I, k) best texts per image
        out[f"recall@{k}_i2t"] = positives.gather(1, top_t).any(1).float().mean().item()
        top_i = sim.topk(min(k, sim.shape[0]), dim=0).indices  # (k, T) best images per text
        out[f"recall@{k}_t2i"] = positives.gather(0, top_i).any(0).float().mean().item()
    return out


@torch.no_grad()
def embed_classes(model, encoder: TextEncoder, classes: list[str], templates: list[str]) -> torch.Tensor:
    """(C, n_templates, E) unit vectors: every class put into every template, embedded."""
    device = next(model.parameters()).device
    texts = [t.format(c) for c in classes for t in templates]
    ids = encoder.captions(texts).to(device)  # (C * n_templates, max_len)
    return model.encode_text(ids).view(len(classes), len(templates), -1)  # (C, n_templates, E)


def class_scores(image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> torch.Tensor:
    """image_embeds (N, E), class_embeds (C, n_templates, E) -> (N, C): each class's best template cosine."""
    cos = torch.einsum("ne,cte->nct", image_embeds.float(), class_embeds.float())  # (N, C, n_templates)
    return cos.max(-1).values


def zero_shot_accuracy(image_embeds: torch.Tensor, labels: torch.Tensor, class_embeds: torch.Tensor) -> float:
    """image_embeds (N, E), labels (N,) class indices, class_embeds (C, n_templates, E) -> accuracy."""
    pred = class_scores(image_embeds, class_embeds).argmax(1)  # (N,)
    return (pred == labels.to(pred.device)).float().mean().item()
