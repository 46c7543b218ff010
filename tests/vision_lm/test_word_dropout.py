"""The captioner's word dropout (issue 13): only suffix tokens the decoder reads are replaced, by ordinary
text tokens; the loss still scores the true ids; 0 leaves training as it was."""

from types import SimpleNamespace

import pytest
import torch

from shared.errors import UserError
from vision_lm.caption_generate import special_ids
from vision_lm.text_batch import drop_suffix_words


@pytest.fixture()
def system(shapes):
    from vision_lm.captioner_module import CaptionerModule
    from vision_lm.data import ImageTextDataModule

    dm = ImageTextDataModule(str(shapes), mode="multitask", batch_size=16)
    module = CaptionerModule(word_dropout=0.5)
    module._trainer = SimpleNamespace(datamodule=dm, global_step=0, global_rank=0, state=None)
    dm.setup("fit")
    module.setup("fit")
    module.configure_model()
    module.log = lambda *a, **k: None
    return module, dm, next(iter(dm.train_dataloader()))


def test_only_suffix_words_are_replaced_and_by_text_tokens(system):
    module, dm, batch = system
    torch.manual_seed(0)
    ids, mask = batch["input_ids"], batch["loss_mask"]
    seen = drop_suffix_words(ids, mask, dm.tokenizer, module.hparams.word_dropout)
    changed = seen != ids
    assert changed.any() and not (changed & ~mask).any()  # prompt, image markers and padding untouched
    tok = dm.tokenizer
    special = set(special_ids(tok)) | {tok.eos_id}
    assert not any(i in special for i in seen[changed].tolist())
    assert (seen[ids == tok.eos_id] == tok.eos_id).all()
    words = int((mask & ~torch.isin(ids, torch.tensor(sorted(special)))).sum())
    assert 0.3 < int(changed.sum()) / words < 0.7  # about half of them at 0.5


def test_training_step_reads_the_dropped_ids_and_scores_the_true_ones(system):
    from vision_lm.paligemma import suffix_loss

    module, _, batch = system
    read = []
    module.model.register_forward_pre_hook(lambda m, args: read.append(args[1].clone()))
    torch.manual_seed(1)
    loss = module.training_step(batch, 0)
    assert not torch.equal(read[0], batch["input_ids"])
    logits = module.model(batch["pixel_values"], read[0], batch["prefix_len"])
    torch.testing.assert_close(loss, suffix_loss(logits, batch["input_ids"], batch["loss_mask"]))
    module.hparams.word_dropout = 0.0
    module.training_step(batch, 0)
    assert torch.equal(read[-1], batch["input_ids"])


def test_bad_word_dropout_is_one_user_error():
    from vision_lm.captioner_module import CaptionerModule

    with pytest.raises(UserError, match="word_dropout"):
        CaptionerModule(word_dropout=1.0)
