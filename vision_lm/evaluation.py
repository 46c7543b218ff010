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


# ---------------------------------------------------------------------- diagnosis
# Why held-out colour-shape pairs fail (issue 13): either the image embedding does not carry the
# shape of a held-out pair (the tower entangled colour and shape), or it does and the text side or
# the decoder does not use it. A linear probe tells the two apart (Alain & Bengio 2016, "Understanding
# intermediate layers using linear classifier probes"): fit softmax regression on frozen embeddings of
# seen pairs, then score it on held-out pairs. Shape probe high on held-out pairs -> the information
# is there; low -> the tower must change.


def split_label(label: str) -> tuple[str, str]:
    """ "<colour> <shape>" -> (colour, shape); the shape is the last word ("light green circle" ->
    ("light green", "circle"))."""
    colour, _, shape = label.strip().rpartition(" ")
    return colour, shape


def fit_linear_probe(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float = 1e-3, steps: int = 100
):
    """Multinomial logistic regression on frozen features, full batch, L-BFGS.

    x (N, E) features, y (N,) class indices -> a function (M, E) -> (M,) predicted classes. Features
    are standardised with the training mean and std; the objective is the mean cross-entropy plus
    weight_decay * ||W||^2 (the L2 keeps separable data from sending W to infinity).
    """
    x = x.detach().float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std  # (N, E)
    linear = torch.nn.Linear(x.shape[1], n_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(z), y) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lambda feats: linear((feats.detach().float() - mean) / std).argmax(-1)  # (M,)


def attribute_probes(
    fit_feats: torch.Tensor, fit_labels: list[str], eval_sets: dict[str, tuple[torch.Tensor, list[str]]]
) -> dict[str, dict[str, float]]:
    """Colour and shape probes: fit on (fit_feats (N, E), "<colour> <shape>" labels), score each
    eval set -> {"colour": {set: accuracy}, "shape": {set: accuracy}}.

    A value of an eval set that the fit set never shows counts as a miss (the probe cannot name it).
    """
    out: dict[str, dict[str, float]] = {}
    for k, attribute in enumerate(("colour", "shape")):
        fit_values = [split_label(label)[k] for label in fit_labels]
        classes = sorted(set(fit_values))
        index = {c: i for i, c in enumerate(classes)}
        predict = fit_linear_probe(fit_feats, torch.tensor([index[v] for v in fit_values]), len(classes))
        out[attribute] = {}
        for name, (feats, labels) in eval_sets.items():
            pred = predict(feats).tolist()
            hits = [classes[p] == split_label(label)[k] for p, label in zip(pred, labels)]
            out[attribute][name] = sum(hits) / max(1, len(hits))
    return out


def held_out_pair_recall(generated: list[str], truths: list[str], pairs: list[str]) -> float:
    """Of the held-out pairs the true captions name ("green triangle"), the share that the generated
    caption of the same image names too, anywhere and whatever else it says (exact-match's lenient
    cousin: does the captioner ever say the pair it never saw?). Words are matched whole."""
    import re

    patterns = {p: re.compile(rf"\b{re.escape(p)}\b") for p in pairs}
    named = hit = 0
    for gen, truth in zip(generated, truths):
        for pattern in patterns.values():
            if pattern.search(truth):
                named += 1
                hit += bool(pattern.search(gen))
    return hit / named if named else float("nan")
