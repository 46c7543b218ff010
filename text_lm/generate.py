"""Autoregressive generation with the KV cache.

The prompt is run once (prefill) and fills each layer's cache; every later step feeds one
token at position start_pos and reads the cached keys/values, so a step costs O(T) instead
of re-running the O(T^2) forward over the whole sequence. The steps run on `text_lm/decode.py`'s
`Decoder` (a flat, static-shape step over preallocated buffers: dispatch, not arithmetic, is
what a small model's decoding costs).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from shared.errors import UserError
from shared.nn.sampling import decode_step
from text_lm.decode import make_decoder
from text_lm.model import Llama


@torch.inference_mode()
def generate_tokens(
    model: Llama,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    vocab_limit: int | None = None,
    compile: bool = False,
) -> Iterator[torch.Tensor]:
    """prompt (B, T0) -> yields the next token ids (B,) one step at a time.

    Stops after `max_new_tokens`, or when every row has produced `eos_id`. Without the cache
    (use_cache=False) each step re-runs the full sequence: the slow reference path.
    vocab_limit: sample only ids below it (the tokenizer's size when the model's vocabulary is padded).
    compile: torch.compile the decoding step (static shapes; for a GPU's CUDA graphs: on a CPU it no longer pays).
    """
    B, T0 = prompt.shape
    if T0 == 0:
        raise UserError("the prompt is empty (it needs at least one token)")
    limit = model.config.max_seq_len if model.config.position == "learned" else None
    if limit is not None and T0 + max_new_tokens > limit:
        raise UserError(
            f"prompt ({T0} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"context of {limit} tokens (learned positions)"
        )
    if not use_cache:
        yield from _full_forward_tokens(
            model, prompt, max_new_tokens, eos_id, temperature, top_k, top_p, generator, vocab_limit
        )
        return
    on_gpu = prompt.device.type == "cuda"
    decoder = make_decoder(model, B, T0 + max_new_tokens, compile=compile, cuda_graph=compile and on_gpu)
    logits = decoder.prefill(prompt)
    done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    for step in range(max_new_tokens):
        nxt = decode_step(logits, done, eos_id, temperature, top_k, top_p, generator, vocab_limit)
        yield nxt
        if step == max_new_tokens - 1 or (eos_id is not None and done.all()):
            return
        logits = decoder.step(nxt)


def _full_forward_tokens(model, prompt, max_new_tokens, eos_id, *sampling) -> Iterator[torch.Tensor]:
    """The slow reference: every step re-runs the whole sequence through the model's forward."""
    seq = prompt
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for step in range(max_new_tokens):
        nxt = decode_step(model(seq).logits[:, -1], done, eos_id, *sampling)
        yield nxt
        if done.all() or step == max_new_tokens - 1:
            return
        seq = torch.cat([seq, nxt[:, None]], dim=1)


def generate(model: Llama, prompt: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
    """Collect `generate_tokens` into (B, T0 + new) ids."""
    new = list(generate_tokens(model, prompt, max_new_tokens, **kwargs))
    return torch.cat([prompt, torch.stack(new, dim=1)], dim=1) if new else prompt


def generate_from_args(model: Llama, ids: list[int], args, tok, eos_id: int | None, generator=None):
    """`generate_tokens` for the CLIs (`generate`, `chat`): the prompt ids and the sampling flags of
    `shared/train/sampling_args.py` (`args.device`, `max_new_tokens`, `temperature`, `top_k`, `top_p`)."""
    return generate_tokens(
        model,
        torch.tensor([ids], device=args.device),
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        eos_id=eos_id,
        generator=generator,
        vocab_limit=tok.vocab_size,
    )
