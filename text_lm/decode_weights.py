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

import ctypes
import math
import sys
import weakref

import torch
import torch.nn.functional as F

from shared.nn.norms import RMSNorm

_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> (source tensors, their _version when packed, the packed (W, b) list)."""


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


def _fold(w: torch.Tensor, b: torch.Tensor | None, nw, nb, rms: bool, out: torch.Tensor | None = None):
    """(out, in) weight and bias, the norm's weight/bias -> (in, out) matrix, bias. Written into `out`
    (an arena view) when given, in one pass; else a view where nothing is folded."""
    wt = w.detach().t()
    if nw is not None:
        scale = (nw.detach() * math.sqrt(wt.shape[0]) if rms else nw.detach())[:, None]
        mat = wt * scale if out is None else torch.mul(wt, scale, out=out)
    else:
        mat = wt if out is None else out.copy_(wt)
    if nb is not None:
        extra = nb.detach() @ wt
        b = extra if b is None else b.detach() + extra
    return mat, None if b is None else b.detach()


def _sources(linear, norm) -> tuple:
    """What a packed matrix is made of: the linear's weight and bias, the folded norm's weight and bias."""
    if type(linear) is not torch.nn.Linear and not hasattr(linear, "merged"):
        raise Unsupported(f"Decoder cannot read a {type(linear).__name__} as a matrix")
    if norm is None:
        return linear.weight, linear.bias, None, None
    return linear.weight, linear.bias, norm.weight, getattr(norm, "bias", None)


def _matrix(linear, norm, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W (in, out), bias) of `linear` (a plain or merged LoRA one) with `norm`'s affine (and RMSNorm's
    sqrt(D)) folded in; into `out` when given."""
    _, _, nw, nb = _sources(linear, norm)
    return _fold(linear.weight, linear.bias, nw, nb, isinstance(norm, RMSNorm), out)


def _plain(linear) -> torch.nn.Linear:
    """A LoRA-adapted layer's merged weight (W + scale B A) as a plain linear; a plain one as it is."""
    return linear if type(linear) is torch.nn.Linear else linear.merged()


def pack(model, specs: list[tuple], packed: bool) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """specs: (linear, norm to fold into it or None) in the order a step reads them -> their
    (W (in, out), bias or None). Packed: copies in one arena (`_arena`), kept per model until a
    source is replaced or changed in place; a LoRA-adapted model's are made each time. Not packed:
    views of the transposed weights, nothing folded."""
    if not packed:
        if any(norm is not None for _, norm in specs):
            raise ValueError("only a packed model's matrices take a norm")
        return [_matrix(_plain(linear), None) for linear, _ in specs]
    sources = tuple(s for linear, norm in specs for s in _sources(linear, norm))
    versions = tuple(None if s is None else s._version for s in sources)
    keep = all(type(linear) is torch.nn.Linear for linear, _ in specs)
    hit = _PACKED.get(model) if keep else None
    if hit is not None and hit[1] == versions and all(a is b for a, b in zip(hit[0], sources, strict=True)):
        return hit[2]
    linears = [_plain(linear) for linear, _ in specs]
    w = linears[0].weight
    arena = _arena(sum(lin.weight.numel() for lin in linears), w.dtype, w.device)
    out, at = [], 0
    for lin, (_, norm) in zip(linears, specs, strict=True):
        n_out, n_in = lin.weight.shape
        out.append(_matrix(lin, norm, out=arena[at : at + n_in * n_out].view(n_in, n_out)))
        at += n_in * n_out
    if keep:
        _PACKED[model] = (sources, versions, out)
    return out


def _arena(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 1-D buffer for every packed matrix, in the order a step reads them, asked of Linux to be
    backed by 2 MiB pages (madvise MADV_HUGEPAGE, before its first touch): a step streams all of
    it, and on 4 KiB pages the hardware prefetcher stops at every page edge. Measured here, the
    step's matmuls alone: 2.06 -> 1.70 ms for llama-tiny (p10 CPU time, shared machine). Elsewhere,
    or when the call fails, an ordinary buffer."""
    size = numel * dtype.itemsize
    if device.type != "cpu" or size < _HUGE or not sys.platform.startswith("linux"):
        return torch.empty(numel, dtype=dtype, device=device)
    raw = torch.empty(size + _HUGE, dtype=torch.uint8)  # untouched: pages come at first write
    start = -raw.data_ptr() % _HUGE  # the first 2 MiB boundary inside it
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(raw.data_ptr() + start), ctypes.c_size_t(size), 14)  # MADV_HUGEPAGE
    except (OSError, AttributeError):
        pass  # no libc to ask: ordinary pages
    return raw[start : start + size].view(dtype)


_HUGE = 2**21
"""Bytes in a huge page (x86-64 and arm64 Linux)."""


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
