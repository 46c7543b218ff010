"""Parameter roles, per-role settings, and Muon (`shared/train/optim.py`, `shared/train/muon.py`).

References: torch.optim.AdamW over the old two-group split (decayed / not), torch.optim.Muon for
the matrices, matrices of known singular vectors and values for Newton-Schulz.
"""

from __future__ import annotations

import copy

import pytest
import torch

from shared.errors import UserError
from shared.train.muon import MuonAdamW, newton_schulz
from shared.train.optim import AdamW, param_groups
from text_lm.config import LlamaConfig
from text_lm.model import Llama
from vision_lm.config import SigLIPConfig
from vision_lm.siglip import SigLIP


def tiny_llama(**kw) -> Llama:
    torch.manual_seed(0)
    cfg = dict(vocab_size=64, max_seq_len=16, dim=32, n_layers=2, n_heads=4, n_kv_heads=2)
    return Llama(LlamaConfig.preset("llama-tiny", **{**cfg, **kw}))


def roles(module) -> dict[str, str]:
    names = {id(p): n for n, p in module.named_parameters()}
    return {names[id(p)]: g["role"] for g in param_groups(module) for p in g["params"]}


def train(model, opt, steps: int = 3) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, 64, (2, 16), generator=gen)
        model(x, x).loss.backward()
        opt.step()
        opt.zero_grad()


def test_every_parameter_has_its_role():
    r = roles(tiny_llama(tie_embeddings=False))
    assert r["embed.weight"] == "embedding" and r["lm_head.weight"] == "head"
    assert r["stack.norm.weight"] == "vector" and r["stack.layers.0.attn_norm.weight"] == "vector"
    assert r["stack.layers.0.attn.qkv_proj.weight"] == "matrix"
    assert r["stack.layers.1.mlp.down_proj.weight"] == "matrix"
    assert "lm_head.weight" not in roles(tiny_llama())  # tied: the head is the embedding, listed once
    s = roles(SigLIP(SigLIPConfig()))
    assert s["vision.patch_embed.weight"] == s["vision.pos_embed"] == s["text.pos_embed"] == "embedding"
    assert s["logit_scale"] == s["vision.head.probe"] == s["vision.patch_embed.bias"] == "vector"
    assert s["vision.head.attention.in_proj_weight"] == "matrix"


def test_role_groups_train_exactly_as_the_old_two_groups():
    """Splitting the groups by role changes nothing for AdamW: the same weights, bit for bit."""
    a, b = tiny_llama(), tiny_llama()
    embed = {id(a.embed.weight)}
    decay = [p for p in a.parameters() if p.dim() >= 2 and id(p) not in embed]
    rest = [p for p in a.parameters() if not (p.dim() >= 2 and id(p) not in embed)]
    old = torch.optim.AdamW(
        [{"params": decay}, {"params": rest, "weight_decay": 0.0}], lr=1e-2, weight_decay=0.1
    )
    new = torch.optim.AdamW(param_groups(b), lr=1e-2, weight_decay=0.1)
    train(a, old)
    train(b, new)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_per_role_settings_reach_their_groups_and_bad_ones_are_named():
    opt = AdamW(param_groups(tiny_llama()), lr=1e-3, groups={"embedding": {"lr": 0.3, "betas": [0.8, 0.9]}})
    by_role = {g["role"]: g for g in opt.param_groups}
    assert by_role["embedding"]["lr"] == 0.3 and by_role["embedding"]["betas"] == (0.8, 0.9)
    assert by_role["matrix"]["lr"] == 1e-3 and by_role["vector"]["betas"] == (0.9, 0.999)
    with pytest.raises(UserError, match="unknown role 'embeddings'"):
        AdamW(param_groups(tiny_llama()), groups={"embeddings": {"lr": 0.3}})
    with pytest.raises(UserError, match="groups.matrix: unknown setting 'momentum'"):
        AdamW(param_groups(tiny_llama()), groups={"matrix": {"momentum": 0.9}})


def known_svd(m: int, n: int, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G = U diag(s) V^T with orthonormal U, V and singular values spread over a factor 100."""
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=gen))
    return u @ torch.diag(torch.logspace(-2, 0, k) * 7) @ v.T, u, v


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48)])
def test_newton_schulz_keeps_the_singular_vectors_and_brings_the_values_near_one(shape):
    g, u, v = known_svd(*shape, torch.Generator().manual_seed(0))
    core = u.T @ newton_schulz(g) @ v  # diag(s') if O = U diag(s') V^T
    s = torch.diagonal(core)
    torch.testing.assert_close(core, torch.diag(s), atol=1e-5, rtol=0)
    assert s.min() > 0.6 and s.max() < 1.25  # the quintic's band (Jordan et al. 2024), not exactly 1
    stacked = torch.stack([g, 2 * g])  # a stack of matrices (MoE experts) is each one alone
    torch.testing.assert_close(newton_schulz(stacked)[1], newton_schulz(g), atol=1e-5, rtol=1e-5)


def test_muon_adamw_steps_like_torch_muon_on_matrices_and_adamw_on_the_rest():
    a, b = tiny_llama(tie_embeddings=False), tiny_llama(tie_embeddings=False)
    ours = MuonAdamW(param_groups(a), lr=1e-2, weight_decay=0.1, muon_lr=0.02, ns_dtype="bfloat16")
    groups = param_groups(b)
    matrices = [g for g in groups if g["role"] == "matrix"]
    others = [g for g in groups if g["role"] != "matrix"]
    muon = torch.optim.Muon(matrices, lr=0.02, weight_decay=0.1, momentum=0.95)
    adamw = torch.optim.AdamW(others, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    train(a, ours)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randint(0, 64, (2, 16), generator=gen)
        b(x, x).loss.backward()
        muon.step(), adamw.step(), muon.zero_grad(), adamw.zero_grad()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)


def test_muon_adamw_resumes_from_its_state_dict_exactly():
    a = tiny_llama()
    opt = MuonAdamW(param_groups(a), ns_dtype="float32", groups={"embedding": {"lr": 0.05}})
    train(a, opt, 2)
    b = copy.deepcopy(a)
    state = copy.deepcopy(opt.state_dict())
    resumed = MuonAdamW(param_groups(b), ns_dtype="float32", groups={"embedding": {"lr": 0.05}})
    resumed.load_state_dict(state)
    train(a, opt, 2)
    train(b, resumed, 2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert any("momentum_buffer" in s for s in resumed.state.values())
