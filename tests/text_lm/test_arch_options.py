"""The architecture options of issue 12 (QK-norm, squared ReLU, logit soft-capping, zero output
projections, untied head): each changes the forward exactly as its formula says (against a slow
reference written here), keeps KV-cached decoding equal to a full forward, round-trips through
the config, and is refused by the exporters, by name, where Llama cannot represent it.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from shared.errors import UserError
from shared.nn.context import StackContext
from text_lm.config import LlamaConfig, unsupported_options
from text_lm.model import Llama

SMALL = dict(vocab_size=64, max_seq_len=32, dim=32, n_layers=2, n_heads=4, n_kv_heads=2)
OPTIONS = {
    "qk_norm": dict(qk_norm=True),
    "relu2": dict(mlp="relu2"),
    "softcap": dict(logit_softcap=2.0),
    "zero_init_out": dict(zero_init_out=True),
    "untied": dict(tie_embeddings=False),
    "bigram": dict(bigram_hash_size=16),
    "all": dict(
        qk_norm=True,
        mlp="relu2",
        logit_softcap=2.0,
        zero_init_out=True,
        tie_embeddings=False,
        bigram_hash_size=16,
    ),
}


def model(**options) -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(**{**SMALL, **options})).eval()


def perturb_(m: Llama) -> Llama:
    """Random values in every gain and output projection, so no test passes because a weight is 1 or 0."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name or "o_proj" in name or "down_proj" in name or "bigram" in name:
                p.copy_(torch.randn_like(p) * (0.5 if "norm" in name else 0.05) + ("norm" in name))
    return m


def rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w


def slow_rope(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """x (B, T, heads, Dh) rotated by position t: pairs (i, i + Dh/2) turned by t * theta^(-2i/Dh)."""
    T, Dh = x.shape[1], x.shape[-1]
    angle = torch.arange(T)[:, None] * theta ** (-torch.arange(0, Dh, 2) / Dh)  # (T, Dh/2)
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # (T, 1, Dh/2)
    x1, x2 = x[..., : Dh // 2], x[..., Dh // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def slow_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Causal GQA attention written out: q, k, v (QK-norm if present), RoPE, softmax, o_proj."""
    B, T, _ = x.shape
    H, K, Dh = attn.n_heads, attn.n_kv_heads, attn.head_dim
    wq, wk, wv = attn.qkv_proj.weight.split([H * Dh, K * Dh, K * Dh])
    q, k, v = (x @ wq.T).view(B, T, H, Dh), (x @ wk.T).view(B, T, K, Dh), (x @ wv.T).view(B, T, K, Dh)
    if attn.q_norm is not None:
        q, k = rms(q, attn.q_norm.weight), rms(k, attn.k_norm.weight)
    q, k = slow_rope(q), slow_rope(k)
    k, v = k.repeat_interleave(H // K, dim=2), v.repeat_interleave(H // K, dim=2)  # (B, T, H, Dh)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(Dh)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(B, T, H * Dh)
    return y @ attn.o_proj.weight.T


def test_qk_norm_is_rmsnorm_of_each_head_before_rope():
    m = perturb_(model(qk_norm=True))
    attn = m.stack.layers[0].attn
    assert attn.q_norm.weight.shape == (8,) and model().stack.layers[0].attn.q_norm is None
    x = torch.randn(2, 7, 32)
    ctx = StackContext(rope=m.stack.rope(0, 7))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, ctx), slow_attention(attn, x), atol=1e-5, rtol=1e-5)
        attn.qkv_proj.weight[: 4 * 8 + 2 * 8] *= 30.0  # q and k 30x larger: the norm undoes it
        torch.testing.assert_close(attn(x, ctx), slow_attention(attn, x), atol=1e-5, rtol=1e-5)
    plain = perturb_(model())
    with torch.no_grad():  # the reference tells the two apart (no QK-norm: the plain formula)
        torch.testing.assert_close(
            plain.stack.layers[0].attn(x, ctx), slow_attention(plain.stack.layers[0].attn, x)
        )


def test_relu2_is_down_of_squared_relu_of_up_with_4x_hidden():
    m = model(mlp="relu2")
    mlp = m.stack.layers[0].mlp
    assert m.stack.cfg.hidden_dim == 4 * 32 and set(dict(mlp.named_parameters())) == {
        "up_proj.weight",
        "down_proj.weight",
    }
    x = torch.randn(3, 5, 32)
    expected = (x @ mlp.up_proj.weight.T).clamp(min=0).pow(2) @ mlp.down_proj.weight.T
    torch.testing.assert_close(mlp(x)[0], expected)


def test_softcap_is_cap_tanh_of_the_plain_logits_and_the_loss_uses_it():
    capped, plain = model(logit_softcap=2.0), model()
    plain.load_state_dict(capped.state_dict())  # soft-capping adds no parameter
    idx, y = torch.randint(0, 64, (2, 9)), torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        for m in (capped, plain):
            m.lm_head.weight.mul_(100.0)  # logits far past the cap (tied: the embedding too)
        out, ref = capped(idx, y), plain(idx).logits
    assert ref.abs().max() > 10 and out.logits.abs().max() <= 2.0
    torch.testing.assert_close(out.logits, 2.0 * torch.tanh(ref / 2.0))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.flatten(0, 1), y.flatten()))
    with pytest.raises(UserError, match="logit_softcap must be > 0"):
        LlamaConfig(**SMALL, logit_softcap=0.0)


