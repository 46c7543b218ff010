"""Fine-tuning methods: which parameters train, what a checkpoint keeps, how it is rebuilt.

The seam of the system base (`shared/train/system.py`): a system holds `self.finetuning`, None
for full fine-tuning (every weight trains and is saved, the default) or a `LoRA`, which

- `prepare(model)`: after the starting weights are loaded (`init_from`), records the base's
  SHA-256 (`state_sha256`), wraps the configured projections in `LoRALinear`
  (`shared/nn/lora.py`, Hu et al. 2021) and freezes every other parameter, so the optimizer
  (which takes only `requires_grad` parameters) holds the adapters alone;
- `on_save_checkpoint`: keeps only the adapters in the checkpoint's `state_dict` (and so, with
  the optimizer's state of the adapters alone, a checkpoint a few percent of a full one) and
  adds `finetune = {"method": "lora", "lora": {rank, alpha, dropout, targets}, "base": PATH,
  "base_sha256": HEX}` (ARCHITECTURE.md section 3): the adapter names its base by hash;
- `on_load_checkpoint`: on resume, fills the base weights back in from the model (loaded from
  `init_from` again in `configure_model`) so Lightning's strict load finds every key, and, with
  adapter dropout, restores torch's RNG state saved beside them, so the resumed run draws the
  masks an uninterrupted one would (tests/text_lm/test_finetune_resume.py).

`load_adapters` is the reading side for the light commands (generate, chat, export-hf,
export-gguf): base weights from `finetune.base`, their hash checked, adapters applied and loaded;
`merge_lora` (shared/nn/lora.py) then folds them in for exports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from shared.errors import UserError
from shared.nn.lora import apply_lora, is_lora_param


@dataclass
class LoRAConfig:
    """Low-rank adapters (Hu et al. 2021): which linear layers get them and their size."""

    rank: int = 8
    """r: rank of each update B A (trainable numbers per matrix: r * (in + out))."""
    alpha: float = 16.0
    """The update is scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the adapters' input (the base path is not dropped)."""
    targets: list[str] = field(default_factory=lambda: ["qkv_proj", "o_proj"])
    """Names of the linear layers to adapt: attention's qkv_proj, o_proj; the MLP's gate_up_proj,
    down_proj (up_proj for the GELU MLP): every layer so named; or a glob over full names,
    e.g. "decoder.*.qkv_proj" (`shared.nn.lora.apply_lora`)."""

    def __post_init__(self):
        if self.rank <= 0:
            raise UserError(f"lora.rank must be positive, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise UserError("lora.targets is empty: name the linear layers to adapt, e.g. [qkv_proj, o_proj]")


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor in name order: the base's identity."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class LoRA:
    """The LoRA fine-tuning method of a system (module docstring)."""

    method = "lora"

    def __init__(self, config: LoRAConfig, base: str | None):
        if base is None:
            raise UserError("LoRA fine-tunes a base model: set model.init_from to its checkpoint")
        self.config, self.base = config, str(base)
        self.base_sha256: str | None = None

    def prepare(self, model: nn.Module) -> None:
        """Record the base's hash, add the adapters, freeze everything else."""
        self.base_sha256 = state_sha256(model.state_dict())
        c = self.config
        apply_lora(model, c.targets, c.rank, c.alpha, c.dropout)
        for name, p in model.named_parameters():
            p.requires_grad_(is_lora_param(name))

    def record(self) -> dict:
        return {
            "method": self.method,
            "lora": asdict(self.config),
            "base": self.base,
            "base_sha256": self.base_sha256,
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if is_lora_param(k)}
        checkpoint["finetune"] = self.record()
        if self.config.dropout > 0:  # Lightning keeps no RNG state: a resumed run's masks would differ
            checkpoint["finetune"]["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict, system: nn.Module) -> None:
        """Resume: the checkpoint holds the adapters; the base weights come from the live model."""
        saved = checkpoint.get("finetune") or {}
        if saved.get("base_sha256") not in (None, self.base_sha256):
            raise UserError(
                f"the checkpoint's adapters were trained on base {saved['base_sha256'][:12]}, but "
                f"model.init_from {self.base} is {str(self.base_sha256)[:12]}"
            )
        for k, v in system.state_dict().items():
            checkpoint["state_dict"].setdefault(k, v)
        if isinstance(saved.get("torch_rng_state"), torch.Tensor):  # the adapters' dropout goes on as it was
            torch.set_rng_state(saved["torch_rng_state"])


def set_lora(system, lora: LoRAConfig | dict | None, init_from: str | None) -> None:
    """A system's `lora` argument (a LoRAConfig, or the YAML's dict) -> `system.finetuning`, its
    hparams kept as plain data (weights_only checkpoint loading); None leaves full fine-tuning."""
    if lora is None:
        return
    config = LoRAConfig(**lora) if isinstance(lora, dict) else lora
    system.hparams["lora"] = asdict(config)
    system.finetuning = LoRA(config, base=init_from)


def trainable_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, tied tensors counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def load_adapters(
    model: nn.Module,
    ckpt: dict,
    load_base: Callable[[nn.Module, str], None],
    source: str,
    prefix: str = "model.",
) -> None:
    """Rebuild a LoRA checkpoint's model in place: base weights (`load_base(model, path)`), hash
    checked, adapters applied and loaded. `ckpt["finetune"]` says how (module docstring)."""
    ft = ckpt["finetune"]
    if not isinstance(ft, dict) or ft.get("method") != "lora":
        raise UserError(f"{source}: unknown fine-tuning method {ft!r} in the checkpoint")
    try:
        cfg = LoRAConfig(**ft["lora"])
    except (TypeError, KeyError) as e:
        raise UserError(f"{source}: malformed finetune.lora in the checkpoint ({e})") from None
    load_base(model, ft["base"])
    got = state_sha256(model.state_dict())
    if got != ft.get("base_sha256"):
        raise UserError(
            f"{source}: its adapters were trained on base sha256 {str(ft.get('base_sha256'))[:12]}..., "
            f"but {ft['base']} is {got[:12]}... (the base changed since)"
        )
    apply_lora(model, cfg.targets, cfg.rank, cfg.alpha, cfg.dropout)
    adapters = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    own = {k for k in model.state_dict() if is_lora_param(k)}
    if set(adapters) != own:
        raise UserError(
            f"{source}: adapters do not fit the model (missing {sorted(own - set(adapters))[:3]}, "
            f"unexpected {sorted(set(adapters) - own)[:3]})"
        )
    model.load_state_dict(adapters, strict=False)  # the adapters only; the base is loaded above
