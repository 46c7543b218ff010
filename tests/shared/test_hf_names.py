"""The HF name tables (shared/train/hf_names.py) of the three converters, without transformers.

Each converter's `HF_NAMES` expands, for a one-layer model, to exactly the names its Hugging
Face class holds (written out below); ours -> HF -> ours gives every tensor back bit for bit;
a missing, unexpected or misshapen HF tensor is one UserError naming it.
"""

from __future__ import annotations

import re

import pytest
import torch

from shared.errors import UserError
from shared.nn.config import MoEConfig
from shared.train import hf_names
from text_lm import hf_convert
from text_lm.config import LlamaConfig
from text_lm.model import Llama
from vision_lm import hf_paligemma, hf_siglip
from vision_lm.config import SigLIPConfig, TextTowerConfig, VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig
from vision_lm.siglip import SigLIP

TABLE = [
    ("embed", "model.embed_tokens"),
    ("pos", "model.position.weight"),
    ("layers.{i}.proj", "model.layers.{i}.linear"),
    ("layers.{i}.experts.{j}", "model.layers.{i}.moe.{j}.w.weight"),
]


def test_a_row_names_a_tensor_or_a_module_whose_own_tensors_follow():
    ours = ["embed.weight", "pos", "layers.0.proj.weight", "layers.3.proj.bias", "layers.1.experts.2"]
    assert hf_names.expand(TABLE, ours) == {
        "embed.weight": "model.embed_tokens.weight",
        "pos": "model.position.weight",
        "layers.0.proj.weight": "model.layers.0.linear.weight",
        "layers.3.proj.bias": "model.layers.3.linear.bias",
        "layers.1.experts.2": "model.layers.1.moe.2.w.weight",
    }


@pytest.mark.parametrize(
    "name", ["layers.0.proj.sub.weight", "embedding.weight", "layers.x.proj.weight", "norm"]
)
def test_a_tensor_no_row_covers_is_one_user_error_naming_it(name):
    with pytest.raises(UserError, match=f"tensor {re.escape(name)}: no Hugging Face name"):
        hf_names.expand(TABLE, ["embed.weight", name])


def test_two_rows_for_one_tensor_is_an_error_naming_it():
    with pytest.raises(UserError, match=r"tensor embed\.weight: 2 Hugging Face names"):
        hf_names.expand([*TABLE, ("embed.weight", "other")], ["embed.weight"])


def test_nest_puts_both_sides_under_their_prefix():
    assert hf_names.nest([("a.{i}", "b.{i}")], "ours.", "hf.") == [("ours.a.{i}", "hf.b.{i}")]


# ---- the three converters: exact key sets for a one-layer model -------------------------------

LLAMA = dict(vocab_size=50, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, max_seq_len=16, hidden_dim=48)
ATTN = [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"]
NORMS = ["model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"]
DENSE_MLP = [f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]


def llama(**kw) -> Llama:
    torch.manual_seed(0)
    return Llama(LlamaConfig(**LLAMA, **kw))


def siglip() -> SigLIP:
    torch.manual_seed(0)
    return SigLIP(
        SigLIPConfig(
            vision=VisionConfig(image_size=16, patch_size=8, dim=32, n_layers=1, n_heads=4, hidden_dim=40),
            text=TextTowerConfig(vocab_size=30, max_len=6, dim=32, n_layers=1, n_heads=4, hidden_dim=40),
        )
    )


def paligemma() -> PaliGemma:
    torch.manual_seed(0)
    vision = VisionConfig(
        image_size=16, patch_size=8, dim=32, n_layers=1, n_heads=4, hidden_dim=40, pooling="none"
    )
    decoder = DecoderConfig(
        vocab_size=30, max_len=6, dim=32, n_layers=1, n_heads=4, n_kv_heads=1, hidden_dim=48
    )
    return PaliGemma(PaliGemmaConfig(vision=vision, decoder=decoder))


def encoder_layer(prefix: str) -> list[str]:
    """One SigLIP encoder layer's HF tensors under `prefix` (every module has weight and bias)."""
    modules = ["layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"] + [
        f"self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")
    ]
    return [f"{prefix}.{m}.{w}" for m in modules for w in ("weight", "bias")]


def wb(*modules: str) -> list[str]:
    return [f"{m}.{w}" for m in modules for w in ("weight", "bias")]


SIGLIP_VISION = [  # under the vision tower's prefix
    *wb("embeddings.patch_embedding"),
    "embeddings.position_embedding.weight",
    *encoder_layer("encoder.layers.0"),
    *wb("post_layernorm"),
]

