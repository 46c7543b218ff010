"""LoRA (shared/nn/lora.py, shared/train/finetune.py): the formula, merging, what trains, the seam."""

import pytest
import torch
from torch import nn

from shared.errors import UserError
from shared.nn.lora import LoRALinear, apply_lora, merge_lora
from shared.train.finetune import LoRA, LoRAConfig, state_sha256, trainable_counts
from text_lm.config import LlamaConfig
from text_lm.model import Llama


def test_lora_linear_is_the_formula_and_starts_as_the_base():
    torch.manual_seed(0)
    base = nn.Linear(12, 20)
    x = torch.randn(3, 5, 12)
    want0 = base(x)
    lora = LoRALinear(base, rank=4, alpha=8.0)
    torch.testing.assert_close(lora(x), want0)  # B = 0: exactly the base
    with torch.no_grad():
        lora.lora_B.normal_()
    ref = x @ (base.weight + (8.0 / 4) * lora.lora_B @ lora.lora_A).T + base.bias  # Hu et al. 2021, eq. 3
    torch.testing.assert_close(lora(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lora.merged()(x), ref, atol=1e-5, rtol=1e-5)


def tiny_llama(**kw):
    torch.manual_seed(0)
    return Llama(
        LlamaConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=16, **kw)
    )


@pytest.mark.parametrize("mlp", ["swiglu", "gelu"])
def test_merged_model_equals_unmerged_and_only_adapters_train(mlp):
    model = tiny_llama(mlp=mlp)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    method = LoRA(LoRAConfig(rank=4, targets=["qkv_proj", "o_proj", "down_proj"]), base="base.ckpt")
    method.prepare(model)
    assert method.base_sha256 == state_sha256(base_state)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * 3 * 2  # A and B, 3 targets, 2 layers
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("lora_B"):
                p.normal_(0, 0.1)
    idx = torch.randint(0, 64, (2, 16))
    unmerged = model(idx).logits
    assert not torch.allclose(unmerged, Llama(model.config).eval()(idx).logits)
    assert merge_lora(model) == 6
    assert set(model.state_dict()) == set(base_state)  # the base's names and shapes again
    torch.testing.assert_close(model(idx).logits, unmerged, atol=1e-5, rtol=1e-5)


def test_rank_8_attention_adapters_of_llama_tiny_are_under_2_percent():
    model = Llama(LlamaConfig.preset("llama-tiny"))
    LoRA(LoRAConfig(rank=8), base="base.ckpt").prepare(model)
    trainable, total = trainable_counts(model)
    assert trainable / total <= 0.02, trainable / total


def test_bad_targets_and_rank_are_one_error():
    with pytest.raises(UserError, match=r"lora.targets \['q_proj'\] match no linear layer"):
        apply_lora(tiny_llama(), ["q_proj"], 4, 8.0)
    with pytest.raises(UserError, match="lora.rank must be positive"):
        LoRAConfig(rank=0)
    with pytest.raises(UserError, match="model.init_from"):
        LoRA(LoRAConfig(), base=None)


def test_captioner_decoder_gets_adapters_through_the_same_seam():
    """PaliGemma's decoder alone (a glob target), trained one step; merged logits equal unmerged."""
    from vision_lm.paligemma import PaliGemma
    from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig

    torch.manual_seed(0)
    cfg = PaliGemmaConfig(
        decoder=DecoderConfig(vocab_size=64, max_len=8, dim=32, n_layers=2, n_heads=4, n_kv_heads=1)
    )
    cfg.vision.image_size, cfg.vision.patch_size, cfg.vision.dim, cfg.vision.n_layers = 16, 8, 32, 1
    model = PaliGemma(PaliGemmaConfig.from_dict(cfg.to_dict()))
    LoRA(LoRAConfig(rank=2, targets=["decoder.*.qkv_proj", "decoder.*.o_proj"]), base="b.ckpt").prepare(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("decoder.") and "lora_" in n for n in trainable)
    pixels, ids, prefix = torch.randn(2, 3, 16, 16), torch.randint(0, 64, (2, 8)), torch.tensor([3, 4])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    model(pixels, ids, prefix).square().mean().backward()
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if not p.requires_grad)
    model.eval()
    unmerged = model(pixels, ids, prefix)
    merge_lora(model)
    torch.testing.assert_close(model(pixels, ids, prefix), unmerged, atol=1e-5, rtol=1e-5)