def test_bigram_hash_adds_the_row_of_each_token_pair_to_the_embedding():
    m = perturb_(model(bigram_hash_size=16))
    idx = torch.randint(0, 64, (2, 7))
    segments = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 2, 2]])
    seen = []
    m.stack.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        for seg in (None, segments):
            m(idx, segments=seg)
            expected = m.embed(idx).clone()
            for b in range(2):
                for t in range(7):
                    first = t == 0 or (seg is not None and seg[b, t] != seg[b, t - 1])
                    prev = 64 if first else idx[b, t - 1].item()  # V: no previous token
                    expected[b, t] += m.bigram_embed.weight[(prev * 1_000_003 + idx[b, t].item()) % 16]
            torch.testing.assert_close(seen[-1], expected)
    assert not model(bigram_hash_size=16).bigram_embed.weight.any()  # starts at zero
    with pytest.raises(UserError, match="bigram_hash_size must be an integer >= 0"):
        LlamaConfig(**SMALL, bigram_hash_size=-1)


def test_generation_with_a_bigram_model_equals_the_uncached_reference():
    from text_lm.generate import generate_tokens

    m = perturb_(model(bigram_hash_size=16))
    prompt = torch.randint(0, 64, (2, 5))
    cached, full = (
        torch.stack(list(generate_tokens(m, prompt, 6, temperature=0.0, use_cache=c))) for c in (True, False)
    )
    assert torch.equal(cached, full)


@pytest.mark.parametrize("name", OPTIONS)
def test_kv_cached_decoding_equals_the_full_forward(name):
    m = perturb_(model(**OPTIONS[name]))
    idx = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        full = m(idx).logits
        caches = m.make_kv_caches(2, 10)
        steps = [m(idx[:, :4], kv_caches=caches).logits]  # prefill 4, then one token at a time
        steps += [m(idx[:, t : t + 1], kv_caches=caches, start_pos=t).logits for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("moe", [None, dict(n_experts=4, top_k=2, n_shared_experts=1)])
def test_zero_init_out_makes_every_block_the_identity_and_still_learns(moe):
    m = model(zero_init_out=True, moe=moe).train()
    outs = [
        p for n, p in m.named_parameters() if n.endswith(("o_proj.weight", "down_proj.weight", "down_proj"))
    ]
    assert len(outs) == 2 * (2 + (moe is not None)) and all(not p.any() for p in outs)
    assert model(moe=moe).stack.layers[0].attn.o_proj.weight.std() > 0  # off: the scaled normal
    x = torch.randn(2, 6, 32, requires_grad=True)
    out = m.stack(x)
    torch.testing.assert_close(out.hidden, m.stack.norm(x), rtol=0, atol=0)  # stack = its final norm
    out.hidden.square().sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in outs)  # zero weights, non-zero gradients: they move


def test_options_round_trip_through_the_config_and_reach_the_stack():
    c = LlamaConfig.preset("modern-tiny")
    d = c.to_dict()
    assert (d["qk_norm"], d["zero_init_out"], d["logit_softcap"], d["mlp"], d["tie_embeddings"]) == (
        True,
        True,
        15.0,
        "relu2",
        False,
    )
    assert d["bigram_hash_size"] == 4096
    assert LlamaConfig.from_dict(d) == c
    tc = c.transformer()
    assert tc.qk_norm and tc.zero_init_out and tc.mlp == "relu2"
    for name, options in OPTIONS.items():
        c = LlamaConfig(**SMALL, **options)
        assert LlamaConfig.from_dict(c.to_dict()) == c, name


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (dict(qk_norm=True), "qk_norm=true"),
        (dict(logit_softcap=30.0), "logit_softcap=30.0"),
        (dict(bigram_hash_size=16), "bigram_hash_size=16"),
        (dict(mlp="relu2"), "mlp"),
        (OPTIONS["all"], "mlp"),
    ],
)
def test_export_of_an_unrepresentable_option_is_one_error_naming_it(options, named):
    from text_lm.gguf_export import check_gguf_exportable
    from text_lm.hf_convert import hf_config

    m = model(**options)
    for export in (lambda: hf_config(m.config), lambda: check_gguf_exportable(m, None)):
        with pytest.raises(UserError) as err:
            export()
        assert named in str(err.value) and "\n" not in str(err.value)


def test_initialisation_and_an_untied_head_are_exportable():
    c = LlamaConfig(**SMALL, zero_init_out=True, tie_embeddings=False)
    assert unsupported_options(c) == []
    from text_lm.hf_convert import hf_config

    assert hf_config(c)["tie_word_embeddings"] is False


@pytest.mark.slow
def test_a_tiny_fit_with_every_option_on_trains_and_its_checkpoint_generates(shakespeare_bpe, tmp_path):
    """configs/text/modern-tiny.yaml (every option on) through the real CLI, shrunk by tests/tiny.py."""
    from pathlib import Path

    from tiny import TINY_TEXT

    from text_lm.cli import main as text_lm

    config = Path(__file__).resolve().parents[2] / "configs/text/modern-tiny.yaml"
    text_lm(["fit", "-c", str(config), *TINY_TEXT, "--model.config.n_heads", "4", "--model.config.n_kv_heads",
             "2", "--model.sample_tokens", "0", "--trainer.max_steps", "4", "--trainer.val_check_interval", "4",
             "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false", "--data.data_dir", str(shakespeare_bpe),
             "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    ckpt = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    c = LlamaConfig.from_dict(ckpt["model_config"])
    assert (c.qk_norm, c.zero_init_out, c.logit_softcap, c.mlp, c.tie_embeddings) == (
        True,
        True,
        15.0,
        "relu2",
        False,
    )
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    assert state["stack.layers.0.attn.o_proj.weight"].any()  # the zero-initialised outputs trained
    assert c.bigram_hash_size == 4096 and state["bigram_embed.weight"].any()  # so did the bigram table
    m = Llama(c)
    m.load_state_dict(state)
    assert m(torch.tensor([[1, 2, 3]])).logits.abs().max() <= 15.0
