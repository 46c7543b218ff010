"""The ladder's report: validation curves from TensorBoard, the Markdown table, the plot.

`text-lm ladder` (experiments/ladder/run.py) runs the rungs; this module turns their results (one dict
per rung, as stored in `ladder.json`) into `ladder.md` and `ladder.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.io import atomic_path, write_json_atomic, write_text_atomic
from shared.train.tb_events import read_scalars


def validation_curve(version_dir: Path, t0: float, tokens_per_step: int) -> list[dict]:
    """The periodic validations of a run: tokens trained and seconds since `t0` (wall clock, Unix)
    at each one. Lightning logs a validation after optimizer step s under step s - 1."""
    loss = {step: v for step, _, v in read_scalars(version_dir, "val/loss")}
    return [
        {
            "step": step + 1,
            "tokens": (step + 1) * tokens_per_step,
            "wall_s": round(wall - t0, 2),
            "val_loss": loss.get(step),
            "val_bpb": bpb,
        }
        for step, wall, bpb in read_scalars(version_dir, "val/bpb")
    ]


def median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def by_rung(results: list[dict]) -> list[list[dict]]:
    """The results grouped by rung (one entry per seed), in ladder order."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["name"], []).append(r)
    return list(groups.values())


def _mean(rs: list[dict], key: str) -> float | None:
    xs = [r[key] for r in rs if r.get(key) is not None]
    return sum(xs) / len(xs) if xs else None


def markdown_table(results: list[dict]) -> str:
    """One row per rung, in ladder order: means over its seeds, and the spread (max - min) of bits per byte."""
    head = (
        "| rung | params total | params active | tokens | fit time | val loss | val bits/byte | seeds "
        "| spread | tokens/s | peak memory | KV cache / token |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for rs in by_rung(results):
        r, bpbs = rs[0], [x["val_bpb"] for x in rs if x.get("val_bpb") is not None]
        spread = f"{max(bpbs) - min(bpbs):.4f}" if len(bpbs) > 1 else "-"
        rows.append(
            f"| {r['rung']} {r['label']} | {_millions(r['params_total'])} | {_millions(r['params_active'])} "
            f"| {round(_mean(rs, 'tokens')):,} | {_mean(rs, 'fit_s'):.0f} s | {_num(_mean(rs, 'val_loss'), '.4f')} "
            f"| {_num(_mean(rs, 'val_bpb'), '.4f')} | {len(rs)} | {spread} "
            f"| {_num(_mean(rs, 'tokens_per_sec'), ',.0f')} | {_bytes(max(x['peak_memory_bytes'] for x in rs))} "
            f"| {r['kv_cache_bytes_per_token']:,} B |"
        )
    return head + "\n".join(rows) + "\n"


def commands(results: list[dict]) -> str:
    """The command line(s) that produced the rows (a rung re-run alone keeps its own)."""
    by_command: dict[str, list[str]] = {}
    for r in results:
        by_command.setdefault(r["command"], []).append(str(r["rung"]))
    if len(by_command) == 1:
        return f"- command: `{next(iter(by_command))}`\n"
    return "".join(
        f"- command for rung{'s' * (len(rs) > 1)} {', '.join(rs)}: `{c}`\n" for c, rs in by_command.items()
    )


def markdown(meta: dict, results: list[dict]) -> str:
    memory = {r["peak_memory_kind"] for r in results}
    elem = "/".join(sorted({str(r["kv_bytes_per_element"]) for r in results}))
    return (
        f"# Architecture ladder: GPT-2 -> Llama -> the 2025 recipe\n\n"
        f"{markdown_table(results)}\n"
        f"- budget per rung: {meta['budget']}; same data (`{meta['data_dir']}`) and tokenizer; seeds "
        f"{', '.join(str(s) for s in sorted({r.get('seed', 1337) for r in results}))} (each rung trained once "
        f"per seed: the table gives means, and the spread = max - min of bits per byte)\n"
        f"- device: {meta['device']}; torch {meta['torch']}, lightning {meta['lightning']}\n"
        f"{commands(results)}"
        f"- val loss / bits per byte: the whole validation split after training (the curves in "
        f"`ladder.png` use the periodic validations, `trainer.limit_val_batches` batches each)\n"
        f"- tokens/s: median of `train/tokens_per_sec` (training steps only, validation excluded); "
        f"fit time: the whole `fit`, validations and start-up included\n"
        f"- peak memory: {' / '.join(sorted(memory))}\n"
        f"- KV cache / token: 2 (K and V) x layers x KV heads x head dim x {elem} "
        f"bytes (the training precision's element size)\n"
        f"- TensorBoard, all rungs side by side: `tensorboard --logdir {meta['out']}`\n"
    )


def plot(results: list[dict], path: Path) -> None:
    """Validation bits per byte against tokens trained (left) and wall-clock time (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [[p for p in r["curve"] if p["val_bpb"] is not None] for r in results]
    values = [p["val_bpb"] for pts in curves for p in pts]
    if not values:
        return
    # An early loss spike of one rung would squash the others: clip the axis just above the typical
    # first validation and draw clipped points as triangles on the top edge.
    top = 1.04 * median([pts[0]["val_bpb"] for pts in curves if pts])
    bottom = min(values) - 0.04 * (top - min(values))
    fig, (by_tokens, by_time) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = dict(
        zip([rs[0]["name"] for rs in by_rung(results)], plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    )
    labelled: set[str] = set()
    for r, pts in zip(results, curves):  # one curve per seed, in its rung's colour
        y, color = [p["val_bpb"] for p in pts], colors[r["name"]]
        label = None if r["name"] in labelled else f"{r['rung']} {r['label']}"
        labelled.add(r["name"])
        for ax, x in (
            (by_tokens, [p["tokens"] / 1e6 for p in pts]),
            (by_time, [p["wall_s"] / 60 for p in pts]),
        ):
            ax.plot(x, [min(v, top) for v in y], "o-", ms=3, color=color, label=label)
            clipped = [(xi, top) for xi, v in zip(x, y) if v > top]
            if clipped:
                ax.plot(*zip(*clipped), "^", ms=7, color=color, clip_on=False)
    by_tokens.set_ylim(bottom, top)
    by_tokens.set_xlabel("training tokens (millions)")
    by_time.set_xlabel("wall-clock minutes since the start of fit")
    by_tokens.set_ylabel("validation bits per byte")
    for ax in (by_tokens, by_time):
        ax.grid(alpha=0.3)
    by_tokens.legend(fontsize=8, loc="lower left")
    above = "; ▲ = above the axis" if max(values) > top else ""
    fig.suptitle(f"Architecture ladder: validation bits per byte (lower is better{above})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_report(out: Path, meta: dict, results: list[dict]) -> None:
    """ladder.json (raw), ladder.md (table), ladder.png (curves), each written atomically."""
    write_json_atomic(out / "ladder.json", {"meta": meta, "rungs": results})
    write_text_atomic(out / "ladder.md", markdown(meta, results))
    plot(results, out / "ladder.png")


def load_report(out: Path) -> tuple[dict, list[dict]]:
    data = json.loads((out / "ladder.json").read_text())
    return data["meta"], data["rungs"]
