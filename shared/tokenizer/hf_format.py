"""Our tokenizer in Hugging Face's files: `tokenizer.json` (the `tokenizers` format) and
`tokenizer_config.json`, so `transformers.AutoTokenizer.from_pretrained(DIR)` gives our ids.

Writing them needs neither `tokenizers` nor `transformers` (both stay test-only): the format is
plain JSON. The pieces, in the order `tokenizers` applies them:

- pre_tokenizer: `Split` on our pre-split pattern (the GPT-4 one by default; each match is its
  own chunk, `behavior: Isolated`), then `ByteLevel` without its own regex, which maps every
  byte to one printable character (GPT-2's table: bytes that are printable stand for
  themselves, the other 68 are shifted to U+0100..), so BPE runs over characters;
- model: `BPE` with `vocab` (each token's bytes in that alphabet -> our id) and `merges` in
  our rank order; `ignore_merges: true` takes a chunk that is already one token as it is,
  which is what tiktoken (and so our encoder, tested against it) does;
- added_tokens: our special tokens, matched before the pre-split (`special: true`);
- decoder: `ByteLevel`, back from characters to bytes.

`from_hf_tokenizer` reads such a file back (ours, or another byte-level BPE with the same
parts) as the fields of our own file, which `Tokenizer.load` then builds, so a Hugging Face
checkpoint's tokenizer can prepare data here. (The `Tokenizer` is passed in, never imported:
`tokenizer.py` imports this module, not the reverse.)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from shared.errors import UserError
from shared.io import write_json_atomic
from shared.tokenizer.chat import chat_template
from shared.tokenizer.file_format import FILE_TYPE, FILE_VERSION


@functools.cache
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (`bytes_to_unicode`)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _chars(data: bytes) -> str:
    table = byte_to_char()
    return "".join(table[b] for b in data)


def to_hf_tokenizer(tok) -> dict:
    """The `tokenizers` JSON of a `Tokenizer` (ids identical to `tok.encode(text, allowed_special="all")`)."""
    n_base = 256 + len(tok.merges)
    pieces = [_chars(tok.token_bytes(i)) for i in range(n_base)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for name, i in tok.special_tokens.items()
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": {piece: i for i, piece in enumerate(pieces)},
            "merges": [[pieces[a], pieces[b]] for a, b in tok.merges],
        },
    }


def hf_tokenizer_config(tok, model_max_length: int) -> dict:
    """`tokenizer_config.json`: the fast tokenizer class, which specials are bos / eos / pad, the chat template."""
    names = {i: name for name, i in tok.special_tokens.items()}
    template = chat_template(tok)  # the layout this tokenizer's specials allow, if any
    chat = {"chat_template": template} if template else {}
    return {
        **chat,  # shared/tokenizer/chat.py: apply_chat_template gives our ids
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names[tok.bos_id],
        "eos_token": names[tok.eos_id],
        "pad_token": names[tok.pad_id],
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {"content": name, "special": True, "normalized": False, "lstrip": False, "rstrip": False}
            for name, i in tok.special_tokens.items()
        },
    }


def write_hf_tokenizer(tok, folder: str | os.PathLike, model_max_length: int) -> None:
    """Write `tokenizer.json` and `tokenizer_config.json` into `folder`, atomically."""
    folder = Path(folder)
    write_json_atomic(folder / "tokenizer.json", to_hf_tokenizer(tok))
    write_json_atomic(folder / "tokenizer_config.json", hf_tokenizer_config(tok, model_max_length))


def from_hf_tokenizer(d: object, source: str = "tokenizer.json") -> dict:
    """Our tokenizer.json fields from a `tokenizers` byte-level BPE JSON; what we cannot express is a UserError."""
    try:
        model = d["model"]
        if model.get("type") != "BPE":
            raise UserError(
                f"{source}: model.type is {model.get('type')!r}; only byte-level BPE is supported"
            )
        pattern = _split_pattern(d.get("pre_tokenizer"), source)
        vocab: dict[str, int] = model["vocab"]
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
        added = {t["content"]: t["id"] for t in d.get("added_tokens", [])}
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{source}: not a tokenizers JSON file (missing or malformed {e})") from None
    table = byte_to_char()
    base = [vocab.get(table[b]) for b in range(256)]
    if base != list(range(256)):
        raise UserError(f"{source}: ids 0-255 must be the 256 bytes in order (a byte-level BPE vocabulary)")
    ids = dict(vocab)
    out: list[tuple[int, int]] = []
    for rank, (a, b) in enumerate(merges):
        want = 256 + rank
        if ids.get(a + b) != want or a not in ids or b not in ids:
            raise UserError(f"{source}: merge {rank} ({a!r} {b!r}) does not create id {want}")
        out.append((ids[a], ids[b]))
    specials = {name: i for name, i in added.items() if i >= 256 + len(out)}
    return {
        "type": FILE_TYPE,
        "version": FILE_VERSION,
        "pattern": pattern,
        "merges": [list(m) for m in out],
        "special_tokens": dict(sorted(specials.items(), key=lambda kv: kv[1])),
    }


def _split_pattern(pre, source: str) -> str:
    steps = pre.get("pretokenizers", [pre]) if isinstance(pre, dict) else []
    for step in steps:
        if step.get("type") == "Split" and "Regex" in step.get("pattern", {}):
            return step["pattern"]["Regex"]
    raise UserError(f"{source}: pre_tokenizer has no Split regex; cannot reproduce its pre-split")
