"""Parity with Hugging Face transformers: same weights -> same logits and greedy tokens."""

import pytest
import torch

from shared.errors import UserError
from text_lm.config import LlamaConfig
from text_lm.generate import generate
from text_lm.hf_convert import load_hf, save_hf
from text_lm.model import Llama

transformers = pytest.importorskip("transformers")

COMMON = dict(
    vocab_size=120,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def hf_llama(tie, theta):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**COMMON, tie_word_embeddings=tie, rope_theta=theta)
    return transformers.LlamaForCausalLM(cfg).eval()


def hf_mixtral():
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2, rope_theta=10000.0)
    return transformers.MixtralForCausalLM(cfg).eval()


def assert_same_model(ours: Llama, hf, steps=20):
    ours.eval()
    idx = torch.randint(0, 120, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx).logits, hf(idx).logits, atol=1e-5, rtol=1e-4)
        prompt = idx[:1, :6]
        hf_out = hf.generate(
            prompt,
            max_new_tokens=steps,
            do_sample=False,
            min_new_tokens=steps,
            pad_token_id=0,
            eos_token_id=None,
        )
    assert torch.equal(generate(ours, prompt, steps, temperature=0), hf_out)


@pytest.mark.parametrize("tie,theta", [(True, 500000.0), (False, 10000.0)])
def test_llama_from_hf_matches(tmp_path, tie, theta):
    hf = hf_llama(tie, theta)
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)
    assert ours.config.tie_embeddings == tie and ours.config.rope_theta == theta
    assert_same_model(ours, hf)


def test_mixtral_from_hf_matches(tmp_path):
    hf = hf_mixtral()
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)
    assert ours.config.moe.n_experts == 4 and ours.config.moe.top_k == 2
    assert_same_model(ours, hf)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(n_kv_heads=2, rope_theta=20000.0),
        dict(n_kv_heads=4, tie_embeddings=False, bias=True),
        dict(
            n_kv_heads=1,
            rope_scaling=dict(
                factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16
            ),
        ),
        dict(n_kv_heads=2, moe=dict(n_experts=4, top_k=2, hidden_dim=48)),
    ],
    ids=["gqa", "untied-bias", "mqa-llama3-scaling", "mixtral"],
)
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, overrides):
    torch.manual_seed(0)
    ours = Llama(LlamaConfig.preset("llama-tiny", vocab_size=120, dim=64, n_layers=2, n_heads=8, **overrides))
    with torch.no_grad():  # non-trivial norms so a mismatch in norm handling would show
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
    save_hf(ours, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert_same_model(ours, hf, steps=10)
    back = load_hf(tmp_path)  # and back again, strictly
    idx = torch.randint(0, 120, (1, 12))
    torch.testing.assert_close(back.eval()(idx).logits, ours(idx).logits)


def test_gpt2_baseline_export_is_refused_clearly(tmp_path):
    with pytest.raises(UserError, match="no Llama/Mixtral equivalent"):
        save_hf(
            Llama(LlamaConfig.preset("gpt2-tiny", vocab_size=120, dim=64, n_layers=1, n_heads=4)), tmp_path
        )
    assert not (tmp_path / "model.safetensors").exists()
