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

What a table cannot say (a stacked tensor split per expert, a tied head left out) each
converter does explicitly next to its table; a tower whose names sit under another prefix is
`nest`. The exported names are a file format (ARCHITECTURE.md, section 3):
tests/shared/test_hf_names.py writes them out for each converter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

from shared.errors import UserError

Table = Sequence[tuple[str, str]]

_INDEX = {"{i}": r"(?P<i>\d+)", "{j}": r"(?P<j>\d+)"}
_LEAF = r"(?:\.(?P<leaf>[A-Za-z_]\w*))?"  # a module's own tensor: weight, bias, in_proj_weight...


def nest(table: Table, ours_prefix: str, hf_prefix: str) -> list[tuple[str, str]]:
    """The same rows under a prefix on each side (a SigLIP tower under `vision.` / `vision_model.`)."""
    return [(ours_prefix + a, hf_prefix + b) for a, b in table]


def _compile(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{[ij]\})", pattern)
    return re.compile("".join(_INDEX.get(p, re.escape(p)) for p in parts) + _LEAF)


def expand(table: Table, ours: Iterable[str]) -> dict[str, str]:
    """Our name -> HF name for each of `ours` (a model's state-dict keys), in their order.

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
        leaf = m["leaf"]
        out[name] = hf.format(**index) + (f".{leaf}" if leaf else "")
    return out


def to_hf(table: Table, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our `state` renamed to HF names: detached, contiguous copies (safetensors wants both)."""
    names = expand(table, state)
    return {names[k]: t.detach().clone().contiguous() for k, t in state.items()}


def from_hf(
    table: Table, given: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """HF-named `given` tensors -> our names, for a model whose state is `own`.

    Every tensor of `own` must be in `given` under its HF name, with our shape, and `given`
    must hold nothing else: otherwise one UserError naming the first differences.
    """
    names = {hf: k for k, hf in expand(table, own).items()}
    missing, unexpected = sorted(set(names) - set(given)), sorted(set(given) - set(names))
    if missing or unexpected:
        raise UserError(
            f"HF weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for hf, k in names.items():
        if given[hf].shape != own[k].shape:
            raise UserError(
                f"HF weight {hf} has shape {tuple(given[hf].shape)}, expected {tuple(own[k].shape)}"
            )
    return {k: given[hf] for hf, k in names.items()}


DECODER_LAYER: Table = [
    # (ours, HF) in one pre-norm decoder layer, under layers.{i}: our `Block` in the naming HF's Llama,
    # Mistral, Mixtral and Gemma decoder layers share (half-split RoPE on both sides: no q/k permutation).
    ("attn_norm", "input_layernorm"),
    ("mlp_norm", "post_attention_layernorm"),
    ("attn.q_proj", "self_attn.q_proj"),
    ("attn.k_proj", "self_attn.k_proj"),
    ("attn.v_proj", "self_attn.v_proj"),
    ("attn.o_proj", "self_attn.o_proj"),
    ("mlp.gate_proj", "mlp.gate_proj"),  # a dense gated MLP (SwiGLU / GeGLU)
    ("mlp.up_proj", "mlp.up_proj"),
    ("mlp.down_proj", "mlp.down_proj"),
]
