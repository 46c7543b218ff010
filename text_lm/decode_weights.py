"""The decoder's view of a model's weights: (in, out) matrices with the preceding norm folded in.

Why a copy: a (1, in) x (in, out) product reads the weight in memory order, measured 1.6x faster
per matmul at batch 1 than nn.Linear's (out, in). Once a copy is made anyway, the norm before a
projection costs nothing more to fold into it:

    norm(x) W^T + b  =  n(x) (diag(w) W^T) + (b_norm W^T + b)      n(x): the norm without its affine

and RMSNorm's n(x) = x / sqrt(mean(x^2) + eps) is computed as sqrt(D) x / hypot(|x|, sqrt(D eps))
(three ops, where mean/pow/rsqrt are six), the sqrt(D) folded into the matrix too. The copies
are kept per model and made again only after a weight changes in place (an optimizer step or a
load bumps its `_version`), so a later generation's time to first token does not pay for them.

A large model (batch x parameters >= `decode.SMALL`) is not copied: its matrices are views of
the transposed weights and its norms apply their own weights (`norm_fn(..., affine=True)`).
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F

from shared.nn.norms import RMSNorm

_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> {key: (source tensors, their _version when made, the made tensors)}."""


class Unsupported(TypeError):
    """A layer the flat step cannot read (`make_decoder` then steps through the model's forward)."""


def foldable(norm: torch.nn.Module | None) -> bool:
    """A norm whose affine part folds into the next matrix: RMSNorm (not Gemma's 1 + w) or LayerNorm."""
    if isinstance(norm, RMSNorm):
        return not norm.unit_offset
    return isinstance(norm, torch.nn.LayerNorm)


def norm_fn(norm: torch.nn.Module, affine: bool):
    """x -> n(x), the norm as plain ops: with its own weight (`affine`), or without when it is folded
    into the next matrix (`matrix(..., norm=)`, which also takes RMSNorm's sqrt(D))."""
    if isinstance(norm, RMSNorm) and not norm.unit_offset:
        c = torch.tensor(math.sqrt(norm.weight.shape[0] * norm.eps), device=norm.weight.device)
        if not affine:
            return lambda x: x / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), c)
        w = norm.weight * math.sqrt(norm.weight.shape[0])
        return lambda x: x * w / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), c)
    if isinstance(norm, torch.nn.LayerNorm):
        shape, eps = norm.normalized_shape, norm.eps
        w, b = (norm.weight, norm.bias) if affine else (None, None)
        return lambda x: F.layer_norm(x, shape, w, b, eps)
    return norm  # anything else: the module itself (never folded)


def _cached(model, key: tuple, sources: tuple, make):
    """make(*sources), kept per model until a source is replaced or changed in place."""
    cache = _PACKED.setdefault(model, {})
    versions = tuple(None if s is None else s._version for s in sources)
    hit = cache.get(key)
    if hit is None or hit[1] != versions or any(a is not b for a, b in zip(hit[0], sources, strict=True)):
        hit = cache[key] = (sources, versions, make(*sources))
    return hit[2]


def _fold(w: torch.Tensor, b: torch.Tensor | None, nw, nb, rms: bool):
    """(out, in) weight and bias, the norm's weight/bias -> (in, out) contiguous matrix, bias."""
    wt = w.detach().t()
    if rms:
        nw = nw.detach() * math.sqrt(wt.shape[0])
    mat = (wt * nw.detach()[:, None] if nw is not None else wt).contiguous()
    if nb is not None:
        extra = nb.detach() @ wt
        b = extra if b is None else b.detach() + extra
    return mat, None if b is None else b.detach()


def matrix(model, linear: torch.nn.Linear, packed: bool, norm: torch.nn.Module | None = None):
    """(W (in, out), bias or None) of `linear` for x @ W + b; with `norm` (foldable, and `packed`),
    its affine part and RMSNorm's sqrt(D) are folded in (see the module docstring)."""
    if norm is not None and not (packed and foldable(norm)):
        raise ValueError("only a foldable norm of a packed model folds into a matrix")
    nw = nb = None
    if norm is not None:
        nw, nb = norm.weight, getattr(norm, "bias", None)
    rms = isinstance(norm, RMSNorm)
    if type(linear) is not torch.nn.Linear:  # a LoRA-adapted layer: its merged weight, not kept
        if not hasattr(linear, "merged"):
            raise Unsupported(f"Decoder cannot read a {type(linear).__name__} as a matrix")
        merged = linear.merged()
        return _fold(merged.weight, merged.bias, nw, nb, rms)
    if not packed:
        return linear.weight.detach().t(), linear.bias  # (in, out), a view
    sources = (linear.weight, linear.bias, nw, nb)
    key = tuple(None if s is None else id(s) for s in sources)
    return _cached(model, key, sources, lambda w, b, nw, nb: _fold(w, b, nw, nb, rms))


def qk_norm_weight(attn) -> torch.Tensor | None:
    """QK-norm's weights as one (H + K, Dh) table, q's rows first, times sqrt(Dh) (the normalised
    heads come from `norm_fn(..., affine=False)`, which leaves it out); None where q_norm and k_norm
    are not both plain RMSNorms of one eps (the decoder then calls the modules)."""
    qn, kn = attn.q_norm, attn.k_norm
    if not (foldable(qn) and foldable(kn) and isinstance(qn, RMSNorm) and qn.eps == kn.eps):
        return None
    Dh = attn.head_dim
    wq = attn.q_norm.weight.detach().expand(attn.n_heads, Dh)
    wk = attn.k_norm.weight.detach().expand(attn.n_kv_heads, Dh)
    return torch.cat([wq, wk]) * math.sqrt(Dh)
