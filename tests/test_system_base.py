"""The one system base (`shared/train/system.py`) and the DataModule contracts (`shared/train/data_contract.py`).

Every system's checkpoint is self-contained (model_type, model_config, tokenizer) and loads back
through its track's reader; a DataModule lacking what a system reads is one UserError naming it;
gradient checkpointing changes memory, not gradients; the three systems share the skeleton.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from system_stubs import (
    BUILDERS,
    ImageTextDataStub,
    TextDataStub,
    attach,
    captioner_system,
    siglip_system,
    text_system,
)

from shared.errors import UserError
from shared.nn.transformer import Transformer
from shared.tokenizer import Tokenizer
from shared.train.data_contract import ImageTextData, TextData, check_contract
from shared.train.system import System
from text_lm.checkpoint import model_from_checkpoint
from text_lm.module import LanguageModelModule
from vision_lm.captioner_module import CaptionerModule
from vision_lm.checkpoint import captioner_from_checkpoint, siglip_from_checkpoint
from vision_lm.paligemma import suffix_loss
from vision_lm.siglip_module import SigLIPModule

SYSTEMS = [LanguageModelModule, SigLIPModule, CaptionerModule]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(["a small red circle", "a large blue square"] * 4, 280, progress=False)


@pytest.fixture(scope="module")
def other_tok() -> Tokenizer:
    return Tokenizer.train(["to be or not to be"] * 4, 270, progress=False)


# ---------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kind", ["llama", "siglip", "paligemma"])
def test_every_checkpoint_holds_model_type_config_and_tokenizer_and_loads_back(kind, tok, tmp_path):
    module = BUILDERS[kind]()
    dm = TextDataStub(tok) if kind == "llama" else ImageTextDataStub(tok, mode="captioning")
    attach(module, dm)
    module.configure_model()
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert ckpt["model_type"] == kind
    assert ckpt["model_config"] == module.config.to_dict() == module.hparams["config"]
    assert ckpt["tokenizer"] == tok.to_dict()
    path = tmp_path / "system.ckpt"
    torch.save(ckpt, path)
    if kind == "llama":
        model, loaded_tok = model_from_checkpoint(path)
    elif kind == "siglip":
        loaded = siglip_from_checkpoint(path)
        model, loaded_tok = loaded.model, loaded.tokenizer
        assert loaded.templates == ["a small {}"]  # SigLIP adds the zero-shot templates
    else:
        loaded = captioner_from_checkpoint(path)
        model, loaded_tok = loaded.model, loaded.tokenizer
    assert loaded_tok.sha256 == tok.sha256
    for (name, a), b in zip(module.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_siglip_checkpoint_without_model_type_still_loads(tok, tmp_path):
    """Checkpoints written before SigLIP stored its type: no key means SigLIP."""
    module = attach(siglip_system(), ImageTextDataStub(tok))
    module.configure_model()
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    del ckpt["model_type"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert siglip_from_checkpoint(tmp_path / "old.ckpt").tokenizer.sha256 == tok.sha256


def test_each_reader_names_another_kind_of_checkpoint(tok, tmp_path):
    paths = {}
    for kind in ("llama", "siglip"):
        module = attach(BUILDERS[kind](), None)
        module.configure_model()
        ckpt = {"state_dict": module.state_dict()}
        module.on_save_checkpoint(ckpt)
        paths[kind] = tmp_path / f"{kind}.ckpt"
        torch.save(ckpt, paths[kind])
    with pytest.raises(UserError, match="a siglip checkpoint .vision-lm., not a text-lm one"):
        model_from_checkpoint(paths["siglip"])
    with pytest.raises(UserError, match=r"a text-lm \(Llama\) checkpoint, not a SigLIP one"):
        siglip_from_checkpoint(paths["llama"])
    with pytest.raises(UserError, match=r"a SigLIP checkpoint, not a captioner \(PaliGemma\) one"):
        captioner_from_checkpoint(paths["siglip"])


def test_without_a_datamodule_the_checkpoint_has_no_tokenizer_and_setup_does_nothing():
    module = text_system()
    assert module.data is None  # no trainer at all
    attach(module, None)
    assert module.data is None  # a trainer fed dataloaders directly
    module.setup("fit")
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["model_type"] == "llama" and "tokenizer" not in ckpt


def test_a_checkpoint_tokenizer_replaces_a_trained_one_and_conflicts_with_a_given_one(tok, other_tok):
    saved = {"tokenizer": other_tok.to_dict()}
    dm = ImageTextDataStub(tok, trained=True)
    attach(siglip_system(), dm).on_load_checkpoint(saved)
    assert dm.tokenizer.sha256 == other_tok.sha256 and dm.tokenizer_trained
    given = ImageTextDataStub(tok, trained=False)
    with pytest.raises(UserError, match="data.tokenizer differs"):
        attach(captioner_system(), given).on_load_checkpoint(saved)
    same = ImageTextDataStub(other_tok, trained=False)
    attach(siglip_system(), same).on_load_checkpoint(saved)  # the same tokenizer: fine
    text = TextDataStub(tok)
    attach(text_system(), text).on_load_checkpoint(saved)  # prepared shards keep their own tokenizer
    assert text.tokenizer is tok


# ---------------------------------------------------------------------- the contract
def test_a_datamodule_lacking_a_member_is_one_user_error_naming_it(tok):
    class NoBytes:
        tokenizer, vocab_size, seq_len = tok, 64, 8

    with pytest.raises(UserError, match=r"NoBytes lacks bytes_per_token, which LanguageModelModule") as e:
        attach(text_system(), NoBytes()).setup("fit")
    assert "\n" not in str(e.value) and "TextData" in str(e.value)

    dm = ImageTextDataStub(tok)
    del dm.zero_shot_templates
    with pytest.raises(UserError, match="lacks zero_shot_templates"):
        attach(siglip_system(), dm).setup("fit")
    with pytest.raises(UserError, match="mode"):
        check_contract(object(), ImageTextData, "the captioner")


def test_the_check_reads_no_property(tok):
    """Checking the contract must not load the data (a property may open the data set)."""

    class Lazy(TextDataStub):
        @property
        def vocab_size(self) -> int:
            raise AssertionError("checking the contract ran a property")

    dm = Lazy.__new__(Lazy)
    dm.tokenizer, dm.seq_len = tok, 8
    check_contract(dm, TextData, "the text system")


def test_the_vision_systems_bind_the_data_to_the_model(tok):
    dm = ImageTextDataStub(tok)
    attach(siglip_system(), dm).setup("fit")
    assert dm.bound == (32, 6)
    with pytest.raises(UserError, match="contrastive"):
        attach(captioner_system(), ImageTextDataStub(tok, mode="contrastive")).setup("fit")


# ---------------------------------------------------------------------- gradient checkpointing
def _loss(kind: str, model) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "llama":
        ids = torch.randint(0, 64, (2, 9), generator=g)
        return model(ids[:, :-1], ids[:, 1:]).loss
    size = model.config.vision.image_size
    pixels = torch.randn(2, 3, size, size, generator=g)
    if kind == "siglip":
        return model.loss(model(pixels, torch.randint(3, 64, (2, 6), generator=g)))
    ids = torch.randint(3, 100, (2, 8), generator=g)
    return suffix_loss(model(pixels, ids, torch.tensor([3, 2])), ids, torch.ones(2, 8, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["llama", "siglip", "paligemma"])
def test_gradient_checkpointing_gives_the_same_gradients(kind):
    grads, runs = {}, []  # runs: one entry per call of the first block, naming the setting
    for on in (False, True):
        module = BUILDERS[kind](gradient_checkpointing=on)
        torch.manual_seed(0)
        module.configure_model()
        stacks = [m for m in module.model.modules() if isinstance(m, Transformer)]
        assert stacks and all(s.gradient_checkpointing == on for s in stacks)
        stacks[0].layers[0].register_forward_pre_hook(lambda *_, on=on: runs.append(on))
        module.model.train()
        _loss(kind, module.model).backward()
        grads[on] = {k: p.grad for k, p in module.model.named_parameters() if p.grad is not None}
    assert runs == [False, True, True]  # checkpointed: the block runs again in backward
    assert grads[True].keys() == grads[False].keys() and grads[False]
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[True][name], g, msg=name)


# ---------------------------------------------------------------------- one skeleton
SKELETON = (
    "run_name",
    "configure_model",
    "configure_optimizers",
    "on_before_optimizer_step",
    "on_fit_start",
    "on_load_checkpoint",
    "data",
    "_tensorboard",
)


@pytest.mark.parametrize("cls", SYSTEMS, ids=lambda c: c.__name__)
def test_the_systems_share_the_base_skeleton(cls):
    assert issubclass(cls, System)
    assert not [name for name in SKELETON if name in vars(cls)]
    base = inspect.signature(System.__init__).parameters
    own = inspect.signature(cls.__init__).parameters  # LightningCLI reads these: YAML keys, --help
    for name in (
        "optimizer",
        "warmup_steps",
        "min_lr_ratio",
        "compile",
        "gradient_checkpointing",
        "schedule",
        "decay_fraction",
    ):
        assert own[name].default == base[name].default, name
        assert f"{name}:" in cls.__init__.__doc__
    assert own["config"].default is None


def test_optimizer_hooks_give_each_system_its_groups(tok):
    text = attach(text_system(no_decay_embeddings=False))
    text.configure_model()
    groups = text.configure_optimizers()["optimizer"].param_groups
    decayed = [p for g in groups if g.get("weight_decay", 1.0) != 0 for p in g["params"]]
    assert any(p is text.model.embed.weight for p in decayed)

    sig = attach(siglip_system(lr_multipliers={"logit_": 10.0}))
    sig.configure_model()
    groups = sig.configure_optimizers()["optimizer"].param_groups
    fast = [p for g in groups if g["lr_scale"] == 10.0 for p in g["params"]]
    assert any(p is sig.model.logit_scale for p in fast) and any(p is sig.model.logit_bias for p in fast)

    for factor, frozen in ((0.0, True), (0.1, False)):
        cap = attach(captioner_system(vision_lr_multiplier=factor))
        cap.configure_model()
        groups = cap.configure_optimizers()["optimizer"].param_groups
        in_groups = {id(p) for g in groups for p in g["params"]}
        vision = list(cap.model.vision.parameters())
        assert all((not p.requires_grad) == frozen for p in vision)
        assert all((id(p) in in_groups) != frozen for p in vision)
        if not frozen:
            scaled = {id(p) for g in groups if g["lr_scale"] == factor for p in g["params"]}
            assert all(id(p) in scaled for p in vision)
