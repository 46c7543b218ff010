"""Our parameter names <-> Hugging Face ones, from one table per converter.

A converter declares its layout as a table of `(our_pattern, hf_pattern)` pairs, e.g.

    ("stack.layers.{i}.attn.o_proj", "model.layers.{i}.self_attn.o_proj")

`{i}` stands for a layer index and `{j}` for an expert index (digits on both sides). A pattern
names either one tensor (`"vision.pos_embed"`) or a module: then the module's own tensors
(`weight`, `bias`, `probe`: one identifier after the dot) keep their names, so one row covers
a linear layer with or without its bias. Each of our tensors must match exactly one row.

The table is expanded over a model's own state dict (our names are the truth: the config
decided which tensors exist), so the expansion is exactly the model's key set, renamed.
Reading HF weights is strict: every expected tensor present with our shape, nothing else,
or one `UserError` naming the first differences.

A row whose HF side is a tuple splits one of our tensors into several HF ones (a split/join row):

    ("stack.layers.{i}.attn.qkv_proj", ("...self_attn.q_proj", "...self_attn.k_proj", "...v_proj"))

Our fused tensor is the row concatenation (dim 0) of the HF tensors, in tuple order; the row
sizes come from `splits` (our module name -> sizes, `shared.nn.fused.split_sizes(model)`).
Export splits it, import concatenates the parts back (each checked against its share of
our shape).

What a table cannot say (a stacked tensor split per expert, a tied head left out) each
converter does explicitly next to its table; a tower whose names sit under another prefix is
`nest`. The exported names are a file format (ARCHITECTURE.md, section 3):
tests/shared/test_hf_names.py writes them out for each converter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import torch

from shared.errors import UserError

Table = Sequence[tuple[str, "str | tuple[str, ...]"]]
Splits = Mapping[str, Sequence[int]]
"""Our fused module (or tensor) name -> the row sizes of its parts, for split/join rows."""

_INDEX = {"{i}": r"(?P<i>\d+)", "{j}": r"(?P<j>\d+)"}
_LEAF = r"(?:\.(?P<leaf>[A-Za-z_]\w*))?"  # a module's own tensor: weight, bias, in_proj_weight...


def nest(table: Table, ours_prefix: str, hf_prefix: str) -> list[tuple[str, str | tuple[str, ...]]]:
    """The same rows under a prefix on each side (a SigLIP tower under `vision.` / `vision_model.`)."""
    return [
        (ours_prefix + a, tuple(hf_prefix + p for p in b) if isinstance(b, tuple) else hf_prefix + b)
        for a, b in table
    ]


def _compile(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{[ij]\})", pattern)
    return re.compile("".join(_INDEX.get(p, re.escape(p)) for p in parts) + _LEAF)


def expand(table: Table, ours: Iterable[str]) -> dict[str, str | tuple[str, ...]]:
    """Our name -> HF name (a tuple of HF names for a split/join row) for each of `ours` (a model's
    state-dict keys), in their order.

    A name that no row matches, or that two rows match, is a `UserError` naming it: the
    converter does not know that tensor (a feature HF's class lacks) or its table is ambiguous.
    """
    rows = [(_compile(a), b) for a, b in table]
    out = {}
    for name in ours:
        hits = [(m, hf) for rx, hf in rows if (m := rx.fullmatch(name))]
        if len(hits) != 1:
            why = "no Hugging Face name" if not hits else f"{len(hits)} Hugging Face names"
            raise UserError(f"tensor {name}: {why} in the converter's table")
        m, hf = hits[0]
        index = {k: v for k, v in m.groupdict().items() if k != "leaf" and v is not None}
        tail = f".{m['leaf']}" if m["leaf"] else ""
        out[name] = (
            tuple(p.format(**index) + tail for p in hf)
            if isinstance(hf, tuple)
            else hf.format(**index) + tail
        )
    return out


def _sizes(name: str, splits: Splits | None) -> Sequence[int]:
    """Row sizes of the parts of our fused tensor `name` (its own entry, or its module's)."""
    for key in (name, name.rpartition(".")[0]):
        if splits and key in splits:
            return splits[key]
    raise ValueError(f"{name}: a split/join row needs its row sizes in `splits`")


def to_hf(
    table: Table, state: dict[str, torch.Tensor], splits: Splits | None = None
) -> dict[str, torch.Tensor]:
    """Our `state` renamed to HF names (split/join rows split by `splits`): detached, contiguous copies
    (safetensors wants both)."""
    out = {}
    for k, hf in expand(table, state).items():
        t = state[k].detach()
        if isinstance(hf, tuple):
            out.update(
                zip(hf, (p.clone().contiguous() for p in t.split(list(_sizes(k, splits)))), strict=True)
            )
        else:
            out[hf] = t.clone().contiguous()
    return out


def from_hf(
    table: Table, given: dict[str, torch.Tensor], own: dict[str, torch.Tensor], splits: Splits | None = None
) -> dict[str, torch.Tensor]:
    """HF-named `given` tensors -> our names, for a model whose state is `own` (split/join rows:
    the HF parts concatenated along rows, each part's shape from `splits`).

    Every tensor of `own` must be in `given` under its HF name(s), with our shape, and `given`
    must hold nothing else: otherwise one UserError naming the first differences.
    """
    expected = {}  # HF name -> (our name, the shape it must have)
    for k, hf in expand(table, own).items():
        if isinstance(hf, tuple):
            rest = tuple(own[k].shape[1:])
            expected.update({p: (k, (n, *rest)) for p, n in zip(hf, _sizes(k, splits), strict=True)})
        else:
            expected[hf] = (k, tuple(own[k].shape))
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"HF weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    parts: dict[str, list[torch.Tensor]] = {}
    for hf, (k, shape) in expected.items():
        if tuple(given[hf].shape) != shape:
            raise UserError(f"HF weight {hf} has shape {tuple(given[hf].shape)}, expected {shape}")
        parts.setdefault(k, []).append(given[hf])
    return {k: ts[0] if len(ts) == 1 else torch.cat(ts) for k, ts in parts.items()}


DECODER_LAYER: Table = [
    # (ours, HF) in one pre-norm decoder layer, under layers.{i}: our `Block` in the naming HF's Llama,
    # Mistral, Mixtral and Gemma decoder layers share (half-split RoPE on both sides: no q/k permutation).
    ("attn_norm", "input_layernorm"),
    ("mlp_norm", "post_attention_layernorm"),
    ("attn.qkv_proj", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),  # split/join
    ("attn.o_proj", "self_attn.o_proj"),
    ("mlp.gate_up_proj", ("mlp.gate_proj", "mlp.up_proj")),  # a dense gated MLP (SwiGLU / GeGLU)
    ("mlp.down_proj", "mlp.down_proj"),
]
