"""The CPU recipe's sweep at a fixed wall time (issue 12 item 6): one knob at a time around modern-cpu.yaml.

Each point trains `text-lm fit -c configs/text/modern-cpu.yaml` with its overrides on the same time
budget (`trainer.max_time`: the WSD decay ends at the deadline), then scores the last checkpoint with
`text-lm test` on the whole held-out split (Hamlet, The Tempest, Twelfth Night), bits per byte over
non-overlapping windows of the model's own context, the score of `benchmarks/vs_nanogpt.py`.
Knobs: learning rates (Muon, embedding, head), tokens per step, context, width, depth, vocabulary,
decay fraction. Points run one after another; run the whole sweep on a quiet core
(`taskset -c 1 ... --threads 1`), since a time budget buys fewer steps under contention.

    taskset -c 1 .venv/bin/python benchmarks/cpu_sweep.py --budget-s 200 --threads 1 --out runs/sweep
    .venv/bin/python benchmarks/cpu_sweep.py --report-only --out runs/sweep   # table + plot again

Writes OUT/sweep.json (one row per point and seed, kept across invocations: a point run again replaces
its row), OUT/sweep.md (the table) and OUT/sweep.png (bits per byte against each knob's value).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.vs_nanogpt import finish, ours_cmd, score_ours, start  # noqa: E402

RECIPE = "configs/text/modern-cpu.yaml"
OPT = "--model.optimizer.init_args."


def lrs(embedding: float = 0.05, head: float = 0.004) -> list[str]:
    return [OPT + "groups", f'{{"embedding": {{"lr": {embedding}}}, "head": {{"lr": {head}}}}}']


def vocab(n: int) -> list[str]:
    return ["--data.data_dir", f"data/shakespeare_bpe{n}", "--model.config.vocab_size", str(n)]


def context(n: int, batch: int) -> list[str]:
    return ["--data.seq_len", str(n), "--model.config.max_seq_len", str(n), "--data.batch_size", str(batch)]


def width(dim: int, heads: int) -> list[str]:
    return [
        "--model.config.dim",
        str(dim),
        "--model.config.n_heads",
        str(heads),
        "--model.config.n_kv_heads",
        str(heads),
    ]


# The sweep's base is the recipe as it was swept (vocabulary 1024, embedding lr 0.05, decay 0.4), given before each
# point's own overrides, so the recorded table reproduces after modern-cpu.yaml took the sweep's choices.
BASE = [*vocab(1024), *lrs(), "--model.decay_fraction", "0.4"]
# (knob, value shown, overrides); the base point is knob "base".
POINTS: dict[str, tuple[str, str, list[str]]] = {
    "base": ("base", "4x192 v1024 b8x256", []),
    "muon0.02": ("muon_lr", "0.02", [OPT + "muon_lr", "0.02"]),
    "muon0.05": ("muon_lr", "0.05", [OPT + "muon_lr", "0.05"]),
    "emb0.1": ("embedding_lr", "0.1", lrs(embedding=0.1)),
    "emb0.025": ("embedding_lr", "0.025", lrs(embedding=0.025)),
    "head0.008": ("head_lr", "0.008", lrs(head=0.008)),
    "head0.002": ("head_lr", "0.002", lrs(head=0.002)),
    "batch4": ("tokens_per_step", "1024", ["--data.batch_size", "4"]),
    "batch16": ("tokens_per_step", "4096", ["--data.batch_size", "16"]),
    "ctx512": ("context", "512 (b4)", context(512, 4)),
    "ctx128": ("context", "128 (b16)", context(128, 16)),
    "dim256": ("width", "256 (4 heads)", width(256, 4)),
    "dim128": ("width", "128 (2 heads)", width(128, 2)),
    "layers6": ("depth", "6", ["--model.config.n_layers", "6"]),
    "layers3": ("depth", "3", ["--model.config.n_layers", "3"]),
    "vocab512": ("vocab", "512", vocab(512)),
    "vocab2048": ("vocab", "2048", vocab(2048)),
    "decay0.6": ("decay_fraction", "0.6", ["--model.decay_fraction", "0.6"]),
    "decay0.25": ("decay_fraction", "0.25", ["--model.decay_fraction", "0.25"]),
}


def run_point(name: str, seed: int, a) -> dict:
    knob, value, own = POINTS[name]
    extra = [*BASE, *own]
    root = a.out / f"{name}-s{seed}"
    load0 = os.getloadavg()[0]
    proc = start(ours_cmd(RECIPE, seed, a.budget_s, None, root / "fit", extra), root / "fit.log", a.threads)
    [fit] = finish((*proc, f"text-lm fit ({name})"))
    score = score_ours(RECIPE, root, a.threads, extra)
    return {"point": name, "knob": knob, "value": value, "seed": seed, "budget_s": a.budget_s,
            "threads": a.threads, "load_before": load0, "load_after": os.getloadavg()[0],
            "fit_wall_s": fit["wall_s"], "fit_cpu_s": fit["cpu_s"], **score}  # fmt: skip


def report(rows: list[dict], out: Path) -> None:
    base = [r["val_bpb"] for r in rows if r["point"] == "base"]
    ref = sum(base) / len(base) if base else None
    lines = ["| point | knob | value | seed | steps | steady tok/s | whole-split bpb | vs base |",
             "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["knob"] != "base", r["knob"], r["point"], r["seed"])):
        rel = f"{r['val_bpb'] - ref:+.4f}" if ref is not None else "-"
        tps = f"{r['steady_tokens_per_s']:,.0f}" if r["steady_tokens_per_s"] else "-"
        lines.append(f"| {r['point']} | {r['knob']} | {r['value']} | {r['seed']} | {r['steps']} | {tps} "
                     f"| {r['val_bpb']:.4f} | {rel} |")  # fmt: skip
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knobs = sorted({r["knob"] for r in rows if r["knob"] != "base"})
    if not knobs:
        return
    fig, axes = plt.subplots(1, len(knobs), figsize=(2.6 * len(knobs), 3), sharey=True, squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        pts = [r for r in rows if r["knob"] == knob] + [
            dict(r, value="base") for r in rows if r["point"] == "base"
        ]
        labels = sorted({r["value"] for r in pts}, key=lambda v: (v != "base", v))
        for r in pts:
            ax.scatter(labels.index(r["value"]), r["val_bpb"], color="C0" if r["value"] == "base" else "C1")
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        ax.set_title(knob, fontsize=9)
        if ref is not None:
            ax.axhline(ref, color="grey", lw=0.5, ls="--")
    axes[0][0].set_ylabel("held-out bits/byte")
    fig.suptitle(f"modern-cpu sweep: {rows[0]['budget_s']:.0f} s of training, {rows[0]['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=200.0, help="training time of every point")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", default="1337")
    p.add_argument("--points", default=",".join(POINTS), help=f"comma-separated, of: {', '.join(POINTS)}")
    p.add_argument("--out", type=Path, default=ROOT / "runs/sweep")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    store = a.out / "sweep.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    if not a.report_only:
        for name in a.points.split(","):
            if name not in POINTS:
                raise SystemExit(f"--points: unknown point {name!r}; known: {', '.join(POINTS)}")
            for seed in (int(s) for s in a.seeds.split(",")):
                t0 = time.time()
                row = run_point(name, seed, a)
                rows = [r for r in rows if (r["point"], r["seed"]) != (name, seed)] + [row]
                store.write_text(json.dumps(rows, indent=1))
                print(f"{name} seed {seed}: {row['val_bpb']:.4f} bpb, {row['steps']} steps "
                      f"({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
    report(rows, a.out)


if __name__ == "__main__":
    main()
