"""Static-shape decoding: one flat step per token over buffers allocated once.

At 5.5M parameters a decoding step is not arithmetic but dispatch: the training-path forward
makes ~25 module calls per layer (norm, attention, StackContext, KVCache.update, MLP, ...),
~2 ms of Python per token on a CPU. `Decoder` gathers, once per generation, what a step needs
and runs the step as a flat loop of tensor ops:

    x = embed[tok]                                          (B, D)
    per layer:  h = norm(x);  [q|k|v] = h W_qkv^T           the fused qkv_proj, its own weight
                q, k = rope(q, k) at row `pos` of tables precomputed to max_len
                cache_k[:, :, pos], cache_v[:, :, pos] = k, v     (index_copy_, in place)
                x += o_proj(softmax(q K^T / sqrt(Dh)) V)   over positions 0..pos (GQA: grouped)
                h = norm(x);  [g|u] = h W_gate_up^T;  x += down(act(g) * u)
    logits = head(norm(x))                                  (B, V)

The weights are the model's own fused projections (qkv_proj, gate_up_proj: one matmul each),
transposed once to (in, out) for a small model (see `packed`), the caches are the model's `KVCache` buffers (the prompt is prefilled by the model's
own forward, so chunked prefill and masks stay in one place), and RoPE tables are computed
once. Anything the flat step does not know (an MoE or other registered feed-forward, a
LayerNorm, QK-norm) is called as the module itself; a LoRA-adapted projection is read merged;
a model with a mixer or linear layer it cannot read decodes through `ModuleStepper` (the
model's forward, step by step). tests/text_lm/test_decode.py compares the logits and tokens
with the full-forward path.

Threads: a small model's step is a chain of ops of a few microseconds each, and every op
that opens an OpenMP parallel region (matmul, batched matmul, softmax) makes all threads meet;
on a busy machine a meeting waits for a descheduled thread (measured here: 2 threads under
load 23 spent 25x the CPU time of 1 thread per token). So while the batch holds fewer than
`SMALL` parameter-rows (batch x parameters) the decoder runs its steps on one thread, restoring
the caller's count after each call; `threads=` overrides.

`static=True` attends over the whole cache with a position mask, so every step has the same
shapes: the form `torch.compile` (`compile=True`) and CUDA graphs (`cuda_graph=True`, on a
GPU) need. On a CPU the eager flat step is the default; compiling pays only for long
generations (its one-off compile time is in BENCHMARKS.md next to the speed it buys).
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from shared.nn.attention import Attention
from shared.nn.mlp import GatedMLP
from shared.nn.norms import RMSNorm
from text_lm.model import Llama

SMALL = 2**26
"""batch x parameters below which decoding runs on one thread (llama-tiny at batch 8: 44M)."""


_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""model -> {id(weight): (weight, its _version when packed, the (in, out) copy)}: a model's weights
are transposed once, and again only after they change (an optimizer step or a load bumps the
version), so a later generation's time to first token does not pay for it."""


class Unsupported(TypeError):
    """A layer the flat step cannot read (`make_decoder` then steps through the model's forward)."""


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def _norm_fn(norm: torch.nn.Module):
    """A norm module as a closure of plain ops (RMSNorm: the module's own formula, op for op)."""
    if isinstance(norm, RMSNorm) and not norm.unit_offset:
        w, eps = norm.weight, norm.eps

        def rms(x: torch.Tensor) -> torch.Tensor:
            h = x.float()
            return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)

        return rms
    if isinstance(norm, torch.nn.LayerNorm):
        w, b, eps, shape = norm.weight, norm.bias, norm.eps, norm.normalized_shape
        return lambda x: F.layer_norm(x, shape, w, b, eps)
    return norm  # anything else: the module itself


