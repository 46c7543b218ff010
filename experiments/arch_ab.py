"""A/B of the architecture options at small scale: does each one lower held-out loss at equal tokens?

    python -m experiments.arch_ab [--steps 250] [--seeds 0 1] [--arms llama modern modern+x0 ...]

Byte-level (char-level on this ASCII corpus, as nanoGPT's Shakespeare recipe) on the fixed split of
ARCHITECTURE.md section 4: the shipped plays minus Hamlet, The Tempest and Twelfth Night train,
those three are validation. Every arm trains the same number of tokens (steps x batch x seq_len)
with AdamW (no weight decay) and warmup + cosine, from the same seeds and the same batches, and is scored on the same
fixed validation windows (bits per byte = loss / ln 2). One process, arms interleaved per seed, so
the step times are comparable within the run.

Arms: `llama` (SwiGLU, tied, the llama-tiny shape scaled down), `modern` (every option of
configs/text/modern-tiny.yaml), and three candidates that exist only in this file, to decide whether
they earn a config field (issue 12: "only if a quick A/B at small scale shows a gain"):
- `+x0`: modded-nanogpt's residual scalars: before block i, x <- a_i * x + b_i * x0, x0 the
  embedding output, a_i = 1 and b_i = 0 at init (learned, 2 scalars per layer).
- `+bigram`: a hashed bigram embedding added to the token embedding, E2[hash(prev, cur) mod N]
  (OpenAI parameter-golf's BigramHash), initialised to zero.
- `+ve`: modded-nanogpt's value embeddings: a second token table mixed into the values of the
  first and the last layer, v <- a_i * v + b_i * E_v[idx] (a_i = b_i = 0.5 at init, learned, as
  modded-nanogpt; E_v initialised at about the values' own scale here, std 0.25).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.nn.context import StackContext
from text_lm.config import LlamaConfig
from text_lm.model import Llama

DATA = Path(__file__).resolve().parents[1] / "data" / "shakespeare"
VAL = ("hamlet_gut.txt", "tempest_gut.txt", "twelfth_night_gut.txt")
SHAPE = dict(vocab_size=256, max_seq_len=128, dim=128, n_layers=4, n_heads=4, n_kv_heads=2)
MODERN = dict(mlp="relu2", qk_norm=True, zero_init_out=True, logit_softcap=15.0, tie_embeddings=False)


def load_split() -> tuple[torch.Tensor, torch.Tensor]:
    """(train bytes, val bytes) as int64 tensors, split by play."""
    train, val = [], []
    for f in sorted(DATA.glob("*.txt")):
        (val if f.name in VAL else train).append(np.frombuffer(f.read_bytes(), dtype=np.uint8))
    return torch.from_numpy(np.concatenate(train)).long(), torch.from_numpy(np.concatenate(val)).long()


class Candidate(Llama):
    """Llama plus the extras under test; a plain forward over the stack's blocks (no cache)."""

    def __init__(self, config: LlamaConfig, x0: bool = False, bigram: int = 0, ve: bool = False):
        super().__init__(config)
        L = config.n_layers
        self.x0_scalars = nn.Parameter(torch.tensor([[1.0, 0.0]] * L)) if x0 else None  # (L, 2)
        self.bigram = nn.Embedding(bigram, config.dim) if bigram else None
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.weight)
        tc = self.stack.cfg
        self.value_embed = nn.Embedding(config.vocab_size, tc.n_kv_heads * tc.head_dim) if ve else None
        if self.value_embed is not None:
            nn.init.normal_(self.value_embed.weight, 0.0, 0.25)  # v = x W_v: std ~0.02 sqrt(D) ~ 0.23
            self.ve_gates = nn.Parameter(torch.full((2, 2), 0.5))  # (first, last layer) x (a, b)
            self._ve = None
            for gate, i in enumerate((0, L - 1)):
                attn = self.stack.layers[i].attn
                attn.qkv_proj.register_forward_hook(self._add_value_embedding(gate, attn.qkv_sizes))

    def _add_value_embedding(self, gate: int, sizes: tuple[int, int, int]):
        def hook(module, inputs, out):  # out (B, T, Hq*Dh + 2*K*Dh): v <- a v + b ve on the v slice
            qk, v = out.split([sizes[0] + sizes[1], sizes[2]], -1)
            a, b = self.ve_gates[gate]
            return torch.cat([qk, a * v + b * self._ve], -1)

        return hook

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.shape[1]
        x = self.embed(idx)  # (B, T, D)
        if self.bigram is not None:
            prev = F.pad(idx[:, :-1], (1, 0), value=0)  # (B, T); the first token's "previous" is 0
            x = x + self.bigram((prev * 1_000_003 + idx) % self.bigram.num_embeddings)
        if self.value_embed is not None:
            self._ve = self.value_embed(idx)  # (B, T, K*Dh), read by the hooks
        x0 = x
        ctx = StackContext(rope=self.stack.rope(0, T))
        for i, layer in enumerate(self.stack.layers):
            if self.x0_scalars is not None:
                x = self.x0_scalars[i, 0] * x + self.x0_scalars[i, 1] * x0
            x, _ = layer(x, ctx.for_layer(i))
        logits = self.lm_head(self.stack.norm(x))
        cap = self.config.logit_softcap
        if cap is not None:
            logits = cap * torch.tanh(logits / cap)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


