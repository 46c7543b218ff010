"""Key/value cache for incremental decoding.

Without a cache, generating N tokens re-runs attention over the whole prefix at every
step: O(N^2) work. With it, each step computes q/k/v for the new token only and attends
to the stored keys and values: O(N) in total.

One `KVCache` per layer, preallocated to `max_len` positions and written in place, so
decoding allocates nothing per token and never grows past what was asked for:

    k, v buffers: (B, K, max_len, Dh)
    prefill:  update(k[:, :, 0:T0], ..., start=0)  -> views over positions [0, T0)
    decode:   update(k[:, :, 0:1],  ..., start=T0) -> views over positions [0, T0 + 1)
"""

from __future__ import annotations

import torch

from shared.errors import UserError


class KVCache:
    def __init__(
        self,
        batch_size: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, K, T, Dh) at positions [start, start + T); return views over [0, start + T)."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise UserError(
                f"sequence of {end} tokens does not fit the KV cache of {self.max_len} positions "
                "(shorten the prompt or ask for fewer new tokens)"
            )
        self.k[:, :, start:end] = k.to(self.k.dtype)
        self.v[:, :, start:end] = v.to(self.v.dtype)
        return self.k[:, :, :end], self.v[:, :, :end]

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (beam search, dropping finished rows)."""
        self.k, self.v = self.k[index], self.v[index]
