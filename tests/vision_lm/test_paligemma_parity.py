"""Our PaliGemma against transformers.PaliGemmaForConditionalGeneration: tiny random config, fp32 CPU."""

import pytest
import torch

from vision_lm.hf_paligemma import config_from_hf, from_hf, hf_config, load_hf, save_hf
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig

transformers = pytest.importorskip("transformers")

IMAGE_TOKEN, EOS, N_IMAGE = 95, 1, 16


@pytest.fixture(scope="module")
def pair():
    """A random HF PaliGemma (non-trivial norms and projector) and ours converted from it."""
    torch.manual_seed(0)
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=16,
        patch_size=4,
        vision_use_head=False,
    )
    text = dict(model_type="gemma", vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=1, head_dim=16, hidden_act="gelu_pytorch_tanh",
                eos_token_id=EOS, pad_token_id=0, bos_token_id=2)  # fmt: skip
    cfg = transformers.PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN,
        projection_dim=48,
        vocab_size=96,
    )
    hf = transformers.PaliGemmaForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))  # RMSNorm weights away from zero, a non-zero projector
    return hf, from_hf(hf.state_dict(), cfg.to_dict()).eval()


def hf_inputs(ids: torch.Tensor, prefix_len: torch.Tensor) -> dict:
    """Our text ids -> HF's: image placeholders first, token_type_ids 0 on image + prefix, 1 on the suffix."""
    B, T = ids.shape
    suffix = (torch.arange(T)[None] >= prefix_len[:, None]).long()
    return {
        "input_ids": torch.cat([torch.full((B, N_IMAGE), IMAGE_TOKEN), ids], 1),
        "token_type_ids": torch.cat([torch.zeros(B, N_IMAGE, dtype=torch.long), suffix], 1),
        "attention_mask": torch.ones(B, N_IMAGE + T, dtype=torch.long),
    }


def test_logits_match_under_the_prefix_lm_mask(pair):
    hf, ours = pair
    torch.manual_seed(1)
    pixels, ids, prefix_len = (
        torch.randn(3, 3, 16, 16),
        torch.randint(3, 90, (3, 12)),
        torch.tensor([3, 5, 12]),
    )
    with torch.no_grad():
        want = hf(pixel_values=pixels, **hf_inputs(ids, prefix_len)).logits[:, N_IMAGE:]
        got = ours(pixels, ids, prefix_len)
        causal = ours(pixels, ids, torch.zeros(3, dtype=torch.long))  # the mask does matter
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (causal - want).abs().max() > 1e-3


def test_same_greedy_caption(pair):
    from vision_lm.caption_generate import generate

    hf, ours = pair
    torch.manual_seed(2)
    pixels, prompt = torch.randn(1, 3, 16, 16), [2, 17, 33, 50]
    new = generate(ours, pixels, [prompt], max_new_tokens=8, eos_id=EOS)[0]
    inputs = hf_inputs(torch.tensor([prompt]), torch.tensor([len(prompt)]))
    with torch.no_grad():
        out = hf.generate(pixel_values=pixels, **inputs, max_new_tokens=8, do_sample=False, eos_token_id=EOS)
    theirs = out[0, N_IMAGE + len(prompt) :].tolist()
    assert new == (theirs[: theirs.index(EOS)] if EOS in theirs else theirs) and len(new) > 0


def test_export_loads_in_transformers_and_round_trips(tmp_path):
    config = PaliGemmaConfig(decoder=DecoderConfig(vocab_size=64, max_len=8, dim=32, n_heads=2, n_layers=1),
                             zero_init_projector=False)  # fmt: skip
    config.vision.image_size, config.vision.patch_size = 16, 8
    ours = PaliGemma(PaliGemmaConfig.from_dict(config.to_dict())).eval()
    save_hf(ours, tmp_path, {"image_token_index": 63, "eos_token_id": 1})
    hf = transformers.PaliGemmaForConditionalGeneration.from_pretrained(tmp_path).eval()
    back = load_hf(tmp_path)
    assert config_from_hf(hf_config(config)).decoder.n_kv_heads == 1
    pixels, ids = torch.randn(2, 3, 16, 16), torch.randint(0, 60, (2, 6))
    prefix_len = torch.tensor([2, 4])
    with torch.no_grad():
        inputs = hf_inputs(ids, prefix_len)
        inputs["input_ids"][:, :N_IMAGE] = 63
        inputs = {k: v[:, N_IMAGE - 4 :] for k, v in inputs.items()}  # 16 px / 8 px patches: 4 image tokens
        want = hf(pixel_values=pixels, **inputs).logits[:, 4:]
        torch.testing.assert_close(ours(pixels, ids, prefix_len), want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back(pixels, ids, prefix_len), want, atol=1e-5, rtol=1e-5)
