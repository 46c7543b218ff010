"""Contrastive image-text losses, and how they see every device's negatives.

Sigmoid loss (SigLIP, Zhai et al. 2023), for B images against N texts (N = B on one
device), logits z_ij = exp(t) * cos(image_i, text_j) + b and labels y_ij = +1 for a
matching pair, -1 otherwise:

    L = -1/B * sum_i sum_j log sigmoid(y_ij * z_ij)

Every pair is an independent binary classification: no softmax over the batch, so no
batch-wide normaliser to compute and the loss of the global batch is a plain sum of
per-device pieces. Softmax loss (CLIP, Radford et al. 2021): the mean of the image->text
and text->image cross-entropies over the rows of the logit matrix.

Under DDP each device holds B images and B texts. `gather` collects every device's text
embeddings with `torch.distributed.nn.functional.all_gather`, whose backward sends each
device's share of the gradient back, so device r scores its B images against all W * B
texts; its positives sit at columns r * B + i. Each pair (image i, text j) is scored on
exactly one device (the image's), and DDP's averaging of gradients over the W devices
gives the gradient of L over the global batch of W * B.
(Single process: no gathering, offset 0.)
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """(rank, world size) when torch.distributed is initialised with several processes, else (0, 1)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate `x` (B, ...) from every rank in rank order -> (W * B, ...); `x` itself if alone.

    All ranks must pass the same B (the training loader drops the last, partial batch).
    """
    _, w = world()
    if w == 1:
        return x
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        with warnings.catch_warnings():  # torch 2.13 points to a private replacement; this one is public
            warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*", category=FutureWarning)
            return torch.cat(all_gather(x))
    parts = [torch.empty_like(x) for _ in range(w)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def pair_logits(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one logit formula: unit vectors (Bi, E), (Bt, E) -> (Bi, Bt) = exp(t) * cos + b, in fp32
    (bf16 cosines times exp(t) ~ 10-100 would be off by whole units). No bias: the softmax loss's
    logits, where b would cancel."""
    logits = logit_scale.float().exp() * (image_embeds.float() @ text_embeds.float().T)
    return logits if logit_bias is None else logits + logit_bias.float()


def siglip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    offset: int = 0,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise sigmoid loss (module docstring) of B images (B, E) against N texts (N, E), unit vectors.

    The positive of image i is text `offset + i`, unless `positives` (B, N) bool says which pairs
    match (e.g. every text with the same caption string).
    """
    logits = pair_logits(image_embeds, text_embeds, logit_scale, logit_bias)
    B, N = logits.shape  # (B, N)
    if positives is None:
        positives = torch.zeros(B, N, dtype=torch.bool, device=logits.device)
        positives[torch.arange(B), offset + torch.arange(B)] = True
    labels = positives.float() * 2 - 1  # +1 match, -1 otherwise
    return -F.logsigmoid(labels * logits).sum() / B


def clip_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    all_image_embeds: torch.Tensor,
    all_text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    offset: int = 0,
) -> torch.Tensor:
    """Symmetric softmax cross-entropy: local images against all texts, local texts against all images.

    The bias b would cancel in a softmax and is not used.
    """
    targets = offset + torch.arange(image_embeds.shape[0], device=image_embeds.device)
    i2t = pair_logits(image_embeds, all_text_embeds, logit_scale)  # (B, W * B)
    t2i = pair_logits(text_embeds, all_image_embeds, logit_scale)  # (B, W * B)
    return (F.cross_entropy(i2t, targets) + F.cross_entropy(t2i, targets)) / 2


def contrastive_loss(
    kind: str,
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    text_ids: torch.Tensor | None = None,
    across_ranks: bool = True,
) -> torch.Tensor:
    """The training loss over the global batch, as seen from this rank (module docstring).

    across_ranks=False scores the local batch alone (evaluation, where batches may differ in size).

    With `text_ids` (B, T), identical captions count as matches for the sigmoid loss: a
    batch of the shapes set often holds several images captioned "a small red circle",
    and calling the others' caption a negative would teach the model a contradiction.
    """
    rank = world()[0] if across_ranks else 0
    offset = rank * image_embeds.shape[0]
    everyone = gather if across_ranks else (lambda x, with_grad=True: x)
    all_text = everyone(text_embeds)
    if kind == "softmax":
        return clip_loss(image_embeds, text_embeds, everyone(image_embeds), all_text, logit_scale, offset)
    positives = None
    if text_ids is not None:
        all_ids = everyone(text_ids, with_grad=False)
        positives = (text_ids[:, None, :] == all_ids[None, :, :]).all(-1)  # (B, W * B)
    return siglip_loss(image_embeds, all_text, logit_scale, logit_bias, offset, positives)
