"""The chat template: our ids equal transformers' `apply_chat_template` on the exported tokenizer files."""

import pytest

from shared.tokenizer import Tokenizer
from shared.tokenizer.chat import encode_chat
from shared.tokenizer.hf_format import write_hf_tokenizer

MESSAGES = [
    {"role": "system", "content": "Thou art a player."},
    {"role": "user", "content": "What's in a name? That which we call a rose"},
    {"role": "assistant", "content": "By any other word would smell as sweet;\n  so Romeo would."},
    {"role": "user", "content": "Ay, 2 or 3 times 100!"},
]


def test_apply_chat_template_gives_our_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.train(
        ["What's in a name? That which we call a rose by any other word " * 3], 300, progress=False
    )
    write_hf_tokenizer(tok, tmp_path, model_max_length=256)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for generation_prompt in (False, True):
        ours, _ = encode_chat(tok, MESSAGES, add_generation_prompt=generation_prompt)
        theirs = hf.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=generation_prompt)
        theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
        assert list(theirs) == ours
    text = hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert tok.encode(text, allowed_special="all") == encode_chat(tok, MESSAGES, True)[0]


def test_only_assistant_content_and_its_end_are_trained():
    tok = Tokenizer.train(["a rose by any other word " * 3], 270, progress=False)
    ids, trained = encode_chat(tok, MESSAGES)
    said = tok.decode([t for t, keep in zip(ids, trained, strict=True) if keep])
    assert said == MESSAGES[2]["content"] + "<|eos|>"
