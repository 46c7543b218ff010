"""What `text_lm/decode.py`'s flat step reads per layer, prepared once per decoder.

`layer_specs` lists a layer's matrices in step order with the norm folded into each (for
`decode_weights.pack`); `prepare_layer` gathers the packed matrices, the norms as plain ops and
the views into the decoder's out= buffers into a `Layer`; `rope_basis` turns a position's
[cos | sin] row into RoPE's (Dh, Dh) rotation with one matmul.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from shared.nn.mlp import MLP, GatedMLP
from shared.nn.relu2 import ReLU2
from text_lm.decode_weights import foldable, norm_fn, qk_norm_weight


def relu2(u: torch.Tensor) -> torch.Tensor:
    """shared/nn/relu2.py's activation, relu(u)^2, for its flat feed-forward."""
    return F.relu(u).square()


@lru_cache(maxsize=8)
def rope_basis(head_dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(2 Dh, Dh * Dh) M with [cos | sin] @ M = the rotation matrix R, x @ R = x cos + rotate_half(x) sin
    (the half-split layout of shared/nn/rope.py): R[j, j] = cos_j, R[j + Dh/2, j] = -sin_j and
    R[j - Dh/2, j] = sin_j. Made once per head size (read only)."""
    j = torch.arange(head_dim)
    m = torch.zeros(2, head_dim, head_dim, head_dim)
    m[0, j, j, j] = 1.0
    m[1, j, (j + head_dim // 2) % head_dim, j] = torch.where(j < head_dim // 2, -1.0, 1.0)
    return m.view(2 * head_dim, head_dim * head_dim).to(device=device, dtype=dtype)


class Layer:
    """What one layer's step reads: its matrices (decode_weights.py), norms as plain ops, and views
    into buffers written with out=, so the step makes no slicing op of its own."""

    __slots__ = (
        "H", "K", "Dh", "attn_norm", "w_qkv", "b_qkv", "qkv", "qk", "qk_norm", "rot", "k_new", "v_new",
        "cache_k", "cache_v", "q", "y", "y_rows", "w_o", "b_o", "mlp_norm", "ff", "up", "gate_up",
        "hidden", "act", "w_up", "b_up", "w_down", "b_down",
    )  # fmt: skip


def folds(layer, packed: bool) -> tuple[bool, bool]:
    """Whether the attention norm and the feed-forward norm fold into the next matrix."""
    known = isinstance(layer.mlp, (GatedMLP, MLP, ReLU2))
    return packed and foldable(layer.attn_norm), known and packed and foldable(layer.mlp_norm)


def layer_specs(layer, packed: bool) -> list[tuple]:
    """The layer's matrices in step order, each with the norm folded into it (or None)."""
    attn, mlp, (fold_attn, fold_mlp) = layer.attn, layer.mlp, folds(layer, packed)
    specs = [(attn.qkv_proj, layer.attn_norm if fold_attn else None), (attn.o_proj, None)]
    if isinstance(mlp, (GatedMLP, MLP, ReLU2)):
        up = mlp.gate_up_proj if isinstance(mlp, GatedMLP) else mlp.up_proj
        specs += [(up, layer.mlp_norm if fold_mlp else None), (mlp.down_proj, None)]
    return specs


def prepare_layer(layer, cache, mats, dec) -> Layer:
    """The layer's `Layer` for decoder `dec`: its matrices taken from `mats` in `layer_specs` order,
    its buffers from `dec.buffer`."""
    attn, mlp, B, d = layer.attn, layer.mlp, dec.B, Layer()
    H, K, Dh = d.H, d.K, d.Dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
    fold_attn, fold_mlp = folds(layer, dec.packed)
    d.attn_norm = norm_fn(layer.attn_norm, affine=not fold_attn)
    d.w_qkv, d.b_qkv = next(mats)
    d.w_o, d.b_o = next(mats)
    d.qkv = dec.buffer(B, (H + 2 * K) * Dh)  # [q | k | v] of every row
    d.qk = d.qkv[:, : (H + K) * Dh].view(B, H + K, Dh)
    d.v_new = d.qkv[:, (H + K) * Dh :].view(B, K, 1, Dh)
    d.qk_norm = None
    if attn.q_norm is not None:  # QK-norm: per head, before RoPE
        w = qk_norm_weight(attn)
        d.qk_norm = (norm_fn(attn.q_norm, affine=False), w) if w is not None else (attn.q_norm, attn.k_norm)
    d.rot = dec.buffer(B, H + K, Dh) if dec.rope is not None or d.qk_norm else None  # q, k as attended
    d.k_new = (d.qk if d.rot is None else d.rot)[:, H:, None]  # (B, K, 1, Dh)
    q = (d.qk if d.rot is None else d.rot)[:, :H]  # (B, H, Dh)
    d.q = q.view(B * K, H // K, Dh) if q.is_contiguous() else None  # one row: a view made once
    d.y = dec.buffer(B * K, H // K, Dh)  # attention output, grouped by KV head
    d.y_rows = d.y.view(B, H * Dh)
    d.cache_k, d.cache_v = cache.k, cache.v
    known = isinstance(mlp, (GatedMLP, MLP, ReLU2))
    d.mlp_norm = norm_fn(layer.mlp_norm, affine=not fold_mlp)
    d.ff = None if known else mlp  # MoE or another registered feed-forward: the module itself
    if isinstance(mlp, GatedMLP):  # one matmul for gate and up
        d.hidden, d.act = mlp.hidden_dim, mlp.act
    elif known:  # two matrices, no gate (GPT-2's GELU MLP, squared ReLU)
        d.hidden, d.act = None, mlp.act if isinstance(mlp, MLP) else relu2
    if known:
        d.w_up, d.b_up = next(mats)
        d.w_down, d.b_down = next(mats)
        d.up = dec.buffer(B, d.w_up.shape[1])
        d.gate_up = (d.up[:, : d.hidden], d.up[:, d.hidden :]) if d.hidden else None
    return d
