"""One configuration story (shared/nn/config_base.py, shared/nn/config.py): every model configuration
round-trips through plain data, rejects unknown fields at any depth by their dotted path, gets the
stack's checks (named as the user writes the field) from its `transformer()`, and its default
constructor is the preset its docstring names."""

from __future__ import annotations

import io

import pytest
import torch

from shared.errors import UserError
from shared.nn.config import MoEConfig, TransformerConfig
from text_lm.config import LlamaConfig
from vision_lm.config import SigLIPConfig, TextTowerConfig, VisionConfig
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig

CONFIGS = [LlamaConfig, SigLIPConfig, PaliGemmaConfig]
PRESETS = [(cls, name) for cls in CONFIGS for name in cls.PRESETS]


def _plain(d: dict) -> dict:
    """`d` through torch.save / torch.load(weights_only=True), as a checkpoint's model_config travels."""
    buf = io.BytesIO()
    torch.save(d, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize(("cls", "name"), PRESETS, ids=[n for _, n in PRESETS])
def test_every_preset_round_trips_through_plain_data(cls, name):
    config = cls.preset(name)
    d = _plain(config.to_dict())
    back = cls.from_dict(d)
    assert back == config and back.name == name and back.to_dict() == config.to_dict()


def test_preset_overrides_and_unknown_preset():
    c = LlamaConfig.preset("llama-tiny", dim=128, moe={"n_experts": 4, "top_k": 1})
    assert c.dim == 128 and c.moe == MoEConfig(n_experts=4, top_k=1) and c.name == "llama-tiny"
    s = SigLIPConfig.preset("siglip-tiny", text={"vocab_size": 300})
    assert s.text == TextTowerConfig(vocab_size=300) and s.vision == SigLIPConfig().vision
    with pytest.raises(UserError, match="unknown preset 'nope'; choose from paligemma-tiny, paligemma-small"):
        PaliGemmaConfig.preset("nope")
    # the table is not shared with the configs built from it
    LlamaConfig.preset("llama-moe-tiny").moe.top_k = 1
    assert LlamaConfig.preset("llama-moe-tiny").moe.top_k == 2


@pytest.mark.parametrize(
    ("cls", "patch", "path"),
    [
        (LlamaConfig, {"dimm": 3}, "dimm"),
        (LlamaConfig, {"moe": {"n_experts": 2, "top_k": 1, "experts": 3}}, "moe.experts"),
        (SigLIPConfig, {"vision": {"patchsize": 8}}, "vision.patchsize"),
        (SigLIPConfig, {"text": {"bogus": 1}}, "text.bogus"),
        (PaliGemmaConfig, {"decoder": {"foo": 1}}, "decoder.foo"),
        (PaliGemmaConfig, {"vision": {"pool": "map"}, "extra": 1}, "extra, vision.pool"),
    ],
)
def test_unknown_fields_are_one_error_naming_their_dotted_path(cls, patch, path):
    d = cls().to_dict()
    for key, value in patch.items():
        d[key] = {**d[key], **value} if isinstance(d.get(key), dict) else value
    with pytest.raises(UserError, match=f"^unknown {cls.__name__} field\\(s\\): {path}$"):
        cls.from_dict(d)


def test_a_nested_dict_given_to_the_constructor_is_checked_too():
    with pytest.raises(UserError, match=r"^unknown PaliGemmaConfig field\(s\): decoder.foo$"):
        PaliGemmaConfig(decoder={"foo": 1})
    with pytest.raises(UserError, match="must be a mapping"):
        SigLIPConfig.from_dict([1, 2])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LlamaConfig(n_heads=5), "n_heads=5 must divide dim=256"),
        (lambda: LlamaConfig(n_kv_heads=3), "n_kv_heads=3 must divide n_heads=8"),
        (lambda: LlamaConfig(n_kv_heads=0), "n_kv_heads must be a positive integer, got 0"),
        (lambda: LlamaConfig(vocab_size=0), "vocab_size must be a positive integer, got 0"),
        (lambda: LlamaConfig(max_seq_len=-1), "max_seq_len must be a positive integer, got -1"),
        (lambda: LlamaConfig(hidden_dim=0), "hidden_dim must be a positive integer, got 0"),
        (lambda: LlamaConfig(head_dim=5, n_heads=8), "RoPE needs an even head_dim, got 5"),
        (lambda: LlamaConfig(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: LlamaConfig(position="alibi"), "position must be 'rope' or 'learned', got 'alibi'"),
        (lambda: LlamaConfig(moe={"n_experts": 2, "top_k": 3}), r"moe.top_k must be in \[1, n_experts=2\]"),
        (lambda: SigLIPConfig(vision={"n_heads": 3}), "vision.n_heads=3 must divide vision.dim=128"),
        (lambda: SigLIPConfig(text={"n_heads": 3}), "text.n_heads=3 must divide text.dim=128"),
        (lambda: SigLIPConfig(vision={"dim": 0}), "vision.dim must be a positive integer, got 0"),
        (lambda: SigLIPConfig(text={"n_layers": 0}), "text.n_layers must be a positive integer, got 0"),
        (lambda: SigLIPConfig(text={"hidden_dim": -4}), "text.hidden_dim must be a positive integer"),
        (lambda: SigLIPConfig(text={"max_len": 0}), "text.max_len must be a positive integer, got 0"),
        (
            lambda: SigLIPConfig(vision={"patch_size": 7}),
            "vision.patch_size=7 must divide vision.image_size=64",
        ),
        (lambda: SigLIPConfig(embed_dim=0), "embed_dim must be a positive integer, got 0"),
        (
            lambda: SigLIPConfig(vision={"pooling": "none"}),
            "vision.pooling must be 'map' or 'max' for SigLIP",
        ),
        (lambda: SigLIPConfig(loss="hinge"), "loss must be 'sigmoid' or 'softmax'"),
        (
            lambda: PaliGemmaConfig(decoder={"n_kv_heads": 3}),
            "decoder.n_kv_heads=3 must divide decoder.n_heads=4",
        ),
        (lambda: PaliGemmaConfig(decoder={"n_heads": 3}), "decoder.n_heads=3 must divide decoder.dim=128"),
        (lambda: PaliGemmaConfig(decoder={"vocab_size": 0}), "decoder.vocab_size must be a positive integer"),
        (lambda: PaliGemmaConfig(decoder={"head_dim": 7}), "RoPE needs an even decoder.head_dim, got 7"),
        (lambda: PaliGemmaConfig(vision={"n_heads": 3}), "vision.n_heads=3 must divide vision.dim=128"),
        (lambda: DecoderConfig(max_len=0), "decoder.max_len must be a positive integer, got 0"),
        (lambda: TransformerConfig(dim=128, n_layers=1, n_heads=3), "^n_heads=3 must divide dim=128$"),
    ],
)
def test_each_check_names_the_field_as_the_user_writes_it(build, message):
    with pytest.raises(UserError, match=message):
        build()


