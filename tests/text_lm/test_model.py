"""The decoder against itself: presets, cached decoding, causality."""

import pytest
import torch

from shared.errors import UserError
from text_lm.config import PRESETS, LlamaConfig
from text_lm.generate import generate
from text_lm.model import Llama

SMALL = dict(vocab_size=97, max_seq_len=32, dim=32, n_layers=2, n_heads=4)


def small(preset, **kw):
    return Llama(LlamaConfig.preset(preset, **{**SMALL, **kw})).eval()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_trains_one_step(preset):
    big = preset in ("gpt2-small", "llama-125m")
    model = Llama(LlamaConfig.preset(preset, **(SMALL if big else {})))
    V = model.config.vocab_size
    idx, targets = torch.randint(0, V, (2, 16)), torch.randint(0, V, (2, 16))
    out = model(idx, targets=targets)
    loss = out.loss + (out.aux_loss if out.aux_loss is not None else 0)
    loss.backward()
    assert torch.isfinite(loss) and abs(out.loss.item() - torch.log(torch.tensor(V)).item()) < 1.0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "llama-moe-tiny"])
def test_kv_cached_decoding_equals_full_forward(preset):
    torch.manual_seed(0)
    model = small(preset)
    idx = torch.randint(0, 97, (2, 20))
    full = model(idx).logits
    caches = model.make_kv_caches(2, 20)
    steps = [model(idx[:, :8], kv_caches=caches).logits]  # prefill
    steps += [model(idx[:, t : t + 1], kv_caches=caches, start_pos=t).logits for t in range(8, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    prompt = idx[:, :5]
    assert torch.equal(
        generate(model, prompt, 15, temperature=0),
        generate(model, prompt, 15, temperature=0, use_cache=False),
    )


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "llama-moe-tiny"])
def test_changing_a_future_token_never_changes_earlier_logits(preset):
    torch.manual_seed(0)
    model = small(preset)
    idx = torch.randint(0, 97, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 97
    a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_decoding_past_the_training_length():
    torch.manual_seed(0)
    rope = small("llama-tiny", max_seq_len=8)
    out = generate(rope, torch.randint(0, 97, (1, 6)), 20, temperature=0)  # RoPE: works past 8
    assert out.shape == (1, 26)
    gpt2 = small("gpt2-tiny", max_seq_len=8)
    with pytest.raises(UserError, match="context of 8 tokens"):
        generate(gpt2, torch.randint(0, 97, (1, 6)), 20, temperature=0)
    with pytest.raises(UserError, match="learned position table"):
        gpt2(torch.randint(0, 97, (1, 9)))


def test_moe_preset_has_the_active_parameters_of_the_dense_one():
    dense, moe = Llama(LlamaConfig.preset("llama-tiny")), Llama(LlamaConfig.preset("llama-moe-tiny"))
    router = sum(layer.mlp.router.weight.numel() for layer in moe.stack.layers)
    assert moe.num_params(active=True) - router == dense.num_params()
    assert moe.num_params() > 2.5 * dense.num_params()


def test_tied_embeddings_share_storage():
    m = small("llama-tiny")
    assert m.lm_head.weight is m.embed.weight
    untied = small("llama-tiny", tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.embed.weight.data_ptr()
