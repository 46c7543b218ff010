"""The prompt's pass through a `Decoder`'s flat layers: all T0 tokens at once, causal, caches written.

The model's own forward would do the same work through ~25 module calls per layer and a
(T0, V) head product of which decoding keeps one row; this pass reads the decoder's prepared
matrices (norms folded in, `decode_weights.py`), applies RoPE elementwise from the decoder's
[cos | sin] table, attends with `scaled_dot_product_attention(is_causal=True)` and runs the head
on the last position only. Time to first token is this plus the decoder's set-up.
tests/text_lm/test_decode.py checks its logits against the full forward with the steps'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def flat_prefill(dec, prompt: torch.Tensor) -> torch.Tensor:
    """prompt (B, T) at positions 0..T-1 -> logits (B, V) of its last position; writes the caches."""
    model, (B, T) = dec.model, prompt.shape
    x = F.embedding(prompt, model.embed.weight)  # (B, T, D)
    if dec.bigram:  # the first token has no previous one (the model's own convention)
        prev = torch.cat([torch.full_like(prompt[:, :1], model.config.vocab_size), prompt[:, :-1]], dim=1)
        x = x + F.embedding(model.bigram_rows(prev, prompt), model.bigram_embed.weight)
    if model.pos_embed is not None:
        x = x + model.pos_embed.weight[:T]
    x = x.reshape(B * T, -1)  # a new tensor: updated in place below
    cos = sin = None
    if dec.rope is not None:
        cos, sin = dec.rope[:T, None].chunk(2, dim=-1)  # (T, 1, Dh) each
    for d in dec.layers:
        H, K, Dh = d.H, d.K, d.Dh
        h = d.attn_norm(x)
        qkv = torch.mm(h, d.w_qkv) if d.b_qkv is None else torch.addmm(d.b_qkv, h, d.w_qkv)
        qk = qkv[:, : (H + K) * Dh].view(B, T, H + K, Dh)
        if d.qk_norm is not None:
            qn, w = d.qk_norm
            if isinstance(w, torch.Tensor):
                qk = qn(qk) * w
            else:
                qk = torch.cat([qn(qk[:, :, :H]), w(qk[:, :, H:])], dim=2)
        if cos is not None:
            qk = qk * cos + _rotate_half(qk) * sin
        k = qk[:, :, H:].transpose(1, 2)  # (B, K, T, Dh)
        v = qkv[:, (H + K) * Dh :].view(B, T, K, Dh).transpose(1, 2)
        d.cache_k[:, :, :T] = k
        d.cache_v[:, :, :T] = v
        y = F.scaled_dot_product_attention(
            qk[:, :, :H].transpose(1, 2), k, v, is_causal=True, enable_gqa=H != K
        )
        x.addmm_(y.transpose(1, 2).reshape(B * T, H * Dh), d.w_o)
        if d.b_o is not None:
            x += d.b_o
        h = d.mlp_norm(x)
        if d.ff is not None:  # the module itself
            x = x + d.ff(h.view(B, T, -1))[0].reshape(B * T, -1)
            continue
        u = torch.mm(h, d.w_up) if d.b_up is None else torch.addmm(d.b_up, h, d.w_up)
        a = d.act(u) if d.hidden is None else d.act(u[:, : d.hidden]) * u[:, d.hidden :]
        x.addmm_(a, d.w_down)
        if d.b_down is not None:
            x += d.b_down
    return dec.head_logits(x.view(B, T, -1)[:, -1])
