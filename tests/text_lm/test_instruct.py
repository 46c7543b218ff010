"""Instruction data: the loss is on responses only, and packed examples are computed as if alone."""

import json

import pytest
import torch
import torch.nn.functional as F

from shared.errors import UserError
from shared.nn.masks import document_causal_mask, segment_positions
from shared.tokenizer import Tokenizer
from text_lm.config import LlamaConfig
from text_lm.instruct import IGNORE, encode_example, pack, read_conversations
from text_lm.model import Llama

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 4
CONVERSATIONS = [
    [{"role": "user", "content": "Who is there?"}, {"role": "assistant", "content": "Nay, answer me."}],
    [
        {"role": "system", "content": "Speak verse."},
        {"role": "user", "content": "Stand, and unfold yourself."},
        {"role": "assistant", "content": "Long live the king!"},
        {"role": "user", "content": "Bernardo?"},
        {"role": "assistant", "content": "He."},
    ],
    [{"role": "user", "content": "Is Horatio there?"}, {"role": "assistant", "content": "A piece of him."}],
]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train([TEXT], vocab_size=300, progress=False)


def test_document_mask_worked_example():
    seg = torch.tensor([[0, 0, 1, 1, 1]])
    want = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]],
        dtype=torch.bool,
    )
    assert torch.equal(document_causal_mask(seg)[0, 0], want)
    assert segment_positions(seg).tolist() == [[0, 1, 0, 1, 2]]


def test_targets_are_the_responses_only(tok):
    X, Y, S = pack([encode_example(tok, c) for c in CONVERSATIONS], seq_len=200, pad_id=tok.pad_id, seed=0)
    assert X.shape[0] == 1  # all three fit one window
    said = {}
    for s in S[0].unique().tolist():
        kept = Y[0][(S[0] == s) & (Y[0] != IGNORE)]
        said[s] = tok.decode(kept)
    answers = sorted(v for v in said.values() if v)
    assert answers == sorted(
        ["Nay, answer me.<|eos|>", "Long live the king!<|eos|>He.<|eos|>", "A piece of him.<|eos|>"]
    )


@pytest.mark.parametrize("position", ["rope", "learned"])
def test_packed_loss_and_logits_equal_each_example_alone(tok, position):
    """The reference: each example run alone, its loss summed over response targets only."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=4, max_seq_len=256, position=position
    )
    model = Llama(cfg).eval()
    examples = [encode_example(tok, c) for c in CONVERSATIONS]
    X, Y, S = pack(examples, seq_len=200, pad_id=tok.pad_id, seed=0)
    assert X.shape[0] == 1
    out = model(X, Y, segments=S)
    nll, count = 0.0, 0
    for x, y in examples:
        alone = model(torch.tensor([x])).logits[0]  # (L, V)
        y = torch.tensor(y)
        nll += F.cross_entropy(alone, y, ignore_index=IGNORE, reduction="sum")
        count += int((y != IGNORE).sum())
        row = torch.nonzero((X[0].unfold(0, len(x), 1) == torch.tensor(x)).all(1))[
            0, 0
        ]  # where it was packed
        torch.testing.assert_close(out.logits[0, row : row + len(x)], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, nll / count, atol=1e-5, rtol=1e-5)


def test_prompt_tokens_never_reach_the_gradient(tok):
    """Changing every prompt token's target changes neither the loss nor any gradient."""
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=4, max_seq_len=256))
    X, Y, S = pack([encode_example(tok, c) for c in CONVERSATIONS], seq_len=200, pad_id=tok.pad_id)
    loss = model(X, Y, segments=S).loss
    grads = torch.autograd.grad(loss, list(model.parameters()))
    logits = model(X, segments=S).logits
    g_logits = torch.autograd.grad(
        F.cross_entropy(logits.flatten(0, 1), Y.flatten(), ignore_index=IGNORE), logits
    )[0]
    assert g_logits[Y == IGNORE].abs().max() == 0  # positions predicting prompt tokens: no gradient at all
    assert (Y != IGNORE).sum() > 0 and all(torch.isfinite(g).all() for g in grads)


def test_bad_lines_name_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n{oops\n")
    with pytest.raises(UserError, match=r"d.jsonl:2: not valid JSON"):
        read_conversations(p)
    p.write_text(json.dumps({"messages": [{"role": "king", "content": "x"}]}) + "\n")
    with pytest.raises(UserError, match=r"d.jsonl:1: messages\[0\].role is 'king'"):
        read_conversations(p)
    p.write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(UserError, match=r"d.jsonl:1: expected"):
        read_conversations(p)
