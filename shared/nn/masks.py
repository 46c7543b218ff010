"""Attention masks. Convention: boolean, True = "may attend", shape broadcastable to (B, H, T, S).

Causal (decoder LM): token i sees tokens 0..i.
Prefix-LM (PaliGemma, Beyer et al. 2024): the prefix (image tokens + prompt) attends
bidirectionally within itself; the suffix (the text to generate) is causal and sees the
whole prefix. Worked example, prefix_len = 3 (image, image, prompt), 2 suffix tokens:

          keys:  i0 i1 p0 s0 s1
    i0           1  1  1  0  0
    i1           1  1  1  0  0
    p0           1  1  1  0  0
    s0           1  1  1  1  0
    s1           1  1  1  1  1

Padding: `key_padding` (B, S) True for real tokens removes padded keys from every row.
Worked example, batched generation (`vision_lm/caption_generate.py`): a prompt shorter than
the longest is left-padded after the image, the whole prompt is the prefix (prefix_len = 4
columns), then one generated token g0; key_padding = 1 0 1 1 1:

          keys:  i0 pad p0 p1 g0
    i0           1  0   1  1  0
    pad          1  0   1  1  0      (a pad query still sees the image: no empty row, no NaN)
    p0           1  0   1  1  0
    p1           1  0   1  1  0
    g0           1  0   1  1  1
"""

from __future__ import annotations

import torch


def causal_mask(t: int, s: int | None = None, device=None) -> torch.Tensor:
    """(T, S) lower-triangular mask aligned to the end: query i sits at key position S - T + i."""
    s = t if s is None else s
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def prefix_lm_mask(prefix_len: torch.Tensor, total_len: int) -> torch.Tensor:
    """Per-row prefix lengths (B,) -> (B, 1, L, L) prefix-LM mask (see the module docstring)."""
    device = prefix_len.device
    pos = torch.arange(total_len, device=device)
    causal = pos[None, :] <= pos[:, None]  # (L, L)
    key_in_prefix = pos[None, None, :] < prefix_len[:, None, None]  # (B, 1, L)
    return (causal[None] | key_in_prefix).unsqueeze(1)  # (B, 1, L, L)


def with_key_padding(mask: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
    """AND a mask with a (B, S) keep-mask over keys."""
    return mask & key_padding[:, None, None, :]


def document_causal_mask(segments: torch.Tensor) -> torch.Tensor:
    """Per-token document ids (B, T) -> (B, 1, T, T) block-diagonal causal mask for packed windows.

    Several examples packed into one window (`text_lm/instruct.py`) must never attend across
    their boundary: query i sees key j when j <= i and both belong to the same document.
    Worked example, segments = 0 0 1 1 1 (two packed examples):

          keys:  a0 a1 b0 b1 b2
    a0           1  0  0  0  0
    a1           1  1  0  0  0
    b0           0  0  1  0  0
    b1           0  0  1  1  0
    b2           0  0  1  1  1

    Every row keeps its diagonal, so no row is empty (padding gets a segment id of its own).
    """
    T = segments.shape[1]
    causal = causal_mask(T, device=segments.device)  # (T, T)
    same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
    return (same & causal).unsqueeze(1)  # (B, 1, T, T)


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) document ids of contiguous segments -> (B, T) position of each token in its document
    (0 at each document's first token), so packed examples get the positions they have alone."""
    T = segments.shape[1]
    idx = torch.arange(T, device=segments.device).expand_as(segments)  # (B, T)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, T)
    return idx - first
