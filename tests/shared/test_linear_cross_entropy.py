"""The fused head + cross-entropy (shared/nn/linear_cross_entropy.py) against logits then F.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

from shared.nn.linear_cross_entropy import linear_cross_entropy, wanted
from text_lm.config import LlamaConfig
from text_lm.model import Llama


def reference(h, weight, targets, softcap=None, ignore_index=-100) -> torch.Tensor:
    """The same loss the plain way: logits, then F.cross_entropy."""
    z = (h @ weight.T).float()
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return F.cross_entropy(z, targets, ignore_index=ignore_index)


def loss_and_grads(fn, h, w, scale=1.0):
    h.grad = w.grad = None
    loss = fn()
    (loss * scale).backward()
    return loss.detach(), h.grad.clone(), w.grad.clone()


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("chunk_rows", [7, 64, 1000])  # ragged last chunk, several, one chunk
def test_matches_logits_then_cross_entropy(softcap, chunk_rows):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, 16, generator=g, requires_grad=True)
    w = torch.randn(37, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 37, (50,), generator=g)
    t[::4] = -100  # ignored rows: no loss, no gradient
    got = loss_and_grads(lambda: linear_cross_entropy(h, w, t, softcap, chunk_rows=chunk_rows), h, w, 0.3)
    ref = loss_and_grads(lambda: reference(h, w, t, softcap), h, w, 0.3)  # a loss scale other than 1
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert got[1][::4].abs().max() == 0  # the ignored rows' h gets nothing


def test_bf16_autocast_close_to_the_plain_path():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(64, 32, generator=g, requires_grad=True)
    w = torch.randn(100, 32, generator=g, requires_grad=True)
    t = torch.randint(0, 100, (64,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss_and_grads(lambda: linear_cross_entropy(h, w, t, chunk_rows=16), h, w)
        ref = loss_and_grads(lambda: reference(h, w, t), h, w)
    assert got[1].dtype == h.dtype and got[2].dtype == w.dtype
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


def test_all_rows_ignored_is_zero_loss_and_gradient():
    h = torch.randn(4, 8, requires_grad=True)
    w = torch.randn(5, 8, requires_grad=True)
    loss = linear_cross_entropy(h, w, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0 and h.grad.abs().max() == 0 and w.grad.abs().max() == 0


@pytest.mark.parametrize("preset", ["llama-tiny", "modern-tiny"])  # tied head; untied + soft-capping
def test_llama_training_loss_and_gradients_unchanged(preset):
    cfg = LlamaConfig.preset(preset, n_layers=2, dim=64, n_heads=4, n_kv_heads=2, vocab_size=300)
    torch.manual_seed(0)
    model = Llama(cfg)
    x = torch.randint(0, 300, (2, 24))
    outs = []
    for fused in (True, False):
        model.zero_grad()
        out = model(x, x, logits=not fused)
        out.loss.backward()
        outs.append((out, [p.grad.clone() for p in model.parameters()]))
    (fused_out, fused_grads), (plain_out, plain_grads) = outs
    assert fused_out.logits is None and plain_out.logits is not None
    torch.testing.assert_close(fused_out.loss, plain_out.loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_only_for_eager_training_steps():
    h, w = torch.randn(2, 3, requires_grad=True), torch.randn(4, 3)
    assert wanted(h, w)
    with torch.no_grad():
        assert not wanted(h, w)  # evaluation: the plain path, which keeps the logits
    assert not wanted(h.detach(), w)  # nothing to train


def test_compiled_on_a_gpu_the_plain_path(monkeypatch):
    """Under torch.compile the fused path stays on CPUs only (a GPU's compiler fuses the plain loss)."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    w = torch.randn(4, 3)
    assert wanted(torch.randn(2, 3, requires_grad=True), w)  # compiled on a CPU: fused
    assert not wanted(torch.randn(2, 3, device="meta", requires_grad=True), w.to("meta"))  # any other device


def test_frozen_head_gets_no_gradient_and_h_the_right_one():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(20, 8, generator=g, requires_grad=True)
    w = torch.randn(11, 8, generator=g)  # frozen
    t = torch.randint(0, 11, (20,), generator=g)
    linear_cross_entropy(h, w, t, chunk_rows=6).backward()
    got = h.grad.clone()
    h.grad = None
    reference(h, w, t).backward()
    torch.testing.assert_close(got, h.grad, rtol=1e-5, atol=1e-6)
    assert w.grad is None
