"""Every preset a shipped YAML names is the model that YAML trains.

A YAML under configs/ whose model config has `name: <preset>` is parsed by the real command line's
parser (`shared.train.cli.resolve_config`: the YAML plus every default, nothing instantiated), and
the configuration it builds must equal `Config.preset(name)` on every field, so the preset tables
(text_lm/config.py, vision_lm/config.py, vision_lm/paligemma_config.py) and the YAMLs cannot drift
apart. YAMLs naming no preset (the ladder rungs) are left alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from text_lm.config import LlamaConfig
from vision_lm.config import SigLIPConfig
from vision_lm.paligemma_config import PaliGemmaConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_CLASSES = [LlamaConfig, SigLIPConfig, PaliGemmaConfig]


def _model_config(tree: dict) -> dict:
    """The model's `config` section: `model.config` (text-lm) or `model.init_args.config` (vision-lm)."""
    model = tree.get("model") or {}
    return model.get("config") or (model.get("init_args") or {}).get("config") or {}


def _named_presets() -> list[tuple[Path, type, str]]:
    found = []
    for path in sorted(ROOT.glob("configs/**/*.yaml")):
        name = _model_config(yaml.safe_load(path.read_text(encoding="utf-8"))).get("name")
        for cls in CONFIG_CLASSES:
            if name in cls.PRESETS:
                found.append((path, cls, name))
    return found


NAMED = _named_presets()


def test_the_shipped_yamls_name_the_presets():
    named = {name for _, _, name in NAMED}
    assert named == {
        "gpt2-tiny",
        "llama-tiny",
        "llama-moe-tiny",
        "llama-125m",
        "modern-tiny",
        "siglip-tiny",
        "paligemma-tiny",
    }


@pytest.mark.parametrize(
    ("path", "cls", "name"), NAMED, ids=[str(p.relative_to(ROOT / "configs")) for p, _, _ in NAMED]
)
def test_the_config_the_cli_builds_from_the_yaml_is_its_preset(path, cls, name):
    from shared.train.cli import resolve_config

    args = ["fit", "-c", str(path)]
    if cls is LlamaConfig:
        from text_lm.data import TextDataModule
        from text_lm.module import LanguageModelModule

        tree = resolve_config(LanguageModelModule, TextDataModule, args, prog="text-lm")
    else:
        from lightning.pytorch import LightningModule

        from vision_lm.data import ImageTextDataModule

        tree = resolve_config(
            LightningModule, ImageTextDataModule, args, prog="vision-lm", subclass_mode_model=True
        )
    built = cls.from_dict(_model_config(tree))
    assert _resolved(built) == _resolved(cls.preset(name))  # every field, the name included


def _resolved(config) -> dict:
    """`config.to_dict()` with the stack's derived defaults written out: a preset may leave
    `n_kv_heads` to the stack (None = n_heads) where its YAML writes the number (gpt2-tiny: 8)."""
    d = config.to_dict()
    stack = d["decoder"] if isinstance(config, PaliGemmaConfig) else d
    for key in ("n_kv_heads", "head_dim", "hidden_dim"):
        if key in stack and stack[key] is None:
            stack[key] = getattr(config.transformer(), key)
    return d
