"""The block's seams: mixers and feed-forwards picked by name from `shared/nn/registry.py`."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import UserError
from shared.nn.config import MoEConfig, TransformerConfig
from shared.nn.context import StackContext
from shared.nn.registry import FEED_FORWARDS, MIXERS, register_feed_forward, register_mixer
from shared.nn.relu2 import ReLU2  # the registry docstring's worked example, a built-in since issue 12
from shared.nn.transformer import Transformer


@register_mixer("causal_mean")
class CausalMean(nn.Module):
    """A toy token mixer: each token takes the mean of the values up to itself (no attention)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, ctx: StackContext) -> torch.Tensor:
        count = torch.arange(1, x.shape[1] + 1, device=x.device)[:, None]  # (T, 1)
        return self.o_proj(self.v_proj(x).cumsum(dim=1) / count)


def cfg(**kw):
    return TransformerConfig(**{**dict(dim=32, n_layers=2, n_heads=4, max_seq_len=16), **kw})


def train_steps(stack: Transformer, steps: int = 5) -> list[float]:
    """A few AdamW steps regressing the stack's output on a fixed target; the losses."""
    torch.manual_seed(0)
    x, target = torch.randn(2, 8, 32), torch.randn(2, 8, 32)
    opt = torch.optim.AdamW(stack.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(stack(x).hidden, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_unknown_names_are_user_errors_naming_the_field_and_the_known_names():
    with pytest.raises(UserError, match=r"unknown mixer 'mamba' \(known: 'attention'"):
        Transformer(cfg(mixer="mamba"))
    with pytest.raises(UserError, match=r"unknown mlp 'relu3' \(known: .*'geglu', 'gelu'.*'swiglu'"):
        Transformer(cfg(mlp="relu3"))
    with pytest.raises(UserError, match="mlp must be 'swiglu' or 'geglu', got 'gelu'"):
        Transformer(cfg(mlp="gelu", moe=MoEConfig(n_experts=2, top_k=1)))


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="'relu2' is already registered"):
        register_feed_forward("relu2")(lambda c: nn.Identity())
    assert register_feed_forward("relu2")(ReLU2) is ReLU2  # the same builder again is harmless
    assert {"swiglu", "geglu", "gelu", "relu2"} <= set(FEED_FORWARDS) and "attention" in MIXERS


def test_a_registered_feed_forward_trains_with_no_other_edit():
    stack = Transformer(cfg(mlp="relu2"))
    assert all(isinstance(layer.mlp, ReLU2) for layer in stack.layers)
    assert "layers.1.mlp.down_proj.weight" in stack.state_dict()
    out_std = 0.02 / (2 * 2) ** 0.5  # named down_proj: the depth-scaled init of shared/nn/init.py
    assert stack.layers[0].mlp.down_proj.weight.std().item() == pytest.approx(out_std, rel=0.2)
    losses = train_steps(stack)
    assert losses[-1] < losses[0]
    assert stack(torch.randn(1, 3, 32)).aux_loss is None  # aux None: nothing to average


def test_a_registered_mixer_trains_with_no_other_edit():
    stack = Transformer(cfg(mixer="causal_mean", rope=False))
    assert all(isinstance(layer.attn, CausalMean) for layer in stack.layers)
    losses = train_steps(stack)
    assert losses[-1] < losses[0]


def test_moe_feed_forward_hands_its_stats_up_through_the_block():
    stack = Transformer(cfg(mlp="geglu", moe=MoEConfig(n_experts=4, top_k=2)))
    t = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(stack.layers[0].mlp.act(t), F.gelu(t, approximate="tanh"))  # experts: cfg.mlp
    out = stack(torch.randn(2, 5, 32))
    assert out.expert_load.shape == (2, 4)
    torch.testing.assert_close(out.expert_load.sum(-1), torch.ones(2))
    assert out.aux_loss.ndim == 0 and out.z_loss.ndim == 0


@pytest.mark.parametrize("moe", [None, MoEConfig(n_experts=4, top_k=2)])
def test_gradient_checkpointing_carries_the_context(moe):
    torch.manual_seed(0)
    stack = Transformer(cfg(moe=moe))
    x = torch.randn(2, 6, 32)
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()  # an explicit mask rides in the context

    def grads(checkpointing: bool):
        stack.gradient_checkpointing = checkpointing
        stack.zero_grad()
        out = stack(x, mask=mask)
        (out.hidden.square().mean() + (out.aux_loss if moe else 0)).backward()
        return out.hidden.detach(), [p.grad.clone() for p in stack.parameters()]

    (h0, g0), (h1, g1) = grads(False), grads(True)
    torch.testing.assert_close(h1, h0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b)


def test_each_layer_writes_its_own_cache():
    stack = Transformer(cfg()).eval()
    x = torch.randn(1, 5, 32)
    caches = stack.make_kv_caches(1, 5)
    full = stack(x).hidden
    stack(x[:, :3], kv_caches=caches)
    step = stack(x[:, 3:], kv_caches=caches, start_pos=3).hidden
    torch.testing.assert_close(step, full[:, 3:], atol=1e-5, rtol=1e-5)
    assert not torch.equal(caches[0].k, caches[1].k)
