"""The chat template in both layouts (role tokens; roles as text for older tokenizers): our ids equal
transformers' `apply_chat_template` on the exported tokenizer files, and only replies are trained."""

import json

import pytest

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from shared.tokenizer.chat import ROLE_TOKEN_TEMPLATE, TEXT_ROLE_TEMPLATE, encode_chat, layout, stop_ids
from shared.tokenizer.hf_format import write_hf_tokenizer

MESSAGES = [
    {"role": "system", "content": "Thou art a player."},
    {"role": "user", "content": "What's in a name? That which we call a rose"},
    {"role": "assistant", "content": "By any other word would smell as sweet;\n  so Romeo would."},
    {"role": "user", "content": "Ay, 2 or 3 times 100!"},
]
TEXT = "What's in a name? That which we call a rose by any other word " * 3
OLD_SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>", "<image>", "<|sep|>")  # before the role tokens


@pytest.fixture(scope="module", params=["role_tokens", "text_roles"])
def tok(request):
    """A tokenizer trained with today's defaults, and one with the specials of older checkpoints."""
    if request.param == "role_tokens":
        return Tokenizer.train([TEXT], 300, progress=False)
    return Tokenizer.train([TEXT], 300, special_tokens=OLD_SPECIALS, progress=False)


def test_the_layout_follows_the_tokenizers_specials(tok):
    want = "role_tokens" if "<|assistant|>" in tok.special_tokens else "text_roles"
    assert layout(tok) == want
    ids, _ = encode_chat(tok, MESSAGES[1:3], add_generation_prompt=True)
    if want == "role_tokens":
        assert tok.decode(ids) == (
            "<|user|>" + MESSAGES[1]["content"] + "<|eos|><|assistant|>" + MESSAGES[2]["content"]
            + "<|eos|><|assistant|>"
        )  # fmt: skip
        assert ids[0] == tok.token_id("<|user|>") and ids[-1] == tok.token_id("<|assistant|>")
        assert stop_ids(tok) == {
            tok.eos_id,
            *(tok.token_id(f"<|{r}|>") for r in ("system", "user", "assistant")),
        }
    else:  # the pre-role-token layout, ids unchanged, so older checkpoints keep working
        assert tok.decode(ids) == (
            "<|sep|>user\n" + MESSAGES[1]["content"] + "<|eos|><|sep|>assistant\n" + MESSAGES[2]["content"]
            + "<|eos|><|sep|>assistant\n"
        )  # fmt: skip
        assert stop_ids(tok) == {tok.eos_id}


def test_apply_chat_template_gives_our_ids(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    write_hf_tokenizer(tok, tmp_path, model_max_length=256)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    want = ROLE_TOKEN_TEMPLATE if layout(tok) == "role_tokens" else TEXT_ROLE_TEMPLATE
    assert config["chat_template"] == want
    hf_added = {
        t["content"]: t["id"] for t in json.loads((tmp_path / "tokenizer.json").read_text())["added_tokens"]
    }
    assert hf_added == tok.special_tokens  # the role tokens are exported as specials where they exist
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for generation_prompt in (False, True):
        ours, _ = encode_chat(tok, MESSAGES, add_generation_prompt=generation_prompt)
        theirs = hf.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=generation_prompt)
        theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
        assert list(theirs) == ours
    text = hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert tok.encode(text, allowed_special="all") == encode_chat(tok, MESSAGES, True)[0]


def test_only_assistant_content_and_its_end_are_trained(tok):
    ids, trained = encode_chat(tok, MESSAGES)
    said = tok.decode([t for t, keep in zip(ids, trained, strict=True) if keep])
    assert said == MESSAGES[2]["content"] + "<|eos|>"


def test_a_tokenizer_without_chat_specials_is_one_user_error():
    bare = Tokenizer.train([TEXT], 270, special_tokens=("<|bos|>", "<|eos|>", "<|pad|>"), progress=False)
    with pytest.raises(UserError, match="no chat layout"):
        encode_chat(bare, MESSAGES)
