"""The captioner's image dropout (issue 13): the dropped examples are read with all-zero image tokens,
exactly the text-only rows `--contrast` decodes; the others with their image; 0 trains as before."""

from types import SimpleNamespace

import pytest
import torch

from shared.errors import UserError


@pytest.fixture()
def system(shapes):
    from vision_lm.captioner_module import CaptionerModule
    from vision_lm.data import ImageTextDataModule

    dm = ImageTextDataModule(str(shapes), mode="multitask", batch_size=16)
    module = CaptionerModule(image_dropout=0.5)
    module._trainer = SimpleNamespace(datamodule=dm, global_step=0, global_rank=0, state=None)
    dm.setup("fit")
    module.setup("fit")
    module.configure_model()
    module.log = lambda *a, **k: None
    return module, next(iter(dm.train_dataloader()))


def test_dropped_rows_read_zero_image_tokens_and_the_rest_their_image(system):
    from vision_lm.paligemma import suffix_loss

    module, batch = system
    torch.manual_seed(0)
    with torch.no_grad():  # untrained, the zero-initialised output projections hide the image from the text
        for p in module.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    px, ids, n, mask = batch["pixel_values"], batch["input_ids"], batch["prefix_len"], batch["loss_mask"]
    torch.manual_seed(3)
    loss = module.training_step(batch, 0)
    torch.manual_seed(3)
    kept = torch.rand(ids.shape[0]) >= 0.5
    assert kept.any() and not kept.all()
    img = module.model.encode_image(px)
    expected = torch.where(kept[:, None, None], img, torch.zeros_like(img))
    logits = module.model(px, ids, n, image_tokens=expected)
    torch.testing.assert_close(loss, suffix_loss(logits, ids, mask))
    plain = suffix_loss(module.model(px, ids, n), ids, mask)
    assert not torch.allclose(loss, plain)  # the dropped rows change the loss
    module.hparams.image_dropout = 0.0
    torch.testing.assert_close(module.training_step(batch, 0), plain)


def test_bad_image_dropout_is_one_user_error():
    from vision_lm.captioner_module import CaptionerModule

    with pytest.raises(UserError, match="image_dropout"):
        CaptionerModule(image_dropout=-0.1)
