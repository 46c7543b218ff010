"""Our tokenizer in Hugging Face's files: `tokenizers` and `AutoTokenizer` give our ids, and read back.

The reference is the `tokenizers` library itself (test-only), fed the JSON we write.
"""

from __future__ import annotations

import json

import pytest
from conftest import play
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.tokenizer.hf_format import from_hf_tokenizer, to_hf_tokenizer, write_hf_tokenizer

tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>", "<image>", "<|sep|>", "<|system|>", "<|user|>", "<|assistant|>"]
pieces = st.one_of(
    st.text(max_size=40),  # any Unicode, surrogates excluded
    st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u3000", max_size=12),  # whitespace runs of every kind
    st.text(alphabet="ab1é'sT.,!?-😀日", max_size=20),
    st.sampled_from(SPECIALS),
)


@pytest.fixture(scope="module")
def hf(tok):
    return tokenizers.Tokenizer.from_str(json.dumps(to_hf_tokenizer(tok)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(pieces, max_size=8).map("".join))
def test_tokenizers_gives_our_ids_on_any_text(tok, hf, text):
    ours = tok.encode(text, allowed_special="all")
    assert hf.encode(text, add_special_tokens=False).ids == ours
    assert hf.decode(ours, skip_special_tokens=False) == tok.decode(ours)


def test_tokenizers_gives_our_ids_on_a_held_out_play(tok, hf):
    text = play("hamlet_gut.txt")
    assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text)


def test_auto_tokenizer_reads_the_folder(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    write_hf_tokenizer(tok, tmp_path, model_max_length=256)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "ROMEO:\n  What light <|eos|> through yonder 😀"
    assert auto(text)["input_ids"] == tok.encode(text, allowed_special="all")
    assert (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
    assert auto.model_max_length == 256


def test_round_trip_back_to_ours(tok):
    back = Tokenizer.from_dict(from_hf_tokenizer(json.loads(json.dumps(to_hf_tokenizer(tok)))))
    assert back.sha256 == tok.sha256


def test_a_non_bpe_or_non_byte_level_file_is_one_clear_error(tok):
    d = to_hf_tokenizer(tok)
    with pytest.raises(UserError, match="model.type is 'WordPiece'"):
        from_hf_tokenizer({**d, "model": {**d["model"], "type": "WordPiece"}}, "x.json")
    vocab = dict(d["model"]["vocab"])
    vocab["A"], vocab["B"] = vocab["B"], vocab["A"]
    with pytest.raises(UserError, match="ids 0-255 must be the 256 bytes"):
        from_hf_tokenizer({**d, "model": {**d["model"], "vocab": vocab}}, "x.json")
    with pytest.raises(UserError, match="x.json: not a tokenizers JSON"):
        from_hf_tokenizer({"version": "1.0"}, "x.json")


def test_a_small_unusual_tokenizer(tmp_path):
    """Another pattern and specials not in our defaults survive the trip."""
    tok = Tokenizer.train(
        [play("sonnets_gut.txt")[:20000]],
        300,
        special_tokens=["<s>", "</s>", "<pad>"],
        pattern=r"\w+|\s+|[^\w\s]+",
        progress=False,
    )
    hf = tokenizers.Tokenizer.from_str(json.dumps(to_hf_tokenizer(tok)))
    for text in ["aaab abab", "ba</s>ab <s>", "  \n\nxyz!?"]:
        assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text, allowed_special="all")
    assert Tokenizer.from_dict(from_hf_tokenizer(to_hf_tokenizer(tok))).sha256 == tok.sha256
