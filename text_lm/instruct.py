"""Instruction and chat data: jsonl -> conversations -> token windows with a loss mask, packed.

A line of the jsonl file is either `{"prompt": P, "response": R}` (one user turn and one
assistant turn, with an optional `"system"`) or `{"messages": [{"role", "content"}, ...]}`.
Each conversation goes through the chat template (`shared/tokenizer/chat.py`) and becomes one
example: ids (L,) and, per id, whether the model is trained to say it.

Loss on responses only (supervised fine-tuning as in InstructGPT, Ouyang et al. 2022): the
target y[t] = ids[t + 1] where that token is assistant content (or its closing `<|eos|>`), and
-100 (ignored by the cross-entropy) where it is prompt, header or padding, so the model never
learns to produce the user's words, only to answer them.

Packing: examples are laid end to end into windows of T tokens, as many whole examples as fit
(first fit, in a seeded order; a longer one is cut to T), the rest padded. `segments` (B, T)
numbers the examples of a window, and the model turns it into a block-diagonal causal mask with
positions restarting at 0 per example (`shared/nn/masks.py`): each example is computed exactly
as if it were alone in its window (tests/text_lm/test_instruct.py), at a fraction of the padding.

Worked example, T = 8, examples a (x: a0 a1 a2) and b (x: b0 b1 b2 b3):

    x         a0 a1 a2 b0 b1 b2 b3 pad
    y         -  -  a3 -  -  b3 b4 -        (- = -100; a3 is a's answer, b3 b4 b's)
    segments  0  0  0  1  1  1  1  2
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.tokenizer.chat import check_messages, encode_chat

IGNORE = -100


def read_conversations(path: str | os.PathLike) -> list[list[dict]]:
    """The conversations of a jsonl file (module docstring); a bad line is a UserError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"instruction data not found: {path}")
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: not valid JSON ({e.msg})") from None
            out.append(to_messages(row, where))
    if not out:
        raise UserError(f"{path}: no examples (an empty file)")
    return out


def to_messages(row: object, where: str) -> list[dict]:
    """One jsonl object -> a list of messages."""
    if isinstance(row, dict) and "messages" in row:
        return check_messages(row["messages"], where)
    if isinstance(row, dict) and "prompt" in row and "response" in row:
        for key in ("prompt", "response", "system"):
            if key in row and not isinstance(row[key], str):
                raise UserError(f"{where}: '{key}' must be a string")
        system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        return [
            *system,
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["response"]},
        ]
    raise UserError(f"{where}: expected {{'prompt', 'response'}} or {{'messages': [...]}}")


def encode_example(tok: Tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(x, y) of one conversation, each (L - 1,): inputs and targets, -100 where not trained."""
    ids, trained = encode_chat(tok, messages)
    y = [t if keep else IGNORE for t, keep in zip(ids[1:], trained[1:], strict=True)]
    return ids[:-1], y


def pack(
    examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Examples (x, y) -> (x, y, segments), each (N, T) int64 (module docstring)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    windows: list[list[tuple[list[int], list[int]]]] = [[]]
    used = 0
    for i in order:
        x, y = examples[i]
        x, y = x[:seq_len], y[:seq_len]
        if used + len(x) > seq_len:
            windows.append([])
            used = 0
        windows[-1].append((x, y))
        used += len(x)
    X = torch.full((len(windows), seq_len), pad_id, dtype=torch.long)
    Y = torch.full((len(windows), seq_len), IGNORE, dtype=torch.long)
    S = torch.zeros((len(windows), seq_len), dtype=torch.long)
    for w, parts in enumerate(windows):
        t = 0
        for s, (x, y) in enumerate(parts):
            X[w, t : t + len(x)] = torch.tensor(x)
            Y[w, t : t + len(y)] = torch.tensor(y)
            S[w, t : t + len(x)] = s
            t += len(x)
        S[w, t:] = len(parts)  # padding is a segment of its own: it never touches an example
    return X, Y, S


def response_bytes(tok: Tokenizer, examples: list[tuple[list[int], list[int]]]) -> tuple[int, int]:
    """(trained tokens, their UTF-8 bytes) over `examples`: the bits-per-byte denominator."""
    n_tok = n_bytes = 0
    for _, y in examples:
        kept = [t for t in y if t != IGNORE]
        n_tok += len(kept)
        n_bytes += sum(len(tok.token_bytes(t)) for t in kept if t not in tok.special_tokens.values())
    return n_tok, n_bytes
