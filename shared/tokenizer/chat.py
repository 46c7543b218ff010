"""The chat template: a conversation -> token ids, and which of them the model is trained to say.

Two layouts, chosen by the tokenizer (`layout`):

- role tokens, for tokenizers that have `<|system|>`, `<|user|>`, `<|assistant|>` (every tokenizer
  trained since they joined DEFAULT_SPECIAL_TOKENS):

      <|system|>{content}<|eos|><|user|>{content}<|eos|><|assistant|>{content}<|eos|>

  ChatML's and nanochat's shape (one special token opens a turn and names its role, one closes
  it), with the role itself a single id that ordinary text can never produce, so a user cannot
  forge a turn by typing "assistant\\n". `add_generation_prompt` appends `<|assistant|>`.
- roles as text, for older tokenizers that lack them (checkpoints trained before; their ids and
  hash must not change):

      <|sep|>system\\n{content}<|eos|><|sep|>user\\n{content}<|eos|><|sep|>assistant\\n{content}<|eos|>

  ChatML's layout on the specials every tokenizer of ours already had; `add_generation_prompt`
  appends `<|sep|>assistant\\n`.

Both end a turn with `<|eos|>` (the end of a document in pre-training), so a reply ends when the
model emits it. The role tokens never occur in pre-training; fine-tuning is what teaches them.

Content is encoded as text: a special token's name typed inside a message stays ordinary text
(transformers' tokenizer would match it as the special token; that is the one difference).
`chat_template(tok)` is the tokenizer's layout in Jinja, written to the exported
`tokenizer_config.json` (`shared/tokenizer/hf_format.py`), so `AutoTokenizer.apply_chat_template`
gives our ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import UserError

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}
START, END = "<|sep|>", "<|eos|>"

ROLE_TOKEN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|eos|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
TEXT_ROLE_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|sep|>' + message['role'] + '\n' + message['content'] + '<|eos|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|sep|>assistant\n' }}{% endif %}"
)


def layout(tok) -> str:
    """ "role_tokens" or "text_roles" (module docstring); UserError if `tok` supports neither."""
    names = set(tok.special_tokens)
    if END in names and set(ROLE_TOKENS.values()) <= names:
        return "role_tokens"
    if {START, END} <= names:
        return "text_roles"
    raise UserError(
        f"this tokenizer has no chat layout: it needs {END} and either {list(ROLE_TOKENS.values())} or "
        f"{START} among its special tokens (it has {list(tok.special_tokens)})"
    )


def chat_template(tok) -> str | None:
    """The Jinja template of `tok`'s layout, or None if it has no chat layout."""
    try:
        return ROLE_TOKEN_TEMPLATE if layout(tok) == "role_tokens" else TEXT_ROLE_TEMPLATE
    except UserError:
        return None


def stop_ids(tok) -> set[int]:
    """Ids that end a generated reply: `<|eos|>`, and a role token (a new turn) where there are any."""
    ids = {tok.token_id(END)}
    if layout(tok) == "role_tokens":
        ids |= {tok.token_id(name) for name in ROLE_TOKENS.values()}
    return ids


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
    assistant turn and its closing `<|eos|>`; role tokens / headers, user and system turns are False.

    Roles as text: the header ("assistant\\n") and the content are encoded as one text (as a
    tokenizer applying the template would), and a token counts as content only if it starts at or
    after the header's last byte.
    """
    if layout(tok) == "role_tokens":
        return _encode_role_tokens(tok, messages, add_generation_prompt)
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


def _encode_role_tokens(
    tok, messages: Sequence[dict], add_generation_prompt: bool
) -> tuple[list[int], list[bool]]:
    end = tok.token_id(END)
    ids: list[int] = []
    trained: list[bool] = []
    for m in messages:
        body = tok.encode(m["content"])
        answer = m["role"] == "assistant"
        ids += [tok.token_id(ROLE_TOKENS[m["role"]]), *body, end]
        trained += [False, *[answer] * len(body), answer]
    if add_generation_prompt:
        ids.append(tok.token_id(ROLE_TOKENS["assistant"]))
        trained.append(False)
    return ids, trained
