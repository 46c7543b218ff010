"""Byte-level BPE tokenizer: round trips, tiktoken parity, training, special tokens.

The `tok` fixture and `play` are in conftest.py; the file format is tested in test_tokenizer_file.py.
"""

from __future__ import annotations

import random
import re
import warnings

import numpy as np
import pytest
import regex
import tiktoken
from conftest import play
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import UserError
from shared.tokenizer import DEFAULT_SPECIAL_TOKENS, GPT4_PATTERN, Tokenizer
from shared.tokenizer.encode import GPT4_PATTERN_ASCII, split_blocks
from shared.tokenizer.merge import PairHash, merge_batch, merge_parts, merge_parts_long

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tiktoken_twin(tok: Tokenizer) -> tiktoken.Encoding:
    ranks = {tok.decode_bytes([i]): i for i in range(256 + len(tok.merges))}
    return tiktoken.Encoding(
        name="twin", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens
    )


@pytest.fixture(scope="module")
def twin(tok: Tokenizer) -> tiktoken.Encoding:
    return _tiktoken_twin(tok)


# ---------------------------------------------------------------- round trips
@FAST
@given(st.text())
def test_roundtrip_any_text(tok, s):
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode(tok.encode(s, allowed_special="all")) == s


@pytest.mark.parametrize(
    "s",
    [
        "",
        "\x00",
        "a\r\nb\r\n",
        "e\u0301\u0301",
        "👩‍👩‍👧 🇫🇷",
        "  \n\n\t x",
        "1234567",
        "don't WE'LL",
        "<|bos|>",
    ],
)
def test_roundtrip_edge_cases(tok, twin, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert tok.decode_bytes(ids) == s.encode("utf-8")
    assert ids == twin.encode_ordinary(s)


@FAST
@given(st.binary(max_size=64))
def test_any_bytes_decode_exactly(tok, b):
    ids = list(b)  # ids 0-255 are the raw bytes
    assert tok.decode_bytes(ids) == b
    assert tok.decode(ids) == b.decode("utf-8", errors="replace")


def test_lone_surrogates_become_replacement_char(tok, twin):
    s = "a\ud800b"
    assert tok.encode(s) == twin.encode_ordinary(s)
    assert tok.decode(tok.encode(s)) == "a\ufffdb"


# ---------------------------------------------------------------- tiktoken parity
def test_same_ids_as_tiktoken_on_held_out_play(tok, twin):
    text = play("tempest_gut.txt")
    ids = tok.encode(text)
    assert ids == twin.encode_ordinary(text)
    assert len(text.encode("utf-8")) / len(ids) > 1.8  # merges learned on other plays compress this one
    assert tok.encode_batch([text, text[:1000]], num_workers=2) == [ids, tok.encode(text[:1000])]


@FAST
@given(st.one_of(st.text(max_size=80), st.text(alphabet="  etaoinshrdlu\n\n\r,.'TIW0123", max_size=200)))
def test_same_ids_as_tiktoken_on_any_text(tok, twin, s):
    assert tok.encode(s) == twin.encode_ordinary(s)


def test_long_chunks_and_fresh_cache_match_tiktoken(tok, twin):
    texts = ["a" * 5000, "ab" * 3000 + " " + "x" * 70, "9" * 1001, " " * 700 + "z", "the" * 400]
    for text in texts:
        assert Tokenizer.from_dict(tok.to_dict()).encode(text) == twin.encode_ordinary(text)


def test_text_longer_than_a_block_is_split_exactly(tok, twin, monkeypatch):
    import shared.tokenizer.encode

    monkeypatch.setattr(shared.tokenizer.encode, "_BLOCK", 997)
    text = play("hamlet_gut.txt")[:60000] + " é  \n\n" + "x" * 3000
    assert Tokenizer.from_dict(tok.to_dict()).encode(text) == twin.encode_ordinary(text)


def test_custom_pattern_matches_tiktoken():
    gpt2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
    tok = Tokenizer.train([play("macbeth_gut.txt")], 400, special_tokens=(), pattern=gpt2, progress=False)
    text = play("tempest_gut.txt")[:30000] + " 12345  \n x"
    assert tok.pattern == gpt2 and tok.encode(text) == _tiktoken_twin(tok).encode_ordinary(text)
    assert tok.decode(tok.encode(text)) == text


def test_ascii_fast_path_matches_unicode_pattern():
    ascii_re, full_re = re.compile(GPT4_PATTERN_ASCII), regex.compile(GPT4_PATTERN)
    rng = random.Random(0)
    alphabet = "aZ09 '\t\n\r\x0b\x0c\x1c.,-!sdmtlLvVeRE"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert ascii_re.findall(s) == full_re.findall(s), repr(s)


@FAST
@given(st.text(alphabet=" \n\t.ab1é", max_size=200), st.integers(1, 20))
def test_block_splitting_keeps_the_chunks(s, size):
    full_re = regex.compile(GPT4_PATTERN)
    blocks = list(split_blocks(s, size))
    assert "".join(blocks) == s
    assert [c for b in blocks for c in full_re.findall(b)] == full_re.findall(s)


def test_batch_list_and_heap_merges_agree(tok):
    pairs = tok._encoder.pairs
    rng = random.Random(1)
    chunks = [bytes(rng.choice(b" etaoinshr") for _ in range(rng.randint(1, 40))) for _ in range(500)]
    expected = [tuple(merge_parts(list(c), pairs)) for c in chunks]
    assert merge_batch(chunks, PairHash(pairs)) == expected
    assert [tuple(merge_parts_long(list(c), pairs)) for c in chunks] == expected


def test_merge_order_is_by_rank_not_left_to_right():
    # "bc" (256) ranks before "ab" (257): "abc" -> a + bc, and "abc" itself is not a token.
    tok = Tokenizer([(98, 99), (97, 98)], special_tokens=())
    assert tok.encode("abc") == [97, 256]
    assert tok.encode("abd") == [257, 100]


# ---------------------------------------------------------------- training
def test_hand_worked_training_example():
    # Pair counts in "aaabdaaabac": aa 4 (overlapping), ab 2, others 1. Merge aa; then ab and
    # (aa, a) tie at 2 and the smaller pair (97, 98) wins; then aa+ab; then ties at 1 go to
    # the smallest pair: (97, 99) "ac", then (100, 258) "daaab".
    tok = Tokenizer.train(["aaabdaaabac"], vocab_size=256 + 5, special_tokens=(), progress=False)
    assert tok.merges == [(97, 97), (97, 98), (256, 257), (97, 99), (100, 258)]
    assert tok.encode("aaabdaaabac") == [258, 260, 259]
    assert tok.vocab_size == 261 and tok.special_tokens == {}


def test_training_is_deterministic_and_order_free():
    texts = [play("sonnets_gut.txt")[:40000], play("lovers_complaint_gut.txt")]
    a = Tokenizer.train(texts, 400, progress=False)
    b = Tokenizer.train(list(reversed(texts)), 400, progress=False)
    assert a.merges == b.merges and a.sha256 == b.sha256
    vocab = [a.decode_bytes([i]) for i in range(a.vocab_size - len(a.special_tokens))]
    assert len(set(vocab)) == len(vocab)  # every token has distinct bytes (tiktoken needs it)


def test_vocab_size_counts_bytes_merges_and_specials(tok):
    assert tok.vocab_size == 512 == 256 + len(tok.merges) + len(DEFAULT_SPECIAL_TOKENS)
    assert len(tok.merges) == 512 - 256 - 8  # the 8 defaults take their ids from the merges' share
    assert [tok.bos_id, tok.eos_id, tok.pad_id] == [504, 505, 506]
    assert tok.token_id("<image>") == 507 and tok.token_id("<|sep|>") == 508
    roles = [tok.token_id(name) for name in ("<|system|>", "<|user|>", "<|assistant|>")]
    assert roles == [509, 510, 511]  # the chat roles last, so the older specials keep their order


def test_too_small_vocab_and_empty_corpus_are_user_errors():
    with pytest.raises(UserError, match="vocab size 260 is too small"):
        Tokenizer.train(["hello"], 260, progress=False)
    with pytest.raises(UserError, match="no training text"):
        Tokenizer.train([], 300, progress=False)


def test_small_corpus_gives_fewer_merges_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok = Tokenizer.train(["abab"], 1000, special_tokens=("<|eos|>",), progress=False)
    assert tok.merges == [(97, 98), (256, 256)] and tok.eos_id == 258
    assert any("only supports 2 merges" in str(w.message) for w in caught)


# ---------------------------------------------------------------- special tokens
def test_special_tokens_allowed_or_plain_text(tok):
    text = "<|bos|>Hail<|eos|><|pad|>"
    plain = tok.encode(text)
    assert not set(plain) & set(tok.special_tokens.values())
    assert tok.decode(plain) == text
    assert tok.encode(text, allowed_special="all") == [
        tok.bos_id,
        *tok.encode("Hail"),
        tok.eos_id,
        tok.pad_id,
    ]
    only_eos = tok.encode(text, allowed_special={"<|eos|>"})
    assert only_eos == [*tok.encode("<|bos|>Hail"), tok.eos_id, *tok.encode("<|pad|>")]
    assert tok.decode(only_eos) == text


def test_unknown_special_token_is_a_user_error(tok):
    with pytest.raises(UserError, match="<\\|nope\\|>"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(UserError, match="<\\|nope\\|>"):
        tok.token_id("<|nope|>")
    with pytest.raises(UserError, match="<\\|bos\\|>"):
        _ = Tokenizer([], special_tokens=()).bos_id


def test_decode_checks_ids(tok):
    assert tok.decode(np.array(tok.encode("Hail, Caesar!"))) == "Hail, Caesar!"
    for bad in (512, -1):
        with pytest.raises(UserError, match=f"token id {bad} is out of range"):
            tok.decode([0, bad])
