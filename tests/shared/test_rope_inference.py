"""RoPE tables grown under torch.inference_mode() must not break a later backward.

Generation runs under inference_mode (text_lm/generate.py, vision_lm/caption_generate.py) and
validation calls it mid-training; decoding past the table grows it there, into inference
tensors that autograd cannot save ("Inference tensors cannot be saved for backward").
`shared/nn/rope.py` rebuilds such tables when they are next used outside inference mode.
"""

import torch
import torch.nn.functional as F

from shared.nn.rope import RotaryEmbedding, apply_rope
from text_lm.config import LlamaConfig
from text_lm.module import LanguageModelModule
from vision_lm.caption_generate import generate as caption
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig


def test_tables_grown_under_inference_mode_are_rebuilt_for_autograd():
    rope = RotaryEmbedding(head_dim=8, max_seq_len=4)
    ref_cos, ref_sin = RotaryEmbedding(head_dim=8, max_seq_len=64)(0, 20)
    with torch.inference_mode():
        rope(0, 20)  # grows the table past its 4 positions
        rope.lookup(torch.tensor([[0, 30]]))
    assert rope.cos.is_inference()
    q = torch.randn(1, 2, 20, 8, requires_grad=True)
    cos, sin = rope(0, 20)
    apply_rope(q, cos, sin).square().sum().backward()  # fails if cos/sin are inference tensors
    assert not rope.cos.is_inference() and q.grad is not None
    torch.testing.assert_close(cos, ref_cos)  # rebuilt, same values
    torch.testing.assert_close(sin, ref_sin)
    q.grad = None
    with torch.inference_mode():
        rope(0, 200)
    cos, sin = rope.lookup(torch.tensor([[3, 150]]))  # the per-row path (left-padded batches)
    apply_rope(q[:, :, :2], cos, sin).sum().backward()
    assert q.grad is not None


def test_text_validation_sample_then_training_step(tok):
    """`LanguageModelModule.sample` (validation) decodes past the RoPE table, then training goes on."""
    config = LlamaConfig.preset(
        "llama-tiny", vocab_size=tok.vocab_size, max_seq_len=8, dim=32, n_layers=2, n_heads=4, n_kv_heads=2
    )
    module = LanguageModelModule(config, sample_tokens=16)
    module.configure_model()
    rope = module.model.stack.rope
    module.sample(tok, "ROMEO:", 16)  # prompt + 16 tokens > the 8 positions of the table
    assert rope.cos.shape[0] > 8  # the table grew under generate_tokens' inference_mode
    module.model.train()
    ids = torch.randint(0, tok.vocab_size, (2, 9))
    logits = module.model(ids[:, :-1]).logits
    F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
    grads = [p.grad for p in module.model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_captioning_then_training_step():
    """The captioner's validation decodes under inference_mode too (vision_lm/caption_generate.py)."""
    torch.manual_seed(0)
    model = PaliGemma(PaliGemmaConfig())
    rope = model.decoder.rope
    size = model.config.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    table = rope.cos.shape[0]
    model.eval()
    caption(model, pixels, [[1, 5, 2], [1, 2]], table, eos_id=-1)  # runs past the table
    assert rope.cos.shape[0] > table
    model.train()
    ids = torch.randint(3, 50, (2, 6))
    model(pixels, ids, torch.tensor([3, 2])).float().logsumexp(-1).mean().backward()
    assert model.decoder.layers[0].attn.qkv_proj.weight.grad is not None
