"""The flat decoding step (text_lm/decode.py) against the model's full forward."""

import pytest
import torch

from text_lm.config import LlamaConfig
from text_lm.decode import Decoder, ModuleStepper, make_decoder
from text_lm.generate import generate
from text_lm.model import Llama

SMALL = dict(vocab_size=97, max_seq_len=32, dim=32, n_layers=2, n_heads=4)
PRESETS = ["llama-tiny", "gpt2-tiny", "llama-moe-tiny", "modern-tiny"]


def small(preset: str) -> Llama:
    torch.manual_seed(0)
    model = Llama(LlamaConfig.preset(preset, **SMALL)).eval()
    with torch.no_grad():  # zero-initialised output projections would make every layer a no-op
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("preset", PRESETS)
def test_each_step_gives_the_full_forward_logits(preset, static, batch):
    """Teacher-forced: the logits of every decoded position equal the full forward's at that position
    (GQA + RoPE, learned positions + LayerNorm + biases, MoE, QK-norm + ReLU^2 + soft-capping);
    static=True is the whole-cache masked step that torch.compile and CUDA graphs run; one row takes
    the views of q made once, two rows reshape per step."""
    model = small(preset)
    idx = torch.randint(0, 97, (batch, 14), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = model(idx).logits
        dec = Decoder(model, batch, 13, static=static)  # the last step fills the cache's last position
        got = [dec.prefill(idx[:, :5])] + [dec.step(idx[:, t]) for t in range(5, 13)]
    torch.testing.assert_close(torch.stack(got, 1), full[:, 4:13], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_large_batch_reads_the_weights_in_place_with_the_same_logits(preset, monkeypatch):
    """Past `SMALL` batch x parameters the decoder copies nothing: its matrices are views of the
    weights and its norms apply their own weights (nothing folded); the logits are the same."""
    import text_lm.decode as decode

    monkeypatch.setattr(decode, "SMALL", 0)
    model = small(preset)
    idx = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        full = model(idx).logits
        dec = Decoder(model, 2, 10)
        assert not dec.packed and dec.head[0]._base is not None  # a view of the weight
        got = [dec.prefill(idx[:, :4])] + [dec.step(idx[:, t]) for t in range(4, 10)]
    torch.testing.assert_close(torch.stack(got, 1), full[:, 3:10], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", PRESETS)
def test_greedy_tokens_equal_the_full_forward_argmax_path(preset):
    model = small(preset)
    prompt = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(
        generate(model, prompt, 16, temperature=0),
        generate(model, prompt, 16, temperature=0, use_cache=False),  # re-runs the whole sequence
    )


def test_the_callers_thread_count_is_restored():
    model = small("llama-tiny")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dec = Decoder(model, 1, 8)
        assert dec.threads == 1  # a small model decodes on one thread
        with torch.inference_mode():
            dec.step(dec.prefill(torch.tensor([[1, 2]])).argmax(-1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_model_the_flat_step_cannot_read_decodes_through_its_forward():
    """A mixer the decoder does not know (here a subclass of Attention) -> the module-by-module
    stepper, with the same greedy tokens as the full forward."""
    from shared.nn.attention import Attention

    class Custom(Attention):
        pass

    model = small("llama-tiny")
    layer = model.stack.layers[0]
    custom = Custom(model.stack.cfg)
    custom.load_state_dict(layer.attn.state_dict())
    layer.attn = custom
    assert isinstance(make_decoder(model, 1, 8), ModuleStepper)
    prompt = torch.randint(0, 97, (1, 3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(
        generate(model, prompt, 8, temperature=0), generate(model, prompt, 8, temperature=0, use_cache=False)
    )


def test_weights_changed_in_place_are_read_again():
    """The (in, out) copies are cached per model; an in-place update (an optimizer step) invalidates them."""
    model = small("llama-tiny")
    prompt = torch.randint(0, 97, (1, 3), generator=torch.Generator().manual_seed(4))
    generate(model, prompt, 4, temperature=0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.5)
    assert torch.equal(
        generate(model, prompt, 8, temperature=0), generate(model, prompt, 8, temperature=0, use_cache=False)
    )


def test_a_lora_adapted_model_decodes_with_its_merged_weights():
    """LoRA-wrapped projections are read merged (W + scale B A), made again at every decoder, so a
    training step on the adapters is seen by the next generation."""
    from shared.nn.lora import apply_lora

    model = small("llama-tiny")
    apply_lora(model, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], rank=4, alpha=8)
    idx = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(6))
    for _ in range(2):  # the second round after the adapters changed
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.add_(torch.randn_like(p) * 0.05)
        with torch.inference_mode():
            full = model(idx).logits
            dec = Decoder(model, 1, 9)
            got = [dec.prefill(idx[:, :3])] + [dec.step(idx[:, t]) for t in range(3, 9)]
        torch.testing.assert_close(torch.stack(got, 1), full[:, 2:9], atol=1e-5, rtol=1e-4)
