"""Byte-level BPE tokenizer: train, encode, decode, save and load, with numpy and `regex` only.

Byte-pair encoding (Sennrich et al. 2016) builds a vocabulary by repeatedly merging the
most frequent adjacent pair of symbols into a new symbol. GPT-2 (Radford et al. 2019) made
it byte-level: the base symbols are the 256 byte values of UTF-8, so every string, in any
script, with emoji or control characters, has an encoding and there is no unknown token.

Before BPE, text is pre-split by a regex into chunks and merges never cross chunks, so
" dog", " dog." and " dogs" share the token " dog" instead of learning "g." and "gs".
`GPT4_PATTERN` is tiktoken's cl100k_base pattern: contractions, letters with at most one
leading non-letter (usually the space), numbers in groups of at most 3 digits, punctuation
runs with their trailing newlines, and whitespace runs that leave the last space to the
next word.

Ids: 0-255 are bytes, 256 + i is merge i (rank order), then the special tokens. The
file (`tokenizer.json`, ARCHITECTURE.md section 3) stores exactly pattern, merges and specials,
which is what `tiktoken.Encoding(mergeable_ranks=...)` needs, and encodings match it.
Training lives in `shared/tokenizer/train.py`, encoding in `shared/tokenizer/encode.py` and
`shared/tokenizer/merge.py`, the file format in `shared/tokenizer/file_format.py`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import regex

from shared.errors import UserError
from shared.tokenizer.encode import GPT4_PATTERN, TextEncoder
from shared.tokenizer.file_format import (
    FILE_TYPE,
    FILE_VERSION,
    check_tokenizer_dict,
    read_tokenizer_json,
    write_tokenizer_json,
)
from shared.tokenizer.hf_format import from_hf_tokenizer

# The chat roles come last, so the older specials keep their order; a tokenizer trained before they
# existed lacks them and the chat template falls back to roles as text (shared/tokenizer/chat.py).
DEFAULT_SPECIAL_TOKENS = (
    "<|bos|>",
    "<|eos|>",
    "<|pad|>",
    "<image>",
    "<|sep|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
)


class Tokenizer:
    """A byte-level BPE vocabulary: `merges` (rank order), `special_tokens` and the split `pattern`.

    `special_tokens` is a sequence of names (ids assigned after the merges) or a mapping
    name -> id that must use exactly those ids.
    """

    def __init__(
        self,
        merges: Iterable[Sequence[int]],
        special_tokens: Sequence[str] | Mapping[str, int] = DEFAULT_SPECIAL_TOKENS,
        pattern: str = GPT4_PATTERN,
    ):
        self.merges: list[tuple[int, int]] = []
        vocab = [bytes([i]) for i in range(256)]
        for i, (a, b) in enumerate(merges):
            if not (0 <= a < 256 + i and 0 <= b < 256 + i):
                raise UserError(f"merge {i} [{a}, {b}] uses an id that does not exist yet (ids < {256 + i})")
            self.merges.append((a, b))
            vocab.append(vocab[a] + vocab[b])
        first = len(vocab)
        if isinstance(special_tokens, Mapping):
            specials = dict(special_tokens)
            expected = set(range(first, first + len(specials)))
            if set(specials.values()) != expected:
                raise UserError(
                    f"special token ids {sorted(specials.values())} must be {first}..{first + len(specials) - 1} "
                    f"(right after the {len(self.merges)} merges)"
                )
        else:
            specials = {name: first + i for i, name in enumerate(special_tokens)}
            if len(specials) != len(special_tokens):
                raise UserError(f"duplicate special token in {list(special_tokens)}")
        for name in specials:
            if not isinstance(name, str) or not name:
                raise UserError(f"special token names must be non-empty strings, got {name!r}")
        self.pattern = pattern
        self.special_tokens: dict[str, int] = dict(sorted(specials.items(), key=lambda kv: kv[1]))

        self._decoder = vocab + [name.encode("utf-8") for name in self.special_tokens]
        try:
            self._encoder = TextEncoder(pattern, vocab)
        except regex.error as e:
            raise UserError(f"invalid pre-split pattern {pattern!r}: {e}") from None
        self._special_regexes: dict[frozenset[str], regex.Pattern] = {}
        self._sha256: str | None = None

    # ---------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        pattern: str = GPT4_PATTERN,
        progress: bool = True,
    ) -> Tokenizer:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `texts` (see `shared/tokenizer/train.py`)."""
        from shared.tokenizer.train import count_chunks, learn_merges

        special_tokens = tuple(special_tokens)
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise UserError(
                f"vocab size {vocab_size} is too small: it must be at least 256 bytes + "
                f"{len(special_tokens)} special tokens = {256 + len(special_tokens)}"
            )
        try:
            regex.compile(pattern)
        except regex.error as e:
            raise UserError(f"invalid pre-split pattern {pattern!r}: {e}") from None
        counts = count_chunks(texts, pattern, progress)
        if not counts:
            raise UserError("no training text: the inputs are empty")
        return cls(learn_merges(counts, n_merges, progress), special_tokens, pattern)

    # ---------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        return len(self._decoder)

    def token_id(self, name: str) -> int:
        """Id of the special token `name`; UserError naming it if this tokenizer lacks it."""
        try:
            return self.special_tokens[name]
        except KeyError:
            raise UserError(
                f"special token {name!r} is not in this tokenizer (it has {list(self.special_tokens)})"
            ) from None

    @property
    def bos_id(self) -> int:
        return self.token_id("<|bos|>")

    @property
    def eos_id(self) -> int:
        return self.token_id("<|eos|>")

    @property
    def pad_id(self) -> int:
        return self.token_id("<|pad|>")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one id (a special token gives its name in UTF-8)."""
        return self.decode_bytes([token_id])

    # ---------------------------------------------------------------- encoding
    def encode(self, text: str, allowed_special: str | Iterable[str] = "none") -> list[int]:
        """Ids of `text`. Special-token strings become special ids only if allowed.

        `allowed_special` is "none" (they are encoded as ordinary text, never an error),
        "all", or a set of names.
        """
        allowed = self._allowed(allowed_special)
        if not allowed:
            return self._encoder.encode(text)
        pattern = self._special_regexes.get(allowed)
        if pattern is None:  # longest first, so "<|a|>x" is preferred over a prefix "<|a|>"
            alternatives = sorted(allowed, key=lambda s: (-len(s), s))
            pattern = regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")
            self._special_regexes[allowed] = pattern
        out: list[int] = []
        for i, part in enumerate(pattern.split(text)):  # odd indices are the captured specials
            if i % 2:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self._encoder.encode(part))
        return out

    def encode_batch(
        self, texts: Sequence[str], num_workers: int = 1, allowed_special: str | Iterable[str] = "none"
    ) -> list[list[int]]:
        """`[encode(t) for t in texts]`, in `num_workers` processes when that is more than 1."""
        texts = list(texts)
        allowed = self._allowed(allowed_special)
        if num_workers <= 1 or len(texts) < 2:
            return [self.encode(t, allowed) for t in texts]
        n = min(num_workers, len(texts))
        state = (self.merges, self.special_tokens, self.pattern)
        with multiprocessing.get_context().Pool(n, initializer=_init_worker, initargs=(state,)) as pool:
            work = functools.partial(_encode_in_worker, allowed=allowed)
            return pool.map(work, texts, chunksize=max(1, len(texts) // (n * 8)))

    def _allowed(self, allowed_special: str | Iterable[str]) -> frozenset[str]:
        if allowed_special == "none":
            return frozenset()
        if allowed_special == "all":
            return frozenset(self.special_tokens)
        if isinstance(allowed_special, str):
            raise UserError(
                f"allowed_special must be 'all', 'none' or a set of names, got {allowed_special!r}"
            )
        allowed = frozenset(allowed_special)
        for name in allowed:
            self.token_id(name)
        return allowed

    # ---------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of `ids` concatenated; UserError on an id outside [0, vocab_size)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if ids:
            lo, hi = min(ids), max(ids)
            if lo < 0 or hi >= len(self._decoder):
                bad = lo if lo < 0 else hi
                raise UserError(f"token id {bad} is out of range for a vocabulary of {len(self._decoder)}")
        return b"".join(map(self._decoder.__getitem__, ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- files
    def to_dict(self) -> dict:
        return {
            "type": FILE_TYPE,
            "version": FILE_VERSION,
            "pattern": self.pattern,
            "merges": [list(m) for m in self.merges],
            "special_tokens": dict(self.special_tokens),
        }

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the canonical JSON (sorted keys, no spaces): same before and after save/load."""
        if self._sha256 is None:
            canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self._sha256 = hashlib.sha256(canon.encode("utf-8")).hexdigest()
        return self._sha256

    def save(self, path: str | os.PathLike) -> None:
        """Write `tokenizer.json` atomically (`shared/tokenizer/file_format.py`)."""
        write_tokenizer_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer file, ours or a Hugging Face `tokenizers` byte-level BPE `tokenizer.json`
        (`shared/tokenizer/hf_format.py`); a missing, truncated or malformed file is a UserError naming it."""
        d = read_tokenizer_json(path)
        if isinstance(d, dict) and "model" in d and "type" not in d:
            d = from_hf_tokenizer(d, source=str(Path(path)))
        return cls.from_dict(d, source=str(Path(path)))

    @classmethod
    def from_dict(cls, d: object, source: str = "tokenizer") -> Tokenizer:
        """Validate the ARCHITECTURE.md section 3 fields of `d`; errors name `source` and the field."""
        d = check_tokenizer_dict(d, source)
        try:
            return cls(d["merges"], d["special_tokens"], d["pattern"])
        except UserError as e:
            raise UserError(f"{source}: {e}") from None

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, specials={len(self.special_tokens)})"


_WORKER: Tokenizer | None = None  # each encode_batch worker process builds its own copy once


def _init_worker(state) -> None:
    global _WORKER
    _WORKER = Tokenizer(*state)


def _encode_in_worker(text: str, allowed: frozenset[str]) -> list[int]:
    return _WORKER.encode(text, allowed)
