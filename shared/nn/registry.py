"""Seams of the block: the token mixer and the feed-forward are picked by name.

A block is  x = x + mixer(norm(x), ctx);  x = x + ffn(norm(x))[0]  (`shared/nn/transformer.py`).
Which mixer and which feed-forward is a config value (`TransformerConfig.mixer`, `.mlp`), looked
up here: a builder takes the `TransformerConfig` and returns an `nn.Module`. The contracts:

    mixer:         forward(x (B, T, D), ctx: StackContext) -> (B, T, D)
    feed-forward:  forward(x (B, T, D)) -> (y (B, T, D), aux)   aux: None, or MoEStats

Built-ins register in their own modules, which `shared/nn/transformer.py` imports: `attention`
(attention.py); `swiglu`, `geglu`, `gelu` (mlp.py); `relu2` (relu2.py). This module imports none of them, so it sits
below every block and there is no import cycle. Mixture of experts is not an `mlp` name: when
`cfg.moe` is set the feed-forward is `MoE` (moe.py registers it under the reserved key `moe`), whose experts are gated MLPs with the activation `cfg.mlp` names (so `mlp: geglu` plus
`moe: {...}` is a GeGLU-expert MoE). The registered parameter names are the state_dict's, so the
Hugging Face converters and checkpoints see the same keys whichever module built them.

Add a feed-forward variant: one file, one decorator, one config value (no edit to the block):

    from shared.nn.registry import register_feed_forward

    @register_feed_forward("relu2")              # squared ReLU (So et al. 2021, Primer)
    class ReLU2(nn.Module):
        def __init__(self, cfg: TransformerConfig):
            super().__init__()
            self.up_proj = nn.Linear(cfg.dim, cfg.hidden_dim, bias=cfg.out_bias)
            self.down_proj = nn.Linear(cfg.hidden_dim, cfg.dim, bias=cfg.out_bias)

        def forward(self, x):
            return self.down_proj(F.relu(self.up_proj(x)).square()), None

    Transformer(TransformerConfig(dim=64, n_layers=2, n_heads=4, mlp="relu2"))

(`shared/nn/relu2.py` is exactly this, a built-in; `tests/shared/test_registry.py` trains it.) Naming the output projection
`down_proj` gives it the depth-scaled initialisation of `shared/nn/init.py` for free.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shared.errors import UserError
from shared.nn.config import TransformerConfig

Builder = Callable[[TransformerConfig], nn.Module]

MIXERS: dict[str, Builder] = {}
"""Token mixers by `TransformerConfig.mixer` name."""
FEED_FORWARDS: dict[str, Builder] = {}
"""Dense feed-forwards by `TransformerConfig.mlp` name."""


def _register(table: dict[str, Builder], kind: str, name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        if table.get(name, builder) is not builder:
            raise ValueError(f"{kind} {name!r} is already registered ({table[name]!r})")
        table[name] = builder
        return builder

    return add


def register_mixer(name: str) -> Callable[[Builder], Builder]:
    """Decorator: `@register_mixer("name")` on a class or function taking the TransformerConfig."""
    return _register(MIXERS, "mixer", name)


def register_feed_forward(name: str) -> Callable[[Builder], Builder]:
    """Decorator: `@register_feed_forward("name")` on a class or function taking the TransformerConfig."""
    return _register(FEED_FORWARDS, "feed-forward", name)


MOE = "moe"
"""The key moe.py registers the mixture-of-experts feed-forward under; chosen by `cfg.moe`, never by `mlp`."""


def _lookup(table: dict[str, Builder], field: str, name: str) -> Builder:
    # The built-ins register when their modules are imported; transformer.py imports them all, and
    # this module imports none of them, so the registry sits below every block (no import cycle).
    if name not in table or (table is FEED_FORWARDS and name == MOE):
        known = ", ".join(repr(n) for n in sorted(table) if not (table is FEED_FORWARDS and n == MOE))
        raise UserError(f"unknown {field} {name!r} (known: {known})")
    return table[name]


def build_mixer(cfg: TransformerConfig) -> nn.Module:
    """The token mixer `cfg.mixer` names, built for `cfg`."""
    return _lookup(MIXERS, "mixer", cfg.mixer)(cfg)


def build_feed_forward(cfg: TransformerConfig) -> nn.Module:
    """`MoE` when `cfg.moe` is set (experts' activation from `cfg.mlp`), else the one `cfg.mlp` names."""
    if cfg.moe is not None:
        return FEED_FORWARDS[MOE](cfg)
    return _lookup(FEED_FORWARDS, "mlp", cfg.mlp)(cfg)
