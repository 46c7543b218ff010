"""`text-lm ladder` (or `python -m experiments.ladder`): from GPT-2 to Llama one change at a time, on the same data, seed and budget.

The rungs are the YAML files of configs/text/ladder/, in name order; each differs from the one
before it in one place:

    0 GPT-2 baseline   LayerNorm, learned positions, GELU MLP, full multi-head attention
    1 +RMSNorm   2 +RoPE   3 +SwiGLU   4 +GQA (4 KV heads for 8 query heads)
    5 +MoE             8 experts of half the width, top-2: the same active parameters
    6 2025 recipe      rung 4 with QK-norm, ReLU^2, zero-init outputs, soft-capped logits, an untied
                       head, Muon + per-group learning rates and a WSD schedule (several changes)

Each rung trains through the real `text-lm fit` in a fresh process (so its peak memory is its
own), then its last checkpoint is scored on the whole validation split. Written into --out:

    ladder.md  ladder.png  ladder.json   the table, the curves (bits per byte against tokens and
                                         against wall time) and the raw results
    <rung name>/version_0/               each rung's TensorBoard run and last checkpoint, so
                                         `tensorboard --logdir OUT` shows the rungs side by side

Budgets: --budget-tokens N trains every rung on the same N tokens (max_steps = N / tokens per step).
--budget-minutes M gives every rung M minutes (Lightning's max_time); its learning-rate schedule is
sized from a timing of a few steps so that it ends about when the time does. Running some rungs
again (`--rungs 3`, after changing 3-swiglu.yaml) with the same settings replaces their rows in the
report and keeps the others. --seeds 1337,1338,1339 trains every rung once per seed (the model's
initialisation and the training windows both follow it); the table gives the mean and the spread
(max - min) over the seeds, the plot one curve per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from shared.errors import ArgumentParser, UserError, exit_on_user_error

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = "data/shakespeare_bpe"
DEFAULT_TOKENS = 262_144  # 128 steps of 8 x 256 tokens: the six rungs take about 20 minutes on 2 CPU cores
PASSED_SECTIONS = ("model", "data", "trainer", "seed_everything", "checkpoint", "throughput", "nonfinite")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="text-lm ladder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any further `--section.key value` arguments go to every rung's `text-lm fit`, after the\n"
        f"ladder's own settings (sections: {', '.join(PASSED_SECTIONS)}), e.g.\n"
        "`--trainer.accelerator gpu --data.batch_size 32`, or `--model.config.dim 64` for a quick look.",
        allow_abbrev=False,
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-tokens",
        type=int,
        metavar="N",
        help=f"training tokens per rung (default {DEFAULT_TOKENS:,}: about 20 minutes on 2 CPU cores)",
    )
    budget.add_argument("--budget-minutes", type=float, metavar="M", help="minutes of `fit` per rung")
    p.add_argument(
        "--out", type=Path, default=Path("runs/ladder"), help="output folder (default runs/ladder)"
    )
    p.add_argument("--rungs", help="comma-separated rung numbers to run, e.g. 0,5 (default: all)")
    p.add_argument("--seeds", default="1337", help="comma-separated seeds, each rung trains once per seed")
    p.add_argument("--configs", type=Path, default=ROOT / "configs/text/ladder", help="folder of rung YAMLs")
    p.add_argument(
        "--data-dir",
        default=DEFAULT_DATA,
        help=f"a `text-lm prepare` folder (default {DEFAULT_DATA}, prepared from the shipped plays if missing)",
    )
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str], list[Path]]:
    """(ladder options, arguments passed to every rung's fit, the rung YAMLs to run)."""
    p = build_parser()
    args, passed = p.parse_known_args(argv)
    if passed and not passed[0].startswith("--"):
        p.error(f"unexpected argument {passed[0]!r}")
    for tok in passed:
        if tok.startswith("--") and tok[2:].split("=")[0].split(".")[0] not in PASSED_SECTIONS:
            p.error(f"unrecognized argument {tok}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if args.budget_minutes is None:
        args.budget_tokens = DEFAULT_TOKENS if args.budget_tokens is None else args.budget_tokens
        if args.budget_tokens < 1:
            p.error(f"--budget-tokens must be positive, got {args.budget_tokens}")
    elif not args.budget_minutes > 0:
        p.error(f"--budget-minutes must be positive, got {args.budget_minutes}")
    from experiments.ladder.rung import rung_number

    configs = sorted(args.configs.glob("*.yaml"))
    if not configs:
        p.error(f"--configs: no rung YAML files in {args.configs}")
    if args.rungs is not None:
        try:
            wanted = {int(r) for r in args.rungs.split(",")}
        except ValueError:
            p.error(f"--rungs takes comma-separated rung numbers, got {args.rungs!r}")
        missing = wanted - {rung_number(c) for c in configs}
        if missing:
            p.error(f"--rungs: no rung {sorted(missing)} in {args.configs}")
        configs = [c for c in configs if rung_number(c) in wanted]
    return args, passed, configs


def ensure_data(data_dir: str) -> None:
    if (Path(data_dir) / "meta.json").is_file():
        return
    if data_dir != DEFAULT_DATA:
        raise UserError(f"{data_dir}: no meta.json; prepare it first with `text-lm prepare --out {data_dir}`")
    from text_lm.prepare import main as prepare

    print(f"[ladder] preparing the shipped Shakespeare into {data_dir}", flush=True)
    prepare(["--out", data_dir])


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        name = names[0] if names else name
    return f"CPU, {os.cpu_count()} cores ({name})"


def earlier_rows(out: Path, setup: dict, rerun: set[tuple[str, int]]) -> list[dict]:
    """The rows of an earlier ladder in `out` made with the same setup, for the (rung, seed) pairs not
    run again now, so that re-running one changed rung (`--rungs 3`) updates its rows and keeps the others."""
    try:
        rows = json.loads((out / "ladder.json").read_text())["rungs"]
    except (OSError, ValueError, KeyError):
        return []
    return [r for r in rows if r.get("setup") == setup and (r["name"], r.get("seed", 1337)) not in rerun]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, passed, configs = parse(argv)
    ensure_data(args.data_dir)

    import lightning
    import torch

    from experiments.ladder.report import markdown_table, write_report
    from experiments.ladder.rung import run_rung
    from shared.train.quiet import quiet

    quiet()
    minutes, command = args.budget_minutes, shlex.join(["text-lm", "ladder", *argv])
    budget = f"{args.budget_tokens:,} training tokens" if minutes is None else f"{minutes:g} minutes of fit"
    meta = {"budget": budget, "data_dir": args.data_dir, "device": device_name(), "torch": torch.__version__}
    meta.update(lightning=lightning.__version__, out=str(args.out), command=command)
    setup = {**meta, "configs": str(args.configs.resolve()), "passed": passed}
    del setup["command"]
    runs = [(c, s) for c in configs for s in args.seeds]
    rows = earlier_rows(args.out, setup, {(c.stem, s) for c, s in runs})
    for i, (config, seed) in enumerate(runs):
        progress = f"[ladder {i + 1}/{len(runs)}]"
        row = run_rung(config, args.out, args.data_dir, passed, args.budget_tokens, minutes, progress, seed)
        row.update(command=command, setup=setup, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        rows = sorted([*rows, row], key=lambda r: (str(type(r["rung"])), r["rung"], r.get("seed", 1337)))
        write_report(args.out, meta, rows)  # after every rung: an interrupted ladder keeps what it finished
    print(f"\n{markdown_table(rows)}\nwrote {args.out}/ladder.md, ladder.png and ladder.json")
    print(f"all rungs side by side: tensorboard --logdir {args.out}")


if __name__ == "__main__":
    main()