def test_default_constructors_are_their_documented_presets():
    assert SigLIPConfig() == SigLIPConfig.preset("siglip-tiny") and SigLIPConfig().name == "siglip-tiny"
    assert PaliGemmaConfig() == PaliGemmaConfig.preset("paligemma-tiny")
    assert PaliGemmaConfig().name == "paligemma-tiny"
    # LlamaConfig() is llama-tiny's shape with full multi-head attention
    assert LlamaConfig() == LlamaConfig.preset("llama-tiny", n_kv_heads=None)
    assert VisionConfig() == SigLIPConfig.preset("siglip-tiny").vision
    assert TextTowerConfig() == SigLIPConfig.preset("siglip-tiny").text


def test_derived_defaults_are_the_stacks_and_stored_where_they_were():
    gelu = TransformerConfig(dim=96, n_layers=1, n_heads=4, mlp="gelu")
    gated = TransformerConfig(dim=96, n_layers=1, n_heads=4, mlp="geglu")
    assert (gelu.hidden_dim, gated.hidden_dim) == (384, 256)  # 4 * 96; 8/3 * 96 = 256, a multiple of 64
    assert gelu.n_kv_heads == 4 and gelu.head_dim == 24
    # the towers store the resolved 4 * dim (checkpoints and exports read it); the decoders keep None
    assert SigLIPConfig().to_dict()["vision"]["hidden_dim"] == 512
    assert SigLIPConfig().to_dict()["text"]["hidden_dim"] == 512
    assert LlamaConfig().to_dict()["hidden_dim"] is None and LlamaConfig().transformer().hidden_dim == 704
    assert PaliGemmaConfig(decoder=DecoderConfig()).to_dict()["decoder"]["hidden_dim"] is None
    assert PaliGemmaConfig().transformer().max_seq_len == 64 + 24  # image tokens then text tokens


def test_a_paligemma_tower_is_always_unpooled():
    """A SigLIP tower (pooling map) dropped into the captioner keeps every patch token."""
    c = PaliGemmaConfig(vision=SigLIPConfig().vision)
    assert c.vision.pooling == "none" and c.n_image_tokens == 64
    assert (
        PaliGemmaConfig.from_dict({**c.to_dict(), "vision": VisionConfig().__dict__}).vision.pooling == "none"
    )
