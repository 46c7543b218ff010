"""The chat template: a conversation -> token ids, and which of them the model is trained to say.

    <|sep|>system\\n{content}<|eos|><|sep|>user\\n{content}<|eos|><|sep|>assistant\\n{content}<|eos|>

ChatML's layout (a start marker, the role as plain text and a newline, the content, an end
marker), with the start and end markers taken from the special tokens every tokenizer of ours
already has (`<|sep|>`, `<|eos|>`): a base model's vocabulary, ids and tokenizer hash stay what
they were, so LoRA fine-tuning needs no new embedding rows, and `<|eos|>` (the end of a document
in pre-training) is also the end of a turn. A reply ends when the model emits `<|eos|>`.
`add_generation_prompt` appends `<|sep|>assistant\\n` for the model to continue.

Content is encoded as text: a special token's name typed inside a message stays ordinary text
(transformers' tokenizer would match it as the special token; that is the one difference).
`CHAT_TEMPLATE` is the same layout in Jinja, written to the exported `tokenizer_config.json`
(`shared/tokenizer/hf_format.py`), so `AutoTokenizer.apply_chat_template` gives our ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import UserError

ROLES = ("system", "user", "assistant")
START, END = "<|sep|>", "<|eos|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|sep|>' + message['role'] + '\n' + message['content'] + '<|eos|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|sep|>assistant\n' }}{% endif %}"
)


def check_messages(messages: object, source: str) -> list[dict]:
    """`messages` if it is a list of {"role": one of ROLES, "content": str}; UserError naming `source`."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{source}: 'messages' must be a non-empty list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise UserError(f"{source}: messages[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise UserError(f"{source}: messages[{i}].role is {m['role']!r}; expected one of {list(ROLES)}")
        if not isinstance(m["content"], str):
            raise UserError(f"{source}: messages[{i}].content must be a string")
    return messages


def encode_chat(
    tok, messages: Sequence[dict], add_generation_prompt: bool = False
) -> tuple[list[int], list[bool]]:
    """(ids, trained): `trained[i]` is True for tokens the model learns to say, the content of each
    assistant turn and its closing `<|eos|>`; headers, user and system turns are False.

    The role header and the content are encoded as one text (as a tokenizer applying the template
    would), and a token counts as content only if it starts at or after the header's last byte.
    """
    start, end = tok.token_id(START), tok.token_id(END)
    ids: list[int] = []
    trained: list[bool] = []
    for m in messages:
        header = m["role"] + "\n"
        body = tok.encode(header + m["content"])
        ids.append(start)
        trained.append(False)
        offset, n_header = 0, len(header.encode("utf-8"))
        answer = m["role"] == "assistant"
        for t in body:
            ids.append(t)
            trained.append(answer and offset >= n_header)
            offset += len(tok.token_bytes(t))
        ids.append(end)
        trained.append(answer)
    if add_generation_prompt:
        ids.append(start)
        ids.extend(tok.encode("assistant\n"))
        trained.extend([False] * (len(ids) - len(trained)))
    return ids, trained
