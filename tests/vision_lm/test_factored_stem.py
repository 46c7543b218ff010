"""vision.stem: factored (issue 13): the colour path cannot see where colours lie inside a patch, the
outline path cannot see which colour a shape has, and both towers build and learn with the stem."""

import torch

from vision_lm.config import SigLIPConfig, VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.vit import FactoredStem, VisionTower

SMALL = dict(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=2, stem="factored")


def square(colour: tuple[float, float, float], background: float = 1.0) -> torch.Tensor:
    x = torch.full((1, 3, 64, 64), background)
    x[:, :, 20:30, 18:28] = torch.tensor(colour).view(3, 1, 1)
    return x


def stem() -> FactoredStem:
    torch.manual_seed(0)
    s = FactoredStem(8, 32)
    s.init_weights()
    return s


def test_colour_path_is_blind_to_the_arrangement_inside_a_patch():
    s = stem()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    order = torch.randperm(64)  # the same shuffle of the 8 x 8 pixels inside every patch
    patches = x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(2, 3, 8, 8, 64)[..., order]
    shuffled = patches.reshape(2, 3, 8, 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 64, 64)
    assert not torch.equal(shuffled, x)
    colour = lambda p: s.colour_proj(s.colour(p))  # noqa: E731
    torch.testing.assert_close(colour(shuffled), colour(x), atol=1e-5, rtol=0)
    assert s(shuffled).sub(s(x)).abs().max() > 1e-3  # the outline path does see it


def test_outline_path_is_the_same_for_a_red_and_a_green_square():
    s = stem()
    red, green = square((0.8, -0.8, -0.8)), square((-0.8, 0.2, -0.7))
    torch.testing.assert_close(s.outline(red), s.outline(green), atol=1e-5, rtol=0)
    colour = lambda p: s.colour_proj(s.colour(p))  # noqa: E731
    assert colour(red).sub(colour(green)).abs().max() > 1e-2  # the colour path tells them apart


def test_towers_build_with_the_factored_stem_and_learn_through_both_paths():
    tower = VisionTower(VisionConfig(**SMALL))
    assert tower.patch_embed is None and isinstance(tower.conv_stem, FactoredStem)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    tower(pixels).sum().backward()
    assert tower.conv_stem.colour[0].weight.grad.abs().sum() > 0
    assert tower.conv_stem.outline.convs[0].weight.grad.abs().sum() > 0
    cap = PaliGemma(PaliGemmaConfig(vision=VisionConfig(**SMALL)))
    assert cap.encode_image(pixels).shape == (2, 16, cap.config.decoder.dim)
    config = SigLIPConfig(vision=VisionConfig(**SMALL))
    assert SigLIPConfig.from_dict(config.to_dict()).vision.stem == "factored"
