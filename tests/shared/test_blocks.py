"""The shared blocks against themselves and against their definitions."""

import pytest
import torch
import torch.nn.functional as F

from shared.errors import UserError
from shared.nn.attention import Attention
from shared.nn.config import MoEConfig, TransformerConfig
from shared.nn.masks import causal_mask, prefix_lm_mask, with_key_padding
from shared.nn.mlp import GatedMLP
from shared.nn.moe import MoE
from shared.nn.norms import RMSNorm
from shared.nn.rope import RotaryEmbedding, apply_rope
from shared.nn.sampling import sample_next
from shared.nn.transformer import Transformer


def cfg(**kw):
    base = dict(dim=32, n_layers=2, n_heads=4, max_seq_len=16)
    return TransformerConfig(**{**base, **kw})


def test_rmsnorm_matches_definition_and_unit_offset():
    x = torch.randn(3, 5, 8)
    n = RMSNorm(8, eps=1e-6)
    torch.nn.init.normal_(n.weight)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * n.weight
    torch.testing.assert_close(n(x), ref)
    g = RMSNorm(8, eps=1e-6, unit_offset=True)
    torch.testing.assert_close(g(x), x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def test_rope_is_relative_and_grows_past_the_table():
    rope = RotaryEmbedding(head_dim=8, max_seq_len=4)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        ci, si = rope(i, 1)
        cj, sj = rope(j, 1)
        return (apply_rope(q, ci, si) * apply_rope(k, cj, sj)).sum()

    torch.testing.assert_close(score(3, 1), score(102, 100), atol=1e-4, rtol=1e-4)  # 100 > table of 4
    assert rope.cos.shape[0] >= 103


def test_gqa_with_all_kv_heads_equals_mha_and_repeated_kv_heads():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 32)
    gqa = Attention(cfg(n_kv_heads=2))
    mha = Attention(cfg(n_kv_heads=4))
    with torch.no_grad():  # MHA whose kv heads are the GQA heads repeated per group
        wq, wk, wv = gqa.qkv_proj.weight.split(gqa.qkv_sizes)
        rep = [w.view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32) for w in (wk, wv)]
        mha.qkv_proj.weight.copy_(torch.cat([wq, *rep]))
        mha.o_proj.weight.copy_(gqa.o_proj.weight)
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-6, rtol=1e-5)


def test_attention_equals_explicit_softmax():
    """Separate q/k/v linears (an old checkpoint's layout) loaded into the fused qkv_proj give the
    textbook softmax(q k^T / sqrt(Dh)) v of those very linears."""
    torch.manual_seed(0)
    a = Attention(cfg(n_kv_heads=2, rope=False, attn_bias=True))
    lin = {n: torch.nn.Linear(32, s) for n, s in (("q_proj", 32), ("k_proj", 16), ("v_proj", 16))}
    old = {f"{n}.{leaf}": getattr(m, leaf) for n, m in lin.items() for leaf in ("weight", "bias")}
    a.load_state_dict({**old, "o_proj.weight": a.o_proj.weight})
    x = torch.randn(1, 5, 32)
    q = lin["q_proj"](x).view(1, 5, 4, 8).transpose(1, 2)
    k = lin["k_proj"](x).view(1, 5, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1)
    v = lin["v_proj"](x).view(1, 5, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1)
    att = (q @ k.transpose(-1, -2)) / 8**0.5
    att = att.masked_fill(~causal_mask(5), float("-inf")).softmax(-1)
    ref = a.o_proj((att @ v).transpose(1, 2).reshape(1, 5, 32))
    torch.testing.assert_close(a(x), ref, atol=1e-6, rtol=1e-5)


def test_gated_mlp_loads_separate_gate_and_up():
    """An old checkpoint's gate_proj/up_proj load into the fused gate_up_proj: down(silu(gate x) * up x)."""
    torch.manual_seed(0)
    mlp = GatedMLP(16, 24, bias=True)
    gate, up, down = torch.nn.Linear(16, 24), torch.nn.Linear(16, 24), torch.nn.Linear(24, 16)
    old = {
        f"{n}.{leaf}": getattr(m, leaf)
        for n, m in (("gate_proj", gate), ("up_proj", up), ("down_proj", down))
        for leaf in ("weight", "bias")
    }
    mlp.load_state_dict(old)
    x = torch.randn(3, 16)
    torch.testing.assert_close(mlp(x)[0], down(F.silu(gate(x)) * up(x)), atol=1e-6, rtol=1e-5)


