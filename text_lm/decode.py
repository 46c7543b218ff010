"""Static-shape decoding: one flat step per token over buffers allocated once.

At 5.5M parameters a decoding step is not arithmetic but dispatch: the training-path forward
makes ~25 module calls per layer (norm, attention, StackContext, KVCache.update, MLP, ...),
~2 ms of Python per token on a CPU. `Decoder` gathers, once per generation, what a step needs
and runs the step as a flat loop of ~15 tensor ops per layer:

    x = embed[tok]                                             (B, D)
    R = [cos_pos | sin_pos] @ basis                             RoPE as one (Dh, Dh) matrix, once per step
    per layer:  [q|k|v] = n(x) W_qkv                            norm weight folded into W_qkv (decode_weights.py)
                q, k = [q|k] @ R                                one matmul rotates every head
                cache_k[:, :, pos], cache_v[:, :, pos] = k, v   (index_copy_, in place)
                x += softmax(q K^T / sqrt(Dh)) V  W_o           baddbmm, softmax, bmm; addmm_ in place
                [g|u] = n(x) W_gate_up;  x += (act(g) * u) W_down
    logits = n(x) W_head                                        (B, V)

The weights are the model's own fused projections (qkv_proj, gate_up_proj: one matmul each),
transposed once to (in, out) with the preceding norm folded in (`decode_weights.py`; what a
layer's step reads is gathered by `decode_layers.py`); the caches are the model's `KVCache`
buffers, which the prompt fills through the same flat layers (`decode_prefill.py`). Anything the flat step does not know (an MoE
or other registered feed-forward, a Gemma-style norm) is called as the module itself; a
LoRA-adapted projection is read merged; a model with a mixer or linear layer it cannot read
decodes through `ModuleStepper` (the model's forward, step by step).
tests/text_lm/test_decode.py compares the logits and tokens with the full-forward path.

Threads: a small model's step is a chain of ops of a few microseconds each, and every op
that opens an OpenMP parallel region (matmul, batched matmul, softmax) makes all threads meet;
on a busy machine a meeting waits for a descheduled thread (measured here: 2 threads under
load 23 spent 25x the CPU time of 1 thread per token). So while the batch holds fewer than
`SMALL` parameter-rows (batch x parameters) the decoder runs its steps on one thread, restoring
the caller's count after each call; `threads=` overrides.

Attention reads the caches through views made once per block of `Decoder.BLOCK` positions, with
an additive mask (0 where written, -inf after): by default the written positions rounded up to
a block; `static=True` the whole cache, so every step has the same shapes: the form `torch.compile` (`compile=True`) and CUDA
graphs (`cuda_graph=True`, on a GPU) need. On a CPU the eager step is the default: compiling
the step as it is now measured 0.86x its eager speed for llama-tiny after 133 s of compiling
(BENCHMARKS.md), so there is nothing left for it to fuse that pays.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from shared.nn.attention import Attention
from text_lm.decode_layers import layer_specs, prepare_layer, rope_basis
from text_lm.decode_module import ModuleStepper
from text_lm.decode_prefill import flat_prefill
from text_lm.decode_weights import Unsupported, foldable, norm_fn, pack
from text_lm.model import Llama

SMALL = 2**26
"""batch x parameters below which decoding runs on one thread (llama-tiny at batch 8: 44M)."""

__all__ = ["SMALL", "Decoder", "ModuleStepper", "Unsupported", "make_decoder"]


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

    BLOCK = 64
    """The eager step attends over the written positions rounded up to a multiple of this (masked):
    views per block are made once, so a step slices nothing, and at most BLOCK - 1 masked
    positions are read."""

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
        small = batch_size * sum(p.numel() for p in model.parameters()) < SMALL
        self.threads = threads if threads is not None else 1 if small else torch.get_num_threads()
        self.packed = small  # (in, out) copies with the norms folded in; else views (decode_weights.py)
        self.caches = model.make_kv_caches(batch_size, max_len)
        self.max_len, self.pos, self.B = max_len, 0, batch_size
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.prev_tok = torch.zeros(batch_size, dtype=torch.long, device=self.device)  # last token fed
        stack, cfg = model.stack, model.stack.cfg
        self.static = static or compile or cuda_graph
        self.rope = None
        if stack.rope is not None:
            cos, sin = stack.rope(0, max_len)  # (max_len, Dh) each, computed once
            self.rope = torch.cat([cos, sin], dim=-1).to(self.dtype)  # (max_len, 2 Dh): [cos | sin] rows
            self.rope_basis = rope_basis(cfg.head_dim, self.device, self.dtype)
        self.buffers: dict = {}
        for layer in stack.layers:
            if type(layer.attn) is not Attention:
                raise Unsupported(
                    f"Decoder needs the built-in attention mixer, got {type(layer.attn).__name__}"
                )
        fold = self.packed and foldable(stack.norm)
        specs = [s for layer in stack.layers for s in layer_specs(layer, self.packed)]
        mats = iter(pack(model, [*specs, (model.lm_head, stack.norm if fold else None)], self.packed))
        self.layers = [
            prepare_layer(layer, cache, mats, self)
            for layer, cache in zip(stack.layers, self.caches, strict=True)
        ]
        self.final_norm = norm_fn(stack.norm, affine=not fold)
        self.head = next(mats)
        self.head_dim, self.scale = cfg.head_dim, 1.0 / math.sqrt(cfg.head_dim)
        # Additive attention mask, (1, 1, max_len): 0 at written positions, -inf after.
        self.mask = torch.full((1, 1, max_len), float("-inf"), dtype=self.dtype, device=self.device)
        self.blocks: dict[int, list] = {}  # span -> per layer (K^T, V, mask) views over that span
        self.pos_t = torch.zeros(1, dtype=torch.long, device=self.device)  # the step's position
        self.softcap = getattr(model.config, "logit_softcap", None)
        self.bigram = getattr(model, "bigram_embed", None) is not None
        self.step_fn = self._step
        if compile:
            self.step_fn = torch.compile(self._step, fullgraph=True, dynamic=False)
        self.graph = None
        self.cuda_graph = cuda_graph and self.device.type == "cuda"

    def buffer(self, *shape: int) -> torch.Tensor:
        """A buffer for out= results, one per shape: every layer's step writes the same ones in turn."""
        if shape not in self.buffers:
            self.buffers[shape] = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return self.buffers[shape]

    def _block_views(self, span: int) -> list:
        """Per layer: K^T (B K, Dh, span), V (B K, span, Dh) over the caches' first `span` positions, and
        the mask's (1, 1, span); made once per span."""
        views = self.blocks.get(span)
        if views is None:
            views = self.blocks[span] = []
            for d in self.layers:
                k = d.cache_k.view(self.B * d.K, self.max_len, d.Dh)[:, :span]
                v = d.cache_v.view(self.B * d.K, self.max_len, d.Dh)[:, :span]
                views.append((k.transpose(1, 2), v, self.mask[..., :span]))
        return views

    @torch.inference_mode()
    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (B, T0) at positions 0..T0-1 -> logits (B, V) of its last position (decode_prefill.py)."""
        if prompt.shape[1] > self.max_len:
            raise ValueError(
                f"a prompt of {prompt.shape[1]} tokens is past the decoder's {self.max_len} positions"
            )
        self.pos = prompt.shape[1]
        self.prev_tok.copy_(prompt[:, -1])
        self.mask.fill_(float("-inf"))
        self.mask[..., : self.pos] = 0.0
        with _threads(self.threads):
            return flat_prefill(self, prompt)

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D), the last layer's output -> logits (B, V), a new tensor (final norm, head, soft-cap)."""
        w_head, b_head = self.head
        h = self.final_norm(x)
        logits = torch.mm(h, w_head) if b_head is None else torch.addmm(b_head, h, w_head)
        if self.softcap is not None:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    def _step(self, tok: torch.Tensor, pos_t: torch.Tensor, blocks: list) -> torch.Tensor:
        """tok (B,) at position pos_t -> logits (B, V), attending over the spans of `blocks`
        (`_block_views`; the mask hides the positions not written yet)."""
        model, B = self.model, self.B
        x = F.embedding(tok, model.embed.weight)  # (B, D), a new tensor: updated in place below
        if self.bigram:  # hashed (last token fed, this one)
            x = x + F.embedding(model.bigram_rows(self.prev_tok, tok), model.bigram_embed.weight)
        if model.pos_embed is not None:
            x = x + F.embedding(pos_t, model.pos_embed.weight)
        R = None
        if self.rope is not None:  # this position's rotation, once for every layer
            R = torch.mm(self.rope.index_select(0, pos_t), self.rope_basis).view(self.head_dim, self.head_dim)
        for d, (k_t, v, mask) in zip(self.layers, blocks, strict=True):
            H, K, Dh = d.H, d.K, d.Dh
            h = d.attn_norm(x)
            if d.b_qkv is None:
                torch.mm(h, d.w_qkv, out=d.qkv)
            else:
                torch.addmm(d.b_qkv, h, d.w_qkv, out=d.qkv)
            qk = d.qk
            if d.qk_norm is not None:
                qn, w = d.qk_norm
                if isinstance(w, torch.Tensor):  # both RMSNorms: one normalisation, one weight table
                    qk = qn(qk) * w
                else:
                    qk = torch.cat([qn(qk[:, :H]), w(qk[:, H:])], dim=1)
            if R is not None:
                torch.matmul(qk, R, out=d.rot)  # every head rotated
            elif d.rot is not None:
                d.rot.copy_(qk)
            d.cache_k.index_copy_(2, pos_t, d.k_new)
            d.cache_v.index_copy_(2, pos_t, d.v_new)
            q = d.q
            if q is None:  # several rows: q's heads are not contiguous across rows
                q = (d.qk if d.rot is None else d.rot)[:, :H].reshape(B * K, H // K, Dh)  # grouped by KV head
            scores = torch.baddbmm(mask, q, k_t, alpha=self.scale)  # (B K, H/K, span)
            torch.bmm(torch.softmax(scores, dim=-1), v, out=d.y)  # (B K, H/K, Dh)
            x.addmm_(d.y_rows, d.w_o)
            if d.b_o is not None:
                x += d.b_o
            h = d.mlp_norm(x)
            if d.ff is not None:
                x = x + d.ff(h[:, None])[0][:, 0]
                continue
            if d.b_up is None:
                torch.mm(h, d.w_up, out=d.up)
            else:
                torch.addmm(d.b_up, h, d.w_up, out=d.up)
            a = d.act(d.up) if d.gate_up is None else d.act(d.gate_up[0]).mul_(d.gate_up[1])
            x.addmm_(a, d.w_down)
            if d.b_down is not None:
                x += d.b_down
        return self.head_logits(x)

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        """tok (B,) at the next position -> logits (B, V) for the one after it."""
        if torch.is_inference_mode_enabled():  # generate_tokens' loop is: no second context per token
            return self._advance(tok)
        with torch.inference_mode():
            return self._advance(tok)

    def _advance(self, tok: torch.Tensor) -> torch.Tensor:
        if self.pos >= self.max_len:
            raise ValueError(f"position {self.pos} is past the decoder's {self.max_len} positions")
        self.pos_t.fill_(self.pos)
        self.mask.index_fill_(2, self.pos_t, 0.0)
        if self.cuda_graph:
            logits = self._graph_step(tok)
        else:
            span = (
                self.max_len
                if self.static
                else min(self.max_len, -(-(self.pos + 1) // self.BLOCK) * self.BLOCK)
            )
            before = torch.get_num_threads()  # as _threads, inline: once per token
            if before != self.threads:
                torch.set_num_threads(self.threads)
            try:
                logits = self.step_fn(tok, self.pos_t, self._block_views(span))
            finally:
                if before != self.threads:
                    torch.set_num_threads(before)
        if self.bigram:
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
                    self._step(self.tok_in, self.pos_t, self._block_views(self.max_len))
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits_out = self._step(self.tok_in, self.pos_t, self._block_views(self.max_len))
        self.tok_in.copy_(tok)
        self.graph.replay()
        return self.logits_out