ARMS = {
    "llama": (dict(), dict()),
    "modern": (MODERN, dict()),
    "modern+x0": (MODERN, dict(x0=True)),
    "modern+bigram": (MODERN, dict(bigram=4096)),
    "modern+ve": (MODERN, dict(ve=True)),
}


def run(arm: str, seed: int, train, val_windows, steps: int, batch: int, lr: float) -> dict:
    options, extras = ARMS[arm]
    torch.manual_seed(seed)
    model = Candidate(LlamaConfig(**SHAPE, **options), **extras)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = steps // 10
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup)))
        ),
    )
    T = SHAPE["max_seq_len"]
    gen = torch.Generator().manual_seed(1000 + seed)  # the same batches for every arm of a seed
    t0 = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(0, len(train) - T - 1, (batch,), generator=gen)
        w = torch.stack([train[s : s + T + 1] for s in starts.tolist()])  # (B, T + 1)
        loss = model(w[:, :-1], w[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    step_s = (time.perf_counter() - t0) / steps
    model.eval()
    with torch.no_grad():
        val = sum(model(w[:, :-1], w[:, 1:]).item() for w in val_windows) / len(val_windows)
    return {"arm": arm, "seed": seed, "train": loss.item(), "val_bpb": val / math.log(2), "step_s": step_s}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--val-windows", type=int, default=64, help="fixed validation windows, 16 per batch")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    train, val = load_split()
    T = SHAPE["max_seq_len"]
    stride = (len(val) - T - 1) // a.val_windows  # evenly spread, non-overlapping windows
    windows = torch.stack([val[i * stride : i * stride + T + 1] for i in range(a.val_windows)])
    val_windows = windows.split(16)
    rows = []
    for seed in a.seeds:
        for arm in a.arms:
            r = run(arm, seed, train, val_windows, a.steps, a.batch, a.lr)
            rows.append(r)
            print(f"{arm:15s} seed {seed}  val {r['val_bpb']:.4f} bpb  train {r['train']:.3f}  "
                  f"{r['step_s'] * 1000:.0f} ms/step", flush=True)  # fmt: skip
    print("\n| arm | val bits/byte (mean +- spread over seeds) | ms/step |\n|---|---|---|")
    for arm in a.arms:
        v = [r["val_bpb"] for r in rows if r["arm"] == arm]
        ms = np.mean([r["step_s"] for r in rows if r["arm"] == arm]) * 1000
        print(f"| {arm} | {np.mean(v):.4f} +- {(max(v) - min(v)) / 2:.4f} (n={len(v)}) | {ms:.0f} |")


if __name__ == "__main__":
    main()
