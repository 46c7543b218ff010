"""SigLIP against Hugging Face `transformers.SiglipModel`, both ways, and the config's checks."""

import pytest
import torch

from shared.errors import UserError
from vision_lm.config import SigLIPConfig, TextTowerConfig, VisionConfig
from vision_lm.hf_siglip import from_hf, load_hf, save_hf, to_hf_state_dict
from vision_lm.siglip import SigLIP

transformers = pytest.importorskip("transformers")

TEXT = dict(vocab_size=99, hidden_size=48, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4)
VISION = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4)


def hf_tiny():
    cfg = transformers.SiglipConfig(
        text_config=dict(
            **TEXT,
            max_position_embeddings=12,
            projection_size=32,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        vision_config=dict(**VISION, image_size=16, patch_size=4),
    )
    torch.manual_seed(0)
    hf = transformers.SiglipModel(cfg).eval()
    perturb(hf)
    return hf


@torch.no_grad()
def perturb(model):
    """Non-trivial norms, biases, t and b, so a mix-up in any of them would show."""
    for name, p in model.named_parameters():
        if "norm" in name and name.endswith("weight"):
            p.normal_(1.0, 0.1)
        elif name.endswith("bias") or "probe" in name:
            p.normal_(0.0, 0.1)
    model.logit_scale.fill_(1.7)
    model.logit_bias.fill_(-3.2)


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 16, 16, generator=g), torch.randint(0, 99, (3, 12), generator=g)


def assert_same(ours: SigLIP, hf):
    pixels, ids = inputs()
    with torch.no_grad():
        a, b = ours.eval()(pixels, ids), hf(input_ids=ids, pixel_values=pixels)
    torch.testing.assert_close(a.image_embeds, b.image_embeds, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.text_embeds, b.text_embeds, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.logits_per_image, b.logits_per_image, atol=1e-5, rtol=1e-4)


def test_hf_to_ours_gives_the_same_embeddings_and_logits(tmp_path):
    hf = hf_tiny()
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)
    assert ours.config.text.dim == 48 and ours.config.embed_dim == 32 and ours.config.vision.n_patches == 16
    assert_same(ours, hf)


def test_ours_to_hf_loads_with_from_pretrained_and_back(tmp_path):
    torch.manual_seed(0)
    cfg = SigLIPConfig(
        vision=VisionConfig(image_size=16, patch_size=4, dim=32, n_layers=2, n_heads=4, hidden_dim=40),
        text=TextTowerConfig(vocab_size=99, max_len=12, dim=48, n_layers=2, n_heads=4, hidden_dim=40),
    )
    ours = SigLIP(cfg)
    perturb(ours)
    save_hf(ours, tmp_path, token_ids={"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    hf = transformers.SiglipModel.from_pretrained(tmp_path).eval()
    assert_same(ours, hf)
    back = load_hf(tmp_path)
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_conversion_is_strict():
    hf = hf_tiny()
    sd, cfg = hf.state_dict(), hf.config.to_dict()
    with pytest.raises(UserError, match="unexpected"):
        from_hf({**sd, "vision_model.extra.weight": torch.zeros(1)}, cfg)
    with pytest.raises(UserError, match="missing"):
        from_hf({k: v for k, v in sd.items() if k != "logit_bias"}, cfg)
    bad = dict(sd)
    bad["text_model.head.bias"] = torch.zeros(5)
    with pytest.raises(UserError, match="shape"):
        from_hf(bad, cfg)
    with pytest.raises(UserError, match="model_type"):
        from_hf(sd, {**cfg, "model_type": "clip"})


def test_image_projection_is_refused_for_export():
    m = SigLIP(SigLIPConfig.preset("siglip-tiny", embed_dim=64))
    assert m.image_proj is not None and m.encode_image(torch.zeros(1, 3, 64, 64)).shape == (1, 64)
    with pytest.raises(UserError, match="image projection"):
        to_hf_state_dict(m)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(vision=dict(image_size=64, patch_size=7)), "vision.patch_size"),
        (dict(vision=dict(dim=100, n_heads=8)), "vision.n_heads"),
        (dict(text=dict(max_len=0)), "text.max_len"),
        (dict(vision=dict(pooling="none")), "vision.pooling"),
        (dict(loss="hinge"), "loss"),
        (dict(init_b=float("nan")), "init_b"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        SigLIPConfig(**kwargs)


def test_config_round_trips_and_presets():
    for name in ("siglip-tiny", "siglip-small", "siglip-base"):
        c = SigLIPConfig.preset(name)
        assert SigLIPConfig.from_dict(c.to_dict()) == c and c.embed_dim == c.vision.dim
    with pytest.raises(UserError, match="text.bogus"):
        SigLIPConfig.from_dict({**SigLIPConfig().to_dict(), "text": {"bogus": 1}})
    with pytest.raises(UserError, match="unknown preset"):
        SigLIPConfig.preset("siglip-huge")


def test_vision_tower_without_pooling_returns_every_patch():
    from vision_lm.vit import VisionTower

    tower = VisionTower(
        VisionConfig(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=4, pooling="none")
    )
    assert tower(torch.zeros(2, 3, 32, 32)).shape == (2, 16, 32)
    with pytest.raises(UserError, match="32x32"):
        tower(torch.zeros(2, 3, 16, 16))
