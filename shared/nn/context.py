"""What one forward call of the stack hands every layer, built once in `Transformer.forward`.

Before: rope, mask, cache and start_pos threaded positionally through every block and mixer.
Now one small frozen record travels down instead; a mixer reads the fields it needs and
ignores the rest, so a new mixer (or a new per-call input) changes no signature in between.

The KV caches are one per layer: the context holds the list, and `for_layer(i)` is the view
that layer i sees, whose `kv_cache` is its own (or None when not decoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from shared.nn.kv_cache import KVCache


@dataclass(frozen=True)
class StackContext:
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    """RoPE cos, sin for this call's tokens: (T, Dh) each, or (B, 1, T, Dh) for per-row positions."""
    mask: torch.Tensor | None = None
    """Boolean, True = attend, broadcastable to (B, H, T, S); None = the configured default."""
    start_pos: int = 0
    """Position of the first new token (the cache holds positions [0, start_pos))."""
    kv_caches: Sequence[KVCache] | None = None
    """One cache per layer while decoding; None for a plain forward."""
    layer: int = 0
    """Index of the layer this view is for (picks its cache)."""

    def for_layer(self, i: int) -> StackContext:
        return replace(self, layer=i)

    @property
    def kv_cache(self) -> KVCache | None:
        return None if self.kv_caches is None else self.kv_caches[self.layer]


NO_CONTEXT = StackContext()
"""A mixer called on its own (tests, inspection): no RoPE, the default mask, no cache."""
