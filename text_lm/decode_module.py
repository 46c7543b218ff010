"""Decoding through the model's own forward, a token at a time: the fallback of `text_lm/decode.py`."""

from __future__ import annotations

import torch

from text_lm.model import Llama


class ModuleStepper:
    """The same interface over the model's own forward with its KV caches: for a model the flat
    step cannot read (a custom mixer, an unknown linear layer)."""

    def __init__(self, model: Llama, batch_size: int, max_len: int):
        self.model, self.caches, self.pos = model, model.make_kv_caches(batch_size, max_len), 0

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        self.pos = prompt.shape[1]
        return self.model(prompt, kv_caches=self.caches).logits[:, -1]

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        self.pos += 1
        return self.model(tok[:, None], kv_caches=self.caches, start_pos=self.pos - 1).logits[:, -1]
