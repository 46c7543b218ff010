"""nanoGPT's character-level Shakespeare run, re-implemented minimally, as the peer of issue 12's target.

nanoGPT (Andrej Karpathy, https://github.com/karpathy/nanoGPT, MIT licence): `model.py` (GPT: token +
learned position embeddings, pre-LayerNorm blocks of causal self-attention with one fused `c_attn`
projection and a 4x GELU MLP, final LayerNorm, head tied to the token embedding; normal(0, 0.02)
init with the residual `c_proj` weights at 0.02 / sqrt(2 * n_layer)) and `train.py` (random
windows drawn with `torch.randint`, the next batch fetched right after the forward pass, AdamW with
weight decay on every >= 2-D tensor, linear warmup `lr * (it + 1) / (warmup + 1)` then cosine to
`min_lr`, gradient clipping, iterations 0..max_iters inclusive, an estimate of the train/val loss
every `eval_interval` iterations over `eval_iters` random batches). The code below follows those
two files line for line where it matters for speed and quality; it leaves out what a CPU run
does not use (DDP, GradScaler, autocast, compile, wandb, checkpoint saving, sampling).

The recipe is nanoGPT README's CPU run of `config/train_shakespeare_char.py` (4 layers x 4 heads
x 128, block 64, batch 12, dropout 0, no biases, lr 1e-3, beta2 0.99, 100 warmup iterations,
cosine to 1e-4 over 5000, weight decay 0.1, clip 1.0, fp32, eval_iters 20), with max_iters 5000.

Data, on our fixed split: train = the shipped plays other than Hamlet, The Tempest and Twelfth
Night; validation = those three (`text_lm/corpus.py`). As in nanoGPT's `data/shakespeare_char/
prepare.py`, the vocabulary is the sorted set of characters of the whole text, and each split is
its files' text concatenated (sorted by file name, as `text-lm prepare` orders them).

Score: bits per byte over the whole held-out split, in non-overlapping windows of the model's
context (window k: characters k*T .. k*T+T predict k*T+1 .. k*T+T; the last partial window is
left out), exactly what `text-lm test` does on our shards: summed NLL in bits / UTF-8 bytes of the
predicted characters (1 byte each on this ASCII corpus; counted per character regardless).

    .venv/bin/python benchmarks/nanogpt_ref.py --out runs/nanogpt/ref.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nanogpt_model import GPT, GPTConfig  # noqa: E402  (the script's folder is on sys.path)

from text_lm.corpus import DEFAULT_CORPUS, DEFAULT_VAL_FILES  # noqa: E402


# ---------------------------------------------------------------------------- data (our fixed split)
def load_split() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train ids, val ids, vocabulary): character ids of the concatenated files of each split."""
    files = sorted(DEFAULT_CORPUS.glob("*_gut.txt"))
    texts = {f.name: f.read_text(encoding="utf-8") for f in files}
    train = "".join(t for n, t in texts.items() if n not in DEFAULT_VAL_FILES)
    val = "".join(texts[n] for n in sorted(DEFAULT_VAL_FILES))
    chars = sorted(set(train + val))
    stoi = {ch: i for i, ch in enumerate(chars)}
    enc = lambda s: np.array([stoi[c] for c in s], dtype=np.uint16)  # noqa: E731
    return enc(train), enc(val), chars