CASES = {
    "llama-tied": (
        lambda: llama(tie_embeddings=True),
        hf_convert,
        {"model.embed_tokens.weight", "model.norm.weight", *NORMS, *ATTN, *DENSE_MLP},
    ),
    "llama-untied-bias": (
        lambda: llama(tie_embeddings=False, bias=True),
        hf_convert,
        {
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
            *NORMS,
            *ATTN,
            *(k.replace(".weight", ".bias") for k in ATTN),
            *DENSE_MLP,
            *(k.replace(".weight", ".bias") for k in DENSE_MLP),
        },
    ),
    "mixtral": (
        lambda: llama(tie_embeddings=False, moe=MoEConfig(n_experts=2, top_k=1)),
        hf_convert,
        {
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
            *NORMS,
            *ATTN,
            "model.layers.0.block_sparse_moe.gate.weight",
            *(f"model.layers.0.block_sparse_moe.experts.{j}.w{n}.weight" for j in (0, 1) for n in (1, 2, 3)),
        },
    ),
    "siglip": (
        siglip,
        hf_siglip,
        {
            *(f"vision_model.{k}" for k in SIGLIP_VISION),
            "vision_model.head.probe",
            *wb("vision_model.head.attention.out_proj", "vision_model.head.layernorm"),
            *wb("vision_model.head.mlp.fc1", "vision_model.head.mlp.fc2"),
            "vision_model.head.attention.in_proj_weight",
            "vision_model.head.attention.in_proj_bias",
            "text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.position_embedding.weight",
            *encoder_layer("text_model.encoder.layers.0"),
            *wb("text_model.final_layer_norm", "text_model.head"),
            "logit_scale",
            "logit_bias",
        },
    ),
    "paligemma": (
        paligemma,
        hf_paligemma,
        {
            *(f"model.vision_tower.{k}" for k in SIGLIP_VISION),
            *wb("model.multi_modal_projector.linear"),
            "model.language_model.embed_tokens.weight",
            "model.language_model.norm.weight",
            *(k.replace("model.", "model.language_model.", 1) for k in NORMS + ATTN + DENSE_MLP),
        },
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_table_expands_to_exactly_the_hf_names(case):
    build, conv, expected = CASES[case]
    assert set(conv.to_hf_state_dict(build())) == expected


def test_mixtral_expert_j_is_row_j_of_our_stacked_weights():
    model = llama(tie_embeddings=False, moe=MoEConfig(n_experts=2, top_k=1))
    hf = hf_convert.to_hf_state_dict(model)
    ours = model.state_dict()
    for j in (0, 1):
        for ours_name, w in (("gate_proj", "w1"), ("down_proj", "w2"), ("up_proj", "w3")):
            got = hf[f"model.layers.0.block_sparse_moe.experts.{j}.{w}.weight"]
            assert torch.equal(got, ours[f"stack.layers.0.mlp.{ours_name}"][j])


@pytest.mark.parametrize("case", CASES)
def test_ours_to_hf_to_ours_gives_every_tensor_back(case):
    build, conv, _ = CASES[case]
    model = build()
    back = conv.from_hf(conv.to_hf_state_dict(model), conv.hf_config(model.config))
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("case", CASES)
def test_a_missing_unexpected_or_misshapen_hf_tensor_is_one_user_error_naming_it(case):
    build, conv, _ = CASES[case]
    model = build()
    hf, cfg = conv.to_hf_state_dict(model), conv.hf_config(model.config)
    name = sorted(hf)[-1]
    esc = re.escape(name)

    with pytest.raises(UserError, match=rf"missing \['{esc}'\], unexpected \[\]"):
        conv.from_hf({k: v for k, v in hf.items() if k != name}, cfg)
    with pytest.raises(UserError, match=r"missing \[\], unexpected \['model\.extra\.weight'\]"):
        conv.from_hf({**hf, "model.extra.weight": torch.zeros(1)}, cfg)
    with pytest.raises(UserError, match=rf"HF weight {esc} has shape \(1, 1\)"):
        conv.from_hf({**hf, name: torch.zeros(1, 1)}, cfg)


def test_a_split_row_splits_ours_by_rows_and_joins_the_parts_back():
    table = [("attn.qkv", ("hf.q", "hf.k", "hf.v"))]
    own = {"attn.qkv.weight": torch.arange(12.0).view(6, 2)}
    sizes = {"attn.qkv": (4, 1, 1)}  # GQA: q wider than k, v
    hf = hf_names.to_hf(table, own, sizes)
    assert list(hf) == ["hf.q.weight", "hf.k.weight", "hf.v.weight"]
    assert torch.equal(hf["hf.k.weight"], own["attn.qkv.weight"][4:5])
    assert torch.equal(hf_names.from_hf(table, hf, own, sizes)["attn.qkv.weight"], own["attn.qkv.weight"])
    with pytest.raises(UserError, match=r"HF weight hf\.q\.weight has shape \(3, 2\), expected \(4, 2\)"):
        hf_names.from_hf(table, {**hf, "hf.q.weight": torch.zeros(3, 2)}, own, sizes)


def test_an_old_checkpoint_with_separate_projections_loads_and_exports_the_same_tensors():
    """A state dict from before the fused projections (q_proj/k_proj/v_proj, gate_proj/up_proj) loads
    into the fused model, whose export holds exactly those tensors under HF's names."""
    fused = llama(tie_embeddings=False, bias=True).state_dict()
    old = {}
    for k, t in fused.items():
        if ".qkv_proj." in k:
            parts = zip(("q_proj", "k_proj", "v_proj"), t.split([32, 16, 16]), strict=True)
        elif ".gate_up_proj." in k:
            parts = zip(("gate_proj", "up_proj"), t.chunk(2), strict=True)
        else:
            old[k] = t
            continue
        old.update({k.replace(k.split(".")[-2], name): p.clone() for name, p in parts})
    model = Llama(LlamaConfig(**LLAMA, tie_embeddings=False, bias=True))  # other weights
    model.load_state_dict(old)
    hf = hf_convert.to_hf_state_dict(model)
    for k, t in old.items():
        if "_proj" in k and ".o_proj" not in k and ".down_proj" not in k:
            attn = "self_attn" if k.split(".")[-2] in ("q_proj", "k_proj", "v_proj") else "mlp"
            assert torch.equal(hf[f"model.layers.0.{attn}.{k.split('.')[-2]}.{k.split('.')[-1]}"], t), k
