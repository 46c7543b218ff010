"""On a GPU, bf16 autocast (the `bf16-mixed` precision the GPU configs train with) gives the fp32 answer.

bf16 keeps fp32's exponent range but only 8 bits of mantissa (about 3 significant digits), so a
tiny Llama's loss agrees to ~1e-2 relative and its gradients point the same way (cosine ~1), while a
real bug (a mask, a dtype cast in the wrong place) moves them far more. Skipped without CUDA
(tests/conftest.py).
"""

import pytest
import torch

from text_lm.config import LlamaConfig
from text_lm.model import Llama


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["llama-tiny", "llama-moe-tiny"])
def test_bf16_autocast_forward_backward_matches_fp32(preset):
    torch.manual_seed(0)
    cfg = LlamaConfig.preset(preset, vocab_size=256, max_seq_len=64, dim=64, n_layers=2, n_heads=4)
    model = Llama(cfg).cuda()
    x = torch.randint(0, cfg.vocab_size, (4, 64), device="cuda")

    def loss_and_grads(bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, x).loss
        loss.backward()
        return loss.detach().float(), torch.cat([p.grad.flatten().float() for p in model.parameters()])

    loss32, grad32 = loss_and_grads(bf16=False)
    loss16, grad16 = loss_and_grads(bf16=True)
    assert torch.isfinite(loss16) and torch.isfinite(grad16).all()
    torch.testing.assert_close(loss16, loss32, rtol=2e-2, atol=0)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.99
    assert grad16.norm().item() == pytest.approx(grad32.norm().item(), rel=0.05)
