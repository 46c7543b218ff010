"""Our byte-level BPE tokenizer, one package (numpy and `regex`; no tokenizer library).

    tokenizer.py    the `Tokenizer`: train, encode, decode, save, load (the one entry point)
    train.py        merge learning with incremental pair counts
    encode.py       the pre-split pattern, chunk cache, batched encoding
    merge.py        merges inside one chunk, by rank
    file_format.py  `tokenizer.json`: read, check, write

Imports only the standard library, numpy, `regex` and `shared.errors` / `shared.io`.
"""

from shared.tokenizer.encode import GPT4_PATTERN
from shared.tokenizer.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

__all__ = ["DEFAULT_SPECIAL_TOKENS", "GPT4_PATTERN", "Tokenizer"]
