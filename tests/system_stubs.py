"""Stand-ins for tests/test_system_base.py: DataModules that satisfy the contracts structurally, tiny
systems of each track, and a Trainer with only what the hooks under test read."""

from __future__ import annotations

from types import SimpleNamespace

from shared.train.system import System
from text_lm.config import LlamaConfig
from text_lm.module import LanguageModelModule
from vision_lm.captioner_module import CaptionerModule
from vision_lm.config import SigLIPConfig
from vision_lm.paligemma_config import PaliGemmaConfig
from vision_lm.siglip_module import SigLIPModule


class TextDataStub:
    """Satisfies TextData without inheriting from it (a Protocol is structural)."""

    def __init__(self, tokenizer, vocab_size=64, seq_len=8):
        self.tokenizer, self.vocab_size, self.seq_len = tokenizer, vocab_size, seq_len

    def bytes_per_token(self, split: str) -> float:
        return 4.0


class ImageTextDataStub:
    """Satisfies ImageTextData and CaptionData: a tokenizer it trained (or was given), the bound sizes."""

    def __init__(self, tokenizer, trained=True, mode="contrastive"):
        self.tokenizer, self.tokenizer_trained, self.mode = tokenizer, trained, mode
        self.caption_order, self.answer_after_caption = "as_written", False
        self.zero_shot_classes, self.zero_shot_templates = ["red circle"], ["a small {}"]
        self.bound = None

    def bind(self, image_size: int, max_len: int) -> None:
        self.bound = (image_size, max_len)

    def records(self, split: str) -> list:
        return []

    def set_tokenizer(self, tok, trained: bool = False) -> None:
        self.tokenizer, self.tokenizer_trained = tok, trained


def text_system(**kw) -> LanguageModelModule:
    config = LlamaConfig.preset(
        "llama-tiny", vocab_size=64, max_seq_len=16, dim=32, n_layers=2, n_heads=4, n_kv_heads=2
    )
    return LanguageModelModule(config, sample_tokens=0, **kw)


def siglip_system(**kw) -> SigLIPModule:
    config = SigLIPConfig.preset("siglip-tiny", vision=dict(image_size=32, patch_size=8, dim=32, n_layers=2, n_heads=2),
                                 text=dict(vocab_size=300, max_len=6, dim=32, n_layers=2, n_heads=2))  # fmt: skip
    return SigLIPModule(config, **kw)


def captioner_system(**kw) -> CaptionerModule:
    return CaptionerModule(PaliGemmaConfig(), **kw)


BUILDERS = {"llama": text_system, "siglip": siglip_system, "paligemma": captioner_system}


def attach(module: System, datamodule=None, steps: int = 10) -> System:
    """A stand-in Trainer: what the hooks under test read."""
    module.trainer = SimpleNamespace(datamodule=datamodule, estimated_stepping_batches=steps)
    return module
