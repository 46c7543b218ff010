"""PaliGemmaConfig.vision_feature_layers: the projector reads chosen token states of the image tower,
concatenated along features (the stack's `output_hidden_states`); the default is PaliGemma's."""

import pytest
import torch

from shared.errors import UserError
from shared.nn.config import TransformerConfig
from shared.nn.transformer import Transformer
from vision_lm.cli import main as vision_lm
from vision_lm.config import VisionConfig
from vision_lm.paligemma import PaliGemma
from vision_lm.paligemma_config import DecoderConfig, PaliGemmaConfig
from vision_lm.vit import VisionTower

SMALL = dict(image_size=16, patch_size=8, dim=32, n_layers=2, n_heads=2, pooling="none")


def test_stack_returns_its_input_and_every_block_output():
    torch.manual_seed(0)
    stack = Transformer(TransformerConfig(dim=32, n_layers=3, n_heads=2, max_seq_len=8, causal=False))
    x = torch.randn(2, 5, 32)
    out = stack(x, output_hidden_states=True)
    assert len(out.hidden_states) == 4 and out.hidden_states[0] is x
    h, ctx = x, None
    from shared.nn.context import StackContext

    ctx = StackContext(rope=stack.rope(0, 5), mask=None, start_pos=0, kv_caches=None)
    for i, layer in enumerate(stack.layers):  # the slow path: block by block
        h = layer(h, ctx.for_layer(i))[0]
        torch.testing.assert_close(out.hidden_states[i + 1], h)
    torch.testing.assert_close(out.hidden, stack.norm(h))
    assert stack(x).hidden_states is None  # off by default: nothing kept


def test_tower_concatenates_the_chosen_states_and_keeps_its_default():
    torch.manual_seed(0)
    tower = VisionTower(VisionConfig(**SMALL))
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    default = tower(pixels)  # (B, N, D): the last block after the final norm
    torch.testing.assert_close(tower(pixels, [-1]), default)
    torch.testing.assert_close(tower(pixels, [2]), default)
    stem = tower.patch_embed(pixels).flatten(2).transpose(1, 2) + tower.pos_embed  # (B, N, D)
    both = tower(pixels, [0, -1])
    assert both.shape == (2, 4, 64)
    torch.testing.assert_close(both[..., :32], stem)
    torch.testing.assert_close(both[..., 32:], default)
    middle = tower.stack(stem, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(tower(pixels, [1, 0]), torch.cat([middle, stem], -1))


def _captioner(layers):
    torch.manual_seed(0)
    config = PaliGemmaConfig(
        vision=VisionConfig(**SMALL),
        decoder=DecoderConfig(vocab_size=40, max_len=8, dim=32, n_layers=1, n_heads=2, n_kv_heads=1),
        vision_feature_layers=layers,
        zero_init_projector=False,
    )
    return PaliGemma(PaliGemmaConfig.from_dict(config.to_dict()))  # the list survives a checkpoint's config


def test_captioner_projects_the_concatenated_states_and_learns_through_both():
    model = _captioner([0, -1])
    assert model.config.vision_feature_layers == [0, -1]
    assert model.projector.in_features == 64 and model.encode_image(torch.zeros(1, 3, 16, 16)).shape == (
        1,
        4,
        32,
    )
    pixels, ids = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randint(0, 40, (2, 8))
    model(pixels, ids, torch.tensor([3, 3])).square().mean().backward()
    assert model.projector.weight.grad[:, :32].abs().sum() > 0  # the stem's half is read
    assert model.vision.patch_embed.weight.grad.abs().sum() > 0
    assert model.config.hf_unsupported() == ["vision_feature_layers"]
    assert _captioner([-1]).config.hf_unsupported() == []


@pytest.mark.parametrize("layers", [[], [3], [-4], ["1"], [True], 1])
def test_bad_layer_lists_are_one_error_naming_the_field(layers):
    with pytest.raises(UserError, match="vision_feature_layers"):
        PaliGemmaConfig(vision=VisionConfig(**SMALL), vision_feature_layers=layers)


def test_export_refuses_feature_layers_it_cannot_represent(tmp_path, capsys):
    model = _captioner([0, -1])
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": {"config": model.config.to_dict()}}, tmp_path / "c.ckpt"
    )
    with pytest.raises(SystemExit):
        vision_lm(["export-hf", "--checkpoint", str(tmp_path / "c.ckpt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vision_feature_layers" in err[0] and not (tmp_path / "out").exists()
