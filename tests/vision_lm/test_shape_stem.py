"""The colour-invariant shape path (vision.shape_stem): invariant edges, the plain ViT at initialisation,
gradients reach it, and an export refuses it by name (Hugging Face's SigLIP has no such part)."""

import pytest
import torch

from vision_lm.config import SigLIPConfig, VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.siglip import SigLIP
from vision_lm.vit import EdgeStem

SMALL = dict(image_size=32, patch_size=8, dim=32, n_layers=1, n_heads=2)


def _square(rgb, background=(255, 255, 255)) -> torch.Tensor:
    img = torch.tensor(background, dtype=torch.float).view(3, 1, 1).repeat(1, 32, 32)
    img[:, 8:20, 10:22] = torch.tensor(rgb, dtype=torch.float).view(3, 1, 1)
    return (img / 127.5 - 1)[None]  # (1, 3, 32, 32) in [-1, 1]


def test_edges_of_one_shape_do_not_depend_on_its_colour():
    stem = EdgeStem(8, 16)
    red, green, pale = (stem.edges(_square(c)) for c in ((220, 30, 30), (30, 150, 40), (250, 220, 220)))
    torch.testing.assert_close(red, green, atol=1e-5, rtol=0)
    torch.testing.assert_close(red, pale, atol=1e-5, rtol=0)
    assert (
        red.amax() == pytest.approx(1.0) and red[0, 0, 0, 0] < 1e-5
    )  # outline at unit contrast, flat background


def test_tower_with_the_stem_starts_as_the_plain_vit_and_learns_it():
    torch.manual_seed(0)
    plain = SigLIP(SigLIPConfig(vision=VisionConfig(**SMALL)))
    stem = SigLIP(SigLIPConfig(vision=VisionConfig(**SMALL, shape_stem=True)))
    missing, _ = stem.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.startswith("vision.shape_stem.") for k in missing)
    pixels = torch.cat([_square((220, 30, 30)), _square((30, 70, 220))])
    torch.testing.assert_close(stem.encode_image(pixels), plain.encode_image(pixels))
    stem.encode_image(pixels).sum().backward()
    assert stem.vision.shape_stem.proj.weight.grad.abs().sum() > 0
    cap = PaliGemma(
        PaliGemmaConfig(vision=VisionConfig(**SMALL, shape_stem=True))
    )  # the captioner's tower too
    assert cap.encode_image(pixels).shape == (2, 16, cap.config.decoder.dim)


def test_stem_needs_a_power_of_two_patch():
    from shared.errors import UserError

    with pytest.raises(UserError, match="shape_stem"):
        VisionConfig(image_size=36, patch_size=6, shape_stem=True)