# ---------------------------------------------------------------------------- training (nanoGPT train.py)
def get_lr(it: int, a) -> float:
    if it < a.warmup_iters:
        return a.learning_rate * (it + 1) / (a.warmup_iters + 1)
    if it > a.lr_decay_iters:
        return a.min_lr
    decay_ratio = (it - a.warmup_iters) / (a.lr_decay_iters - a.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return a.min_lr + coeff * (a.learning_rate - a.min_lr)


def train(a, train_data: np.ndarray, val_data: np.ndarray, vocab_size: int) -> tuple[GPT, dict]:
    torch.manual_seed(a.seed)
    cfg = GPTConfig(a.block_size, vocab_size, a.n_layer, a.n_head, a.n_embd, a.dropout, a.bias)
    model = GPT(cfg)
    optimizer = model.configure_optimizers(a.weight_decay, a.learning_rate, (a.beta1, a.beta2), "cpu")

    def get_batch(split):
        data = train_data if split == "train" else val_data
        ix = torch.randint(len(data) - a.block_size, (a.batch_size,))
        x = torch.stack([torch.from_numpy(data[i : i + a.block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + a.block_size].astype(np.int64)) for i in ix])
        return x, y

    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ("train", "val"):
            losses = torch.zeros(a.eval_iters)
            for k in range(a.eval_iters):
                X, Y = get_batch(split)
                losses[k] = model(X, Y)[1].item()
            out[split] = losses.mean().item()
        model.train()
        return out

    X, Y = get_batch("train")
    step_times, evals = [], []
    iter_num, t_start, cpu_start = 0, time.perf_counter(), time.process_time()
    t0 = t_start
    while True:
        lr = get_lr(iter_num, a) if a.decay_lr else a.learning_rate
        for g in optimizer.param_groups:
            g["lr"] = lr
        evaluated = iter_num % a.eval_interval == 0
        if evaluated:
            losses = estimate_loss()
            evals.append({"iter": iter_num, **losses})
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        _, loss = model(X, Y)
        X, Y = get_batch("train")  # prefetch, as nanoGPT does
        loss.backward()
        if a.grad_clip != 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        if not evaluated and iter_num > 0:
            step_times.append(t1 - t0)
        if iter_num % a.log_interval == 0:
            print(f"iter {iter_num}: loss {loss.item():.4f}, time {(t1 - t0) * 1000:.2f}ms", flush=True)
        t0 = t1
        iter_num += 1
        if iter_num > a.max_iters:
            break
    wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    steady = statistics.median(step_times)
    stats = {
        "iters": iter_num,
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "median_step_ms": steady * 1000,
        "steady_tokens_per_s": a.batch_size * a.block_size / steady,
        "evals": evals,
        "params": sum(p.numel() for p in model.parameters()),
    }
    return model, stats


@torch.no_grad()
def whole_split_bpb(model: GPT, data: np.ndarray, chars: list[str], T: int, batch: int = 64) -> dict:
    """Bits per byte over every non-overlapping window of T + 1 characters of `data` (see module doc)."""
    model.eval()
    n_windows = (len(data) - 1) // T
    nbytes = torch.tensor([len(c.encode("utf-8")) for c in chars], dtype=torch.int64)
    ids = torch.from_numpy(data.astype(np.int64))
    nats, n_bytes, n_targets = 0.0, 0, 0
    for k0 in range(0, n_windows, batch):
        starts = torch.arange(k0, min(k0 + batch, n_windows)) * T
        w = ids[starts[:, None] + torch.arange(T + 1)]  # (b, T + 1)
        logits, _ = model(w[:, :-1])
        nats += F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum").item()
        n_bytes += int(nbytes[w[:, 1:]].sum())
        n_targets += w[:, 1:].numel()
    return {"val_bpb": nats / math.log(2) / n_bytes, "val_nats_per_char": nats / n_targets,
            "val_windows": n_windows, "val_bytes_scored": n_bytes}  # fmt: skip


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = p.add_argument
    for name, default in dict(
        eval_interval=250, log_interval=250, eval_iters=20, batch_size=12, block_size=64, n_layer=4,
        n_head=4, n_embd=128, max_iters=5000, warmup_iters=100, lr_decay_iters=5000, seed=1337,
    ).items():  # fmt: skip
        add(f"--{name}", type=int, default=default)
    for name, default in dict(dropout=0.0, learning_rate=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99,
                              grad_clip=1.0, min_lr=1e-4).items():  # fmt: skip
        add(f"--{name}", type=float, default=default)
    add("--bias", action="store_true", help="biases in Linear and LayerNorm (nanoGPT's default: none)")
    add("--no-decay-lr", dest="decay_lr", action="store_false")
    add("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add("--out", type=Path, help="write the figures here as JSON")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    train_data, val_data, chars = load_split()
    ascii_only = all(ord(c) < 128 for c in chars)
    print(f"vocabulary {len(chars)} characters (ASCII only: {ascii_only}); train {len(train_data):,}, "
          f"val {len(val_data):,} characters; torch threads {torch.get_num_threads()}")  # fmt: skip
    model, stats = train(a, train_data, val_data, len(chars))
    score = whole_split_bpb(model, val_data, chars, a.block_size)
    result = {"peer": "nanoGPT (re-implementation)", "seed": a.seed, "threads": torch.get_num_threads(),
              "vocab": len(chars), "ascii": ascii_only, "load_after": os.getloadavg(), **stats, **score}  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "evals"}, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
