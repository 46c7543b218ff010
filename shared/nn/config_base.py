"""`ModelConfig`: the dict and preset protocol every model configuration shares.

A model configuration (`LlamaConfig`, `SigLIPConfig`, `PaliGemmaConfig`) is a dataclass of plain
values and nested configuration dataclasses (SigLIP's two towers, PaliGemma's tower and decoder,
Llama's `moe`). Deriving from `ModelConfig` gives it, written once:

- `to_dict()`: plain data (dicts, numbers, strings, None; nested configs as nested dicts), so a
  checkpoint that stores it loads with `torch.load(weights_only=True)` (ARCHITECTURE.md, section 3).
- `from_dict(d)`: the inverse, strict at every depth: the fields no dataclass declares are named by
  their dotted path in one `UserError` (`unknown PaliGemmaConfig field(s): decoder.foo`), so a typo
  in a hand-written dict or a checkpoint from another model never passes silently.
- `preset(name, **overrides)`: an entry of the class's `PRESETS` table with `name` set and
  `overrides` replacing top-level fields (nested configs given as dicts or as configs).

Nested dicts become their dataclass in `__post_init__` (`ModelConfig.__post_init__`, which a
subclass's own `__post_init__` calls first), so presets and overrides may give a tower as a dict.
`check_positive` is the one positivity check: the stack's fields (`TransformerConfig`) and the
models' own (`vocab_size`, `image_size`, ...) use it, with the field named as the user writes it.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import ClassVar

from shared.errors import UserError


def check_positive(where: str, obj, names: tuple[str, ...]) -> None:
    """Each `obj.<name>` must be an integer > 0; the error names it as `<where><name>` (`vision.dim`)."""
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"{where}{name} must be a positive integer, got {value!r}")


def _nested_class(cls: type, name: str) -> type | None:
    """The configuration dataclass field `name` of `cls` holds (`MoEConfig | None` -> MoEConfig), or None."""
    hint = typing.get_type_hints(cls)[name]
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _unknown_fields(cls: type, d: dict, prefix: str) -> list[str]:
    """Dotted paths of the keys of `d`, at any depth, that `cls` (and its nested configs) lack."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [prefix + key for key in d if key not in fields]
    for name in fields:
        nested = _nested_class(cls, name)
        if nested is not None and isinstance(d.get(name), dict):
            unknown += _unknown_fields(nested, d[name], f"{prefix}{name}.")
    return unknown


def _check_known(owner: type, cls: type, d: dict, prefix: str = "") -> None:
    unknown = _unknown_fields(cls, d, prefix)
    if unknown:
        raise UserError(f"unknown {owner.__name__} field(s): {', '.join(sorted(unknown))}")


@dataclasses.dataclass
class ModelConfig:
    """Base of the model configuration dataclasses: strict `to_dict`/`from_dict` and `preset`.

    A dataclass itself, without fields: jsonargparse (LightningCLI) treats a class as plain data
    (`--model.config.dim`, the saved config.yaml without `class_path`) only when every class of its
    MRO is a dataclass."""

    PRESETS: ClassVar[dict[str, dict]] = {}
    """Named configurations: field values, nested configs as dicts. Each subclass sets its own."""

    def __post_init__(self):
        """Turn nested dicts into their configuration dataclass (their unknown keys are an error)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            nested = _nested_class(type(self), f.name)
            if nested is not None and isinstance(value, dict):
                _check_known(type(self), nested, value, f"{f.name}.")
                setattr(self, f.name, nested(**value))

    def to_dict(self) -> dict:
        """Plain data (checkpoints load with torch.load(weights_only=True))."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of `to_dict`; unknown fields, at any depth, are one error naming their dotted paths."""
        if not isinstance(d, dict):
            raise UserError(f"a {cls.__name__} must be a mapping of its fields, got {type(d).__name__}")
        _check_known(cls, cls, d)
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides):
        """The named configuration; `overrides` replace top-level fields (nested ones as dicts or configs)."""
        if name not in cls.PRESETS:
            raise UserError(f"unknown preset {name!r}; choose from {', '.join(cls.PRESETS)}")
        return cls(**{**copy.deepcopy(cls.PRESETS[name]), "name": name, **overrides})
