"""Image tower options of issue 13. vision.stem: conv (a convolutional stem in place of the linear patch
embedding): the token grid it makes, translation equivariance, both towers build with it, configs
round-trip, exports refuse it. vision.pooling: max: the max over patch tokens, one small object decides."""

import pytest
import torch

from shared.errors import UserError
from vision_lm.cli import main as vision_lm
from vision_lm.config import SigLIPConfig, VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.siglip import SigLIP
from vision_lm.vit import ConvStem, VisionTower

SMALL = dict(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=2, stem="conv")


def test_stem_makes_the_patch_grid_and_shifts_with_the_image():
    torch.manual_seed(0)
    stem = ConvStem(8, 32)
    stem.init_weights()
    x = torch.zeros(1, 3, 64, 64)
    x[:, :, 20:30, 18:28] = torch.tensor([1.0, -1.0, -0.5]).view(3, 1, 1)  # one square, away from borders
    shifted = torch.roll(x, shifts=(8, 8), dims=(2, 3))  # one patch down and right
    a, b = stem(x), stem(shifted)
    assert a.shape == (1, 32, 8, 8)
    torch.testing.assert_close(
        b[..., 2:7, 2:7], a[..., 1:6, 1:6], atol=1e-5, rtol=0
    )  # same features, one cell on
    noise = stem(torch.rand(4, 3, 64, 64) * 2 - 1)  # images in [-1, 1]
    assert 0.3 < noise.std().item() < 3  # roughly the unit scale of the patch embedding it replaces


def test_towers_build_with_the_stem_and_learn_through_it():
    tower = VisionTower(VisionConfig(**SMALL))
    assert tower.patch_embed is None and tower.conv_stem is not None
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    tower(pixels).sum().backward()
    assert tower.conv_stem.convs[0].weight.grad.abs().sum() > 0
    cap = PaliGemma(PaliGemmaConfig(vision=VisionConfig(**SMALL)))  # the captioner's tower too
    assert cap.encode_image(pixels).shape == (2, 16, cap.config.decoder.dim)
    config = SigLIPConfig(vision=VisionConfig(**SMALL))
    assert SigLIPConfig.from_dict(config.to_dict()).vision.stem == "conv"


def test_bad_stem_values_are_one_user_error():
    with pytest.raises(UserError, match="vision.stem"):
        VisionConfig(stem="resnet")
    with pytest.raises(UserError, match="power-of-two"):
        VisionConfig(image_size=36, patch_size=6, stem="conv")


@pytest.mark.parametrize(
    "option, name",
    [
        ({"stem": "conv"}, "vision.stem"),
        ({"stem": "factored"}, "vision.stem"),
        ({"shape_stem": True}, "vision.shape_stem"),
        ({"pooling": "max"}, "vision.pooling"),
    ],
)
def test_export_refuses_each_tower_option_by_name_and_writes_nothing(option, name, tmp_path, capsys):
    """HF SigLIP has a linear patchifier and the MAP head only: each other option is one error line naming it."""
    base = {k: v for k, v in SMALL.items() if k != "stem"}  # SMALL has the conv stem
    model = SigLIP(SigLIPConfig(vision=VisionConfig(**base, **option)))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": {"config": model.config.to_dict()}}, tmp_path / "s.ckpt"
    )
    with pytest.raises(SystemExit) as e:
        vision_lm(["export-hf", "--checkpoint", str(tmp_path / "s.ckpt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and name in err[0]
    assert not (tmp_path / "out").exists()


def test_max_pooling_takes_each_feature_where_it_is_strongest():
    torch.manual_seed(0)
    tower = VisionTower(VisionConfig(**{**SMALL, "stem": "patch", "pooling": "max"}))
    assert tower.head is None
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    tokens = tower.stack(tower.patch_embed(pixels).flatten(2).transpose(1, 2) + tower.pos_embed).hidden
    torch.testing.assert_close(tower(pixels), tokens.amax(1))  # (B, D)
    model = SigLIP(SigLIPConfig(vision=VisionConfig(**{**SMALL, "pooling": "max"})))
    assert model.encode_image(pixels).shape == (2, model.config.embed_dim)
    assert model.config.vision.hf_unsupported() == ["vision.stem", "vision.pooling"]
    with pytest.raises(UserError, match="vision.pooling"):
        VisionConfig(pooling="mean")


def test_text_mean_pooling_averages_every_position_and_export_refuses_it(tmp_path, capsys):
    from vision_lm.config import TextTowerConfig
    from vision_lm.text_tower import TextTower

    torch.manual_seed(0)
    text = TextTowerConfig(vocab_size=50, max_len=6, dim=32, n_layers=1, n_heads=2, pooling="mean")
    tower = TextTower(text, embed_dim=32)
    ids = torch.randint(0, 50, (3, 6))
    hidden = tower.stack(tower.token_embed(ids) + tower.pos_embed).hidden  # (B, T, D)
    torch.testing.assert_close(tower(ids), tower.head(hidden.mean(1)))
    with pytest.raises(UserError, match="text.pooling"):
        TextTowerConfig(pooling="cls")
    model = SigLIP(SigLIPConfig(vision=VisionConfig(**{**SMALL, "stem": "patch"}), text=text))
    assert model.config.hf_unsupported() == ["text.pooling"]
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": {"config": model.config.to_dict()}}, tmp_path / "s.ckpt"
    )
    with pytest.raises(SystemExit):
        vision_lm(["export-hf", "--checkpoint", str(tmp_path / "s.ckpt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "text.pooling" in err[0] and not (tmp_path / "out").exists()
