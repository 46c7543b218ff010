"""One rung of `text-lm ladder`: resolve its config, size its budget, train and score it in a fresh process.

`run_rung` (in the ladder's process) resolves the rung's YAML exactly as `text-lm fit` will
(`shared.train.cli.resolve_config`: the same parser, so every override counts), turns the budget into
`max_steps`, then starts `python -m experiments.ladder.rung SPEC` (`rung_process`) in a new Python
process: the real `text-lm fit`, the peak memory of that process alone, and the last checkpoint scored
on the whole validation split.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from shared.errors import UserError
from shared.io import write_json_atomic
from shared.train.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[2]
VALIDATIONS = 8
"""Periodic validations per rung: the points of its curve."""


def rung_number(config: Path) -> int | str:
    """3 for `3-swiglu.yaml`; the file's stem when it has no number."""
    head = config.stem.split("-")[0]
    return int(head) if head.isdigit() else config.stem


def rung_label(config: Path) -> str:
    """The rung's name in tables: its YAML's first comment up to the colon (`# +RMSNorm: ...`)."""
    first = config.read_text().splitlines()[0]
    return first.lstrip("# ").split(":")[0].strip() if first.startswith("#") else config.stem


def resolve(config: Path, fit_args: list[str]) -> dict:
    """The rung's whole config as `text-lm fit` will see it; a bad override is a one-line UserError."""
    from shared.train.cli import resolve_config
    from text_lm.data import TextDataModule
    from text_lm.module import LanguageModelModule

    args = ["fit", "-c", str(config), *fit_args]
    try:
        return resolve_config(LanguageModelModule, TextDataModule, args, prog="text-lm")
    except UserError as e:
        raise UserError(f"{config.name}: {e}") from None


def describe(cfg: dict) -> dict:
    """Parameters (total, and active per token) and KV-cache bytes per token of the rung's model.

    KV cache per token = 2 (K and V) x layers x KV heads x head dim x bytes per element, with the
    element size of the training precision (2 for bf16/fp16).
    """
    import torch

    from text_lm.config import LlamaConfig
    from text_lm.model import Llama

    with torch.device("meta"):  # shapes only: nothing is allocated
        model = Llama(LlamaConfig(**cfg["model"]["config"]))
    tc = model.stack.cfg
    precision = str(resolve_precision(cfg["trainer"]["precision"], cfg["trainer"]["accelerator"]))
    elem = 8 if precision.startswith("64") else 2 if "16" in precision else 4
    kv_heads = tc.n_kv_heads or tc.n_heads
    return {
        "params_total": model.num_params(),
        "params_active": model.num_params(active=True),
        "kv_bytes_per_element": elem,
        "kv_cache_bytes_per_token": 2 * tc.n_layers * kv_heads * tc.head_dim * elem,
    }


def tokens_per_step(cfg: dict) -> int:
    t, d = cfg["trainer"], cfg["data"]
    devices = t["devices"] if isinstance(t["devices"], int) and t["devices"] > 0 else 1
    return d["batch_size"] * d["seq_len"] * (t.get("accumulate_grad_batches") or 1) * devices


