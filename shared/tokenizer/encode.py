"""Text -> ids without special tokens: regex pre-split, a chunk cache, batched BPE merges.

Where the time goes in pure Python, and what this module does about it:

- The merge loop (~0.5 us per merge in the interpreter). Results are cached per chunk:
  natural text repeats its chunks (" the", ",", "\\n"), so each distinct chunk is merged
  once, and all the misses of one call are merged together by numpy (`merge_batch`).
- The regex pre-split (~0.45 us per chunk with the `regex` module, which we need for
  `\\p{L}`). For ASCII text (`str.isascii()` is O(1)) the GPT-4 pattern has an exact
  stdlib `re` twin with ASCII classes, about 3x faster.

The cache is a plain dict read with `map(cache.__getitem__, chunks)` (C speed); a KeyError
sends the call's missing chunks to one batch. It is bounded: when full it is cleared
(cheaper than LRU bookkeeping on every hit), and chunks over 64 characters are not kept.
"""

from __future__ import annotations

import itertools
import re

import regex

from shared.tokenizer.merge import PairHash, merge_batch, merge_parts

# tiktoken's cl100k_base pre-split pattern (GPT-4); `shared.tokenizer` re-exports it.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# GPT4_PATTERN restricted to ASCII input: \p{L} -> [A-Za-z], \p{N} -> [0-9], and the
# `regex` module's \s on ASCII, [\t\n\x0b\x0c\r ] (stdlib re's \s also has \x1c-\x1f).
_WS, _NOT_WS = r"[\t\n\x0b\x0c\r ]", r"[^\t\n\x0b\x0c\r ]"
GPT4_PATTERN_ASCII = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{1,3}+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]++[\r\n]*+"
    rf"|{_WS}++$|{_WS}*[\r\n]|{_WS}+(?!{_NOT_WS})|{_WS}"
)
_MAX_ENTRIES = 1 << 18  # chunks in the cache; ~50 MB when full
_MAX_KEY_LEN = 64
_BATCH_MIN = 32  # fewer new chunks than this: the plain loop beats numpy's overhead
_BLOCK = 1 << 20  # characters pre-split at once, so a huge text never becomes one huge list

_chain = itertools.chain.from_iterable


def split_blocks(text: str, size: int = _BLOCK):
    """`text` in pieces of about `size` characters, for the GPT-4 pattern only.

    Each cut is just before a space whose previous character is not whitespace. No match
    of the pattern crosses such a point (letters and punctuation take at most one leading
    non-letter, which would be the space itself; whitespace runs contain no non-space),
    the pattern has no look-behind, and its look-aheads (`(?!\\S)`, `$`) concern whitespace
    runs only, so pre-splitting the pieces gives exactly the chunks of the whole.
    """
    start = 0
    while len(text) - start > size:
        cut = text.find(" ", start + size)
        while cut > 0 and text[cut - 1].isspace():  # str.isspace is a superset of \s: safe side
            cut = text.find(" ", cut + 1)
        if cut < 0:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


class TextEncoder:
    """Encodes text without special tokens with tiktoken's rule; `Tokenizer` owns one."""

    def __init__(self, pattern: str, vocab: list[bytes]):
        """`vocab[i]` is the byte string of token i (bytes and merges, no special tokens)."""
        self.regex = regex.compile(pattern)
        # `ranks`: bytes -> id (the first id if a hand-made file repeats a byte string);
        # `pairs`: (left, right) -> id of the concatenation, for every split of every token
        # into two tokens: tiktoken's rule is "merge if the concatenation is a token".
        self.ranks: dict[bytes, int] = {}
        for i, tb in enumerate(vocab):
            self.ranks.setdefault(tb, i)
        self.pairs: dict[tuple[int, int], int] = {}
        get = self.ranks.get
        for tid in range(256, len(vocab)):
            tb = vocab[tid]
            if self.ranks[tb] != tid:
                continue
            for k in range(1, len(tb)):
                left, right = get(tb[:k]), get(tb[k:])
                if left is not None and right is not None:
                    self.pairs[(left, right)] = tid
        self.is_gpt4 = pattern == GPT4_PATTERN
        self.ascii_regex = None
        if self.is_gpt4:
            try:
                self.ascii_regex = re.compile(GPT4_PATTERN_ASCII)
            except re.error:  # possessive quantifiers need Python >= 3.11
                pass
        self.cache: dict[str, tuple[int, ...]] = {}
        self._pair_hash: PairHash | None = None

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; lone surrogates become U+FFFD, as in tiktoken."""
        try:
            if self.is_gpt4 and len(text) > _BLOCK:
                return list(_chain(map(self._encode_block, split_blocks(text))))
            return self._encode_block(text)
        except UnicodeEncodeError:
            return self.encode(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    def _encode_block(self, text: str) -> list[int]:
        splitter = self.ascii_regex if self.ascii_regex is not None and text.isascii() else self.regex
        chunks = splitter.findall(text)
        cache = self.cache
        try:
            return list(_chain(map(cache.__getitem__, chunks)))
        except KeyError:
            pass
        missing = set(chunks).difference(cache)
        if len(cache) + len(missing) > _MAX_ENTRIES:
            cache.clear()
            missing = set(chunks)
        new = self._encode_new(list(missing))
        cache.update(new)
        out = list(_chain(map(cache.__getitem__, chunks)))
        for key in [k for k in new if len(k) > _MAX_KEY_LEN]:
            del cache[key]
        return out

    def _encode_new(self, chunks: list[str]) -> dict[str, tuple[int, ...]]:
        new: dict[str, tuple[int, ...]] = {}
        batch_keys, batch_bytes = [], []
        for c in chunks:
            b = c.encode("utf-8")
            whole = self.ranks.get(b)  # tiktoken's shortcut, and the common case
            if whole is not None:
                new[c] = (whole,)
            elif len(b) <= _MAX_KEY_LEN:
                batch_keys.append(c)
                batch_bytes.append(b)
            else:  # long chunks would keep the batch looping for hundreds of steps
                new[c] = tuple(merge_parts(list(b), self.pairs))
        if len(batch_bytes) >= _BATCH_MIN:
            if self._pair_hash is None:
                self._pair_hash = PairHash(self.pairs)
            new.update(zip(batch_keys, merge_batch(batch_bytes, self._pair_hash)))
        else:
            for c, b in zip(batch_keys, batch_bytes):
                new[c] = tuple(merge_parts(list(b), self.pairs))
        return new