def _linear(x: torch.Tensor, wt: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (B, in) @ wt (in, out) (+ b): nn.Linear with its weight transposed ahead of time."""
    return torch.mm(x, wt) if b is None else torch.addmm(b, x, wt)


class ModuleStepper:
    """The same interface over the model's own forward with its KV caches: for a model the flat
    step cannot read (a custom mixer, an unknown linear layer)."""

    def __init__(self, model: Llama, batch_size: int, max_len: int):
        self.model, self.caches, self.pos = model, model.make_kv_caches(batch_size, max_len), 0

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        self.pos = prompt.shape[1]
        return self.model(prompt, kv_caches=self.caches).logits[:, -1]

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        self.pos += 1
        return self.model(tok[:, None], kv_caches=self.caches, start_pos=self.pos - 1).logits[:, -1]


def make_decoder(model: Llama, batch_size: int, max_len: int, **options) -> Decoder | ModuleStepper:
    """A `Decoder` for `model`, or a `ModuleStepper` where the flat step cannot read a layer."""
    try:
        return Decoder(model, batch_size, max_len, **options)
    except Unsupported:
        return ModuleStepper(model, batch_size, max_len)


class Decoder:
    """Greedy/sampled decoding of `model` for `batch_size` rows of up to `max_len` positions.

    `prefill(prompt)` -> logits (B, V) of the prompt's last position; `step(tokens (B,))` -> logits
    (B, V) of the next position. Positions advance by one per call.
    """

    def __init__(
        self,
        model: Llama,
        batch_size: int,
        max_len: int,
        static: bool = False,
        compile: bool = False,
        cuda_graph: bool = False,
        threads: int | None = None,
    ):
        self.model = model
        if threads is None:
            small = batch_size * sum(p.numel() for p in model.parameters()) < SMALL
            threads = 1 if small else torch.get_num_threads()
        self.threads = threads
        # Weights in (in, out) order, contiguous: a (1, in) x (in, out) product reads them in
        # order, measured 1.6x faster per matmul here than nn.Linear's (out, in) at batch 1. A
        # transposed copy (a small model's: the same budget as threads=1), else a view.
        self.packed = batch_size * sum(p.numel() for p in model.parameters()) < SMALL
        self.caches = model.make_kv_caches(batch_size, max_len)
        self.max_len, self.pos = max_len, 0
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.prev_tok = torch.zeros(batch_size, dtype=torch.long, device=self.device)  # last token fed
        stack, cfg = model.stack, model.stack.cfg
        self.static = static or compile or cuda_graph
        self.layers = [self._layer(layer) for layer in stack.layers]
        self.final_norm = _norm_fn(stack.norm)
        self.head = self._mat(model.lm_head)
        self.rope = None
        if stack.rope is not None:
            cos, sin = stack.rope(0, max_len)  # (max_len, Dh), computed once
            self.rope = (cos.to(self.dtype), sin.to(self.dtype))
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        self.positions = torch.arange(max_len, device=self.device)  # for the static mask
        self.pos_t = torch.zeros(1, dtype=torch.long, device=self.device)  # the step's position
        self.step_fn = self._step
        if compile:
            self.step_fn = torch.compile(self._step, fullgraph=True, dynamic=False)
        self.graph = None
        self.cuda_graph = cuda_graph and self.device.type == "cuda"

    def _mat(self, linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
        if type(linear) is not torch.nn.Linear:  # a LoRA-adapted layer: its merged weight
            if not hasattr(linear, "merged"):
                raise Unsupported(f"Decoder cannot read a {type(linear).__name__} as a matrix")
            merged = linear.merged()
            return merged.weight.detach().t().contiguous(), merged.bias
        w = linear.weight
        if not self.packed:
            return w.detach().t(), linear.bias  # (in, out), a view
        cache = _PACKED.setdefault(self.model, {})
        hit = cache.get(id(w))
        if hit is None or hit[0] is not w or hit[1] != w._version:  # new or changed in place
            hit = cache[id(w)] = (w, w._version, w.detach().t().contiguous())  # (in, out)
        return hit[2], linear.bias

    def _layer(self, layer) -> dict:
        attn, mlp = layer.attn, layer.mlp
        if type(attn) is not Attention:
            raise Unsupported(f"Decoder needs the built-in attention mixer, got {type(attn).__name__}")
        d = {
            "attn_norm": _norm_fn(layer.attn_norm),
            "mlp_norm": _norm_fn(layer.mlp_norm),
            "attn": attn,
            "heads": (attn.n_heads, attn.n_kv_heads, attn.head_dim),
            "qk_norm": getattr(attn, "q_norm", None) is not None,
            "qkv": self._mat(attn.qkv_proj),  # the fused projection: one matmul for q, k, v
            "o": self._mat(attn.o_proj),
            "mlp": mlp,
        }
        if isinstance(mlp, GatedMLP):
            d["gate_up"] = self._mat(mlp.gate_up_proj)  # one matmul for gate and up
            d["down"] = self._mat(mlp.down_proj)
        return d

    @torch.inference_mode()
    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (B, T0) at positions 0..T0-1 -> logits (B, V) of its last position (the model's forward)."""
        self.pos = prompt.shape[1]
        self.prev_tok.copy_(prompt[:, -1])
        with _threads(self.threads):
            return self.model(prompt, kv_caches=self.caches).logits[:, -1]

    def _attend(self, d: dict, h: torch.Tensor, cache, pos_t: torch.Tensor, span: int, rope) -> torch.Tensor:
        """h (B, D) at position pos -> attention output (B, H*Dh); writes k, v into the cache.
        rope: this position's (cos, sin), (1, Dh) each, or None."""
        a = d["attn"]
        B, (H, K, Dh) = h.shape[0], d["heads"]
        qkv = _linear(h, *d["qkv"])  # (B, (H + 2K) Dh)
        qk = qkv[:, : (H + K) * Dh].view(B, H + K, Dh)
        v = qkv[:, (H + K) * Dh :].view(B, K, 1, Dh)
        if d["qk_norm"]:  # QK-norm: per head, before RoPE
            qk = torch.cat([a.q_norm(qk[:, :H]), a.k_norm(qk[:, H:])], dim=1)
        if rope is not None:
            cos, sin = rope
            x1, x2 = qk.chunk(2, dim=-1)
            qk = qk * cos + torch.cat([-x2, x1], dim=-1) * sin  # half-split RoPE (shared/nn/rope.py)
        q = qk[:, :H].reshape(B, K, H // K, Dh)  # query heads grouped by their KV head
        cache.k.index_copy_(2, pos_t, qk[:, H:].view(B, K, 1, Dh).to(cache.k.dtype))
        cache.v.index_copy_(2, pos_t, v.to(cache.v.dtype))
        k, v = cache.k[:, :, :span], cache.v[:, :, :span]  # (B, K, S, Dh)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # (B, K, H/K, S)
        if span == self.max_len:  # static shapes: mask the positions not yet written
            scores = scores.masked_fill(self.positions > pos_t, float("-inf"))
        y = torch.matmul(scores.softmax(dim=-1), v)  # (B, K, H/K, Dh)
        return _linear(y.reshape(B, H * Dh), *d["o"])

    def _step(self, tok: torch.Tensor, pos_t: torch.Tensor, span: int) -> torch.Tensor:
        model = self.model
        x = F.embedding(tok, model.embed.weight)  # (B, D)
        if getattr(model, "bigram_embed", None) is not None:  # hashed (last token fed, this one)
            x = x + F.embedding(model.bigram_rows(self.prev_tok, tok), model.bigram_embed.weight)
        if model.pos_embed is not None:
            x = x + F.embedding(pos_t, model.pos_embed.weight)
        rope = None
        if self.rope is not None:  # this position's row of the tables, once for every layer
            rope = tuple(t.index_select(0, pos_t) for t in self.rope)  # (1, Dh) each
        for d, cache in zip(self.layers, self.caches, strict=True):
            x = x + self._attend(d, d["attn_norm"](x), cache, pos_t, span, rope)
            h = d["mlp_norm"](x)
            if "gate_up" in d:
                gate, up = _linear(h, *d["gate_up"]).chunk(2, dim=-1)
                x = x + _linear(d["mlp"].act(gate) * up, *d["down"])
            else:  # MoE or another registered feed-forward: the module itself
                x = x + d["mlp"](h[:, None])[0][:, 0]
        logits = _linear(self.final_norm(x), *self.head)  # (B, V)
        cap = getattr(model.config, "logit_softcap", None)
        if cap is not None:
            logits = cap * torch.tanh(logits / cap)
        return logits

    @torch.inference_mode()
    def step(self, tok: torch.Tensor) -> torch.Tensor:
        """tok (B,) at the next position -> logits (B, V) for the one after it."""
        if self.pos >= self.max_len:
            raise ValueError(f"position {self.pos} is past the decoder's {self.max_len} positions")
        self.pos_t.fill_(self.pos)
        span = self.max_len if self.static else self.pos + 1
        if self.cuda_graph:
            logits = self._graph_step(tok)
        else:
            with _threads(self.threads):
                logits = self.step_fn(tok, self.pos_t, span)
        self.prev_tok.copy_(tok)
        self.pos += 1
        return logits

    def _graph_step(self, tok: torch.Tensor) -> torch.Tensor:
        """The static step captured once as a CUDA graph and replayed (one launch per token)."""
        if self.graph is None:
            self.tok_in = tok.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up outside the graph, as torch.cuda.graphs asks
                for _ in range(2):
                    self._step(self.tok_in, self.pos_t, self.max_len)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits_out = self._step(self.tok_in, self.pos_t, self.max_len)
        self.tok_in.copy_(tok)
        self.graph.replay()
        return self.logits_out