def seconds_per_step(cfg: dict) -> float:
    """One optimizer step of the rung's model at its batch shape and precision, timed on random tokens."""
    import torch

    from text_lm.config import LlamaConfig
    from text_lm.model import Llama

    t, d = cfg["trainer"], cfg["data"]
    dev = "cuda" if torch.cuda.is_available() and t["accelerator"] in ("auto", "gpu", "cuda") else "cpu"
    model = Llama(LlamaConfig(**cfg["model"]["config"])).to(dev)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randint(0, model.config.vocab_size, (d["batch_size"], d["seq_len"]), device=dev)
    precision = str(resolve_precision(t["precision"], t["accelerator"]))  # "auto": what the fit will use
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step():
        with torch.autocast(dev, dtype=dtype, enabled=dtype is not None):
            loss = model(x, x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev == "cuda":
            torch.cuda.synchronize()

    step(), step()  # warm-up: allocations, kernel choices
    t0, n = time.perf_counter(), 3
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n * (t.get("accumulate_grad_batches") or 1)


def plan_steps(cfg: dict, budget_tokens: int | None, budget_minutes: float | None) -> tuple[int, str | None]:
    """(steps, max_time) of one rung. A token budget is a step budget. Under a time budget, max_time is
    the limit and the learning-rate schedule follows the training time (shared/train/budget.py), so
    every rung's decay ends at the deadline; `steps` is then an estimate from a timing of a few steps,
    used only to space the periodic validations."""
    if budget_minutes is None:
        return max(1, math.ceil(budget_tokens / tokens_per_step(cfg))), None
    budget_s, step_s = budget_minutes * 60, seconds_per_step(cfg)
    s = max(1, round(budget_s))
    return max(1, int(budget_s / step_s)), f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_rung(
    config: Path,
    out: Path,
    data_dir: str,
    passed: list[str],
    budget_tokens: int | None = None,
    budget_minutes: float | None = None,
    progress: str = "",
    seed: int | None = None,
) -> dict:
    """Train and score one rung with `seed` (None: the YAML's); its row of the ladder's results.
    `passed` go last to `text-lm fit`."""
    from experiments.ladder.report import median, validation_curve
    from shared.train.tb_events import read_scalars

    out = out.resolve()
    head = ["--data.data_dir", data_dir, "--trainer.default_root_dir", str(out), "--trainer.devices", "1"]
    # One checkpoint, last.ckpt, written when fit ends (not at every validation: 70-200 MB each time).
    head += ["--checkpoint.save_top_k", "0", "--checkpoint.save_on_train_epoch_end", "true"]
    head += ["--trainer.enable_model_summary", "false"]
    head += ["--trainer.enable_progress_bar", str(sys.stdout.isatty()).lower()]
    if seed is not None:  # the initialisation and the training windows
        head += ["--seed_everything", str(seed), "--data.seed", str(seed)]
    cfg = resolve(config, head + passed)
    if cfg["seed_everything"] != 1337:  # the default seed keeps the run folder of a one-seed ladder
        head += ["--model.config.name", f"{cfg['model']['config']['name']}-seed{cfg['seed_everything']}"]
        cfg = resolve(config, head + passed)
    label, tps = rung_label(config), tokens_per_step(cfg)
    steps, max_time = plan_steps(cfg, budget_tokens, budget_minutes)
    budget = [
        "--trainer.max_steps",
        "-1" if max_time else str(steps),
        "--trainer.max_time",
        max_time or "null",
    ]
    budget += ["--trainer.val_check_interval", str(max(1, steps // VALIDATIONS))]
    until = f", at most {budget_minutes:g} min" if max_time else f" = {steps * tps:,} tokens"
    seed = cfg["seed_everything"]
    print(
        f"{progress} {config.stem} ({label}), seed {seed}: {steps} steps x {tps:,} tokens{until}", flush=True
    )

    run_dir = out / cfg["model"]["config"]["name"]
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh version_0 for each rung, side by side in TensorBoard
    run_dir.mkdir(parents=True)
    spec = {"config": str(config), "fit_args": head + budget + passed, "resolved": cfg}
    spec.update(run_dir=str(run_dir), result=str(run_dir / "rung_result.json"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    rc = subprocess.run(
        [sys.executable, "-m", "experiments.ladder.rung", json.dumps(spec)], env=env
    ).returncode
    if rc != 0:
        raise UserError(f"rung {config.stem} failed (exit {rc}); its output is above")

    result = json.loads((run_dir / "rung_result.json").read_text())
    fit_start, version = result.pop("fit_start"), run_dir / "version_0"
    row = {
        "rung": rung_number(config),
        "name": config.stem,
        "label": label,
        "config": str(config),
        "seed": seed,
    }
    row.update(run=str(run_dir), tokens_per_step=tps, tokens=result["steps"] * tps, **describe(cfg), **result)
    row["tokens_per_sec"] = median([v for _, _, v in read_scalars(version, "train/tokens_per_sec")])
    row["curve"] = validation_curve(version, fit_start, tps)
    bpb, loss = row["val_bpb"], row["val_loss"]
    print(f"{progress} {config.stem}: val bits/byte {bpb:.4f} (loss {loss:.4f}) after {row['tokens']:,} tokens, "
          f"{row['fit_s']:.0f} s of fit", flush=True)  # fmt: skip
    return row


def rung_process(spec_json: str) -> None:
    """In the rung's own process: `text-lm fit`, its peak memory, the last checkpoint on the whole split."""
    import resource

    import lightning as L
    import torch

    from shared.train.checkpoint import read_checkpoint
    from text_lm.cli import main as text_lm
    from text_lm.config import LlamaConfig
    from text_lm.data import TextDataModule
    from text_lm.module import LanguageModelModule

    # Scoring a checkpoint without the callbacks that wrote it is what we mean to do.
    warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint.*")
    spec = json.loads(spec_json)
    cfg = spec["resolved"]
    t0 = time.time()
    text_lm(["fit", "-c", spec["config"], *spec["fit_args"]])
    fit_s = time.time() - t0
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        peak, kind = torch.cuda.max_memory_allocated(), "GPU: torch.cuda.max_memory_allocated"
    else:  # ru_maxrss is in KiB on Linux, in bytes on macOS
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak, kind = rss * (1 if sys.platform == "darwin" else 1024), "CPU: peak RSS of the rung's process"
    last = Path(spec["run_dir"]) / "version_0" / "checkpoints" / "last.ckpt"
    steps = read_checkpoint(last)["global_step"]

    dm = TextDataModule(**{**cfg["data"], "val_batches": None})  # the whole validation split
    module = LanguageModelModule(config=LlamaConfig(**cfg["model"]["config"]), sample_tokens=0)
    trainer = L.Trainer(
        accelerator=cfg["trainer"]["accelerator"],
        devices=1,
        precision=resolve_precision(cfg["trainer"]["precision"], cfg["trainer"]["accelerator"]),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    [metrics] = trainer.validate(module, datamodule=dm, ckpt_path=str(last), verbose=False)
    result = {"steps": steps, "fit_start": t0, "fit_s": round(fit_s, 1)}
    result.update(val_loss=metrics.get("val/loss"), val_bpb=metrics.get("val/bpb"))
    result.update(peak_memory_bytes=peak, peak_memory_kind=kind)
    write_json_atomic(spec["result"], result)


if __name__ == "__main__":  # the rung's own process, started by run_rung
    rung_process(sys.argv[1])