def test_masks_worked_examples():
    m = prefix_lm_mask(torch.tensor([3]), 5)[0, 0].int()
    expected = torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    )
    assert torch.equal(m, expected)
    assert torch.equal(causal_mask(2, 4).int(), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    padded = with_key_padding(
        prefix_lm_mask(torch.tensor([2, 2]), 3), torch.tensor([[0, 1, 1], [1, 1, 1]]).bool()
    )
    assert not padded[0, 0, :, 0].any() and padded[1, 0, :, 0].all()


def test_one_expert_moe_equals_its_dense_mlp():
    torch.manual_seed(0)
    moe = MoE(32, MoEConfig(n_experts=1, top_k=1), hidden_dim=48)
    torch.nn.init.normal_(moe.gate_proj, std=0.1)
    torch.nn.init.normal_(moe.up_proj, std=0.1)
    torch.nn.init.normal_(moe.down_proj, std=0.1)
    x = torch.randn(2, 5, 32)
    y, stats = moe(x)
    torch.testing.assert_close(y, moe.dense_equivalent(0)(x)[0])
    torch.testing.assert_close(stats.aux_loss, torch.tensor(1.0))


def test_moe_matches_a_loop_over_tokens():
    torch.manual_seed(0)
    moe = MoE(16, MoEConfig(n_experts=4, top_k=2, n_shared_experts=1), hidden_dim=24)
    for p in (moe.gate_proj, moe.up_proj, moe.down_proj):
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 4, 16)
    y, _ = moe(x)
    probs = moe.router(x.reshape(-1, 16)).softmax(-1)
    ref = []
    for t, p in zip(x.reshape(-1, 16), probs):
        w, e = p.topk(2)
        w = w / w.sum()
        ref.append(sum(wi * moe.dense_equivalent(int(ei))(t)[0] for wi, ei in zip(w, e)) + moe.shared(t)[0])
    torch.testing.assert_close(y.reshape(-1, 16), torch.stack(ref), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_grouped_experts_equal_one_matmul_per_expert(bf16, monkeypatch):
    """The grouped matmul over expert slices (one expert left without rows) gives the per-expert
    loop's outputs and gradients, in fp32 and under bf16 autocast."""
    import shared.nn.moe as moe_module

    torch.manual_seed(0)
    moe = MoE(16, MoEConfig(n_experts=4, top_k=1), hidden_dim=24)
    for p in (moe.gate_proj, moe.up_proj, moe.down_proj):
        torch.nn.init.normal_(p, std=0.2)
    x, counts = torch.randn(9, 16), torch.tensor([3, 0, 4, 2])  # expert 1 gets no rows

    def run():
        moe.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = moe.experts(x, counts)
        y.float().square().sum().backward()
        return y.float(), [p.grad.clone() for p in (moe.gate_proj, moe.up_proj, moe.down_proj)]

    assert moe_module._grouped_mm_ok(x)
    grouped = run()
    monkeypatch.setattr(moe_module, "_grouped_mm_ok", lambda x: False)
    loop = run()
    tol = dict(atol=2e-2, rtol=2e-2) if bf16 else dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grouped[0], loop[0], **tol)
    for a, b in zip(grouped[1], loop[1]):
        torch.testing.assert_close(a, b, **tol)
    assert grouped[1][0][1].abs().sum() == 0  # no rows, no gradient


def test_aux_loss_is_one_when_uniform_larger_when_collapsed_and_reaches_router():
    torch.manual_seed(0)
    moe = MoE(16, MoEConfig(n_experts=4, top_k=2), hidden_dim=24)
    x = torch.randn(2, 8, 16)
    torch.nn.init.zeros_(moe.router.weight)  # every router probability is exactly 1/E
    _, stats = moe(x)
    torch.testing.assert_close(stats.aux_loss, torch.tensor(1.0))
    with torch.no_grad():
        moe.router.weight.normal_()
        moe.router.weight[0] = 0
        moe.router.weight[1] = 0
    _, stats = moe(x.abs() * 0 + 1)  # identical tokens: all routed to the same two experts
    assert stats.aux_loss > 1.5
    moe.router.weight.grad = None
    _, stats = moe(torch.randn(2, 8, 16))
    (stats.aux_loss + stats.z_loss).backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_bad_hyperparameters_are_user_errors():
    with pytest.raises(UserError, match="n_kv_heads"):
        cfg(n_kv_heads=3)
    with pytest.raises(UserError, match="n_heads"):
        cfg(n_heads=5)
    with pytest.raises(UserError, match="top_k"):
        MoEConfig(n_experts=2, top_k=3)


def test_kv_cache_overflow_is_a_clear_error():
    t = Transformer(cfg())
    caches = t.make_kv_caches(1, 4)
    t(torch.randn(1, 4, 32), kv_caches=caches)
    with pytest.raises(UserError, match="KV cache of 4 positions"):
        t(torch.randn(1, 1, 32), kv_caches=caches, start_pos=4)


def test_sampling_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).log_softmax(-1)
    assert sample_next(logits, temperature=0).item() == 3
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {2, 3}
    p = F.softmax(logits, -1)[0]  # top-p 0.5 keeps the smallest set reaching 0.5: token 3 (p~0.64)
    assert p[3] > 0.5
    draws = {sample_next(logits, 1.0, top_p=0.5, generator=g).item() for _ in range(100)}
    assert draws == {3}
