"""Our Llama as a GGUF file that llama.cpp (and Ollama, LM Studio, ...) runs, written with `gguf`, llama.cpp's own writer.

GGUF is one file: key-value metadata (architecture, sizes, RoPE base, norm epsilon, the
tokenizer) then the tensors, each f32, f16 or block-quantised (q8_0: blocks of 32 weights
sharing one f16 scale, ~8.5 bits per weight). We write llama.cpp's `llama` architecture, which
also covers Mixtral-style experts:

    embed.weight                          -> token_embd.weight
    stack.layers.{i}.attn_norm.weight     -> blk.{i}.attn_norm.weight
    stack.layers.{i}.attn.{q,k,v,o}_proj  -> blk.{i}.attn_{q,k,v,output}.weight  (q, k permuted)
    stack.layers.{i}.mlp_norm.weight      -> blk.{i}.ffn_norm.weight
    stack.layers.{i}.mlp.{gate,up,down}_proj -> blk.{i}.ffn_{gate,up,down}.weight, or with experts
                                             blk.{i}.ffn_{gate,up,down}_exps.weight (E, ...) and
    stack.layers.{i}.mlp.router.weight    -> blk.{i}.ffn_gate_inp.weight
    stack.norm.weight                     -> output_norm.weight
    lm_head.weight                        -> output.weight  (left out when tied: llama.cpp reuses token_embd)

The q/k permutation: our RoPE (like Hugging Face's) rotates the two halves of each head,
(x[:d/2], x[d/2:]); GGML's rotates adjacent pairs (x[0], x[1]), (x[2], x[3]), ... Permuting
the rows of W_q and W_k per head, half-split order -> interleaved order, makes the two
rotations the same function, exactly as llama.cpp's `convert_hf_to_gguf.py` does.

The tokenizer goes in as llama.cpp's `gpt2` BPE: the byte-level strings of `tokenizers`
(`shared/tokenizer/hf_format.py`), the merges in rank order, special tokens typed CONTROL,
and the pre-tokenizer `llama-bpe`, whose split is our GPT-4 (cl100k) pattern and which, like
tiktoken and us, takes a chunk that is already one token as it is (`ignore_merges`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from shared.errors import UserError
from shared.io import atomic_path
from shared.tokenizer import GPT4_PATTERN, Tokenizer
from shared.tokenizer.hf_format import to_hf_tokenizer
from text_lm.config import unsupported_options
from text_lm.model import Llama

DTYPES = ("f32", "f16", "q8_0")


def check_gguf_exportable(model: Llama, tok: Tokenizer | None) -> None:
    """One error line naming the first option llama.cpp's `llama` architecture cannot express."""
    c = model.config
    checks = [
        (c.norm == "rmsnorm", f"norm={c.norm!r} (llama.cpp's llama needs rmsnorm)"),
        (c.position == "rope", f"position={c.position!r} (llama.cpp's llama needs rope)"),
        (c.mlp == "swiglu", f"mlp={c.mlp!r} (llama.cpp's llama needs swiglu)"),
        (not c.bias, "bias=true (llama.cpp's llama has no biases)"),
        (c.rope_scaling is None, "rope_scaling (Llama-3 frequency scaling is not written yet)"),
        (
            c.moe is None or not c.moe.n_shared_experts,
            "moe.n_shared_experts > 0 (no shared experts in llama)",
        ),
        (c.moe is None or c.moe.normalize_top_k, "moe.normalize_top_k=false (llama.cpp renormalises top-k)"),
        *((False, what) for what in unsupported_options(c)),  # qk_norm, logit_softcap
        (tok is not None, "no tokenizer in the checkpoint (GGUF files carry their tokenizer)"),
        (
            tok is None or tok.pattern == GPT4_PATTERN,
            "a tokenizer pattern other than GPT-4's (llama.cpp "
            "knows its pre-tokenizers by name, not by regex)",
        ),
    ]
    for ok, what in checks:
        if not ok:
            raise UserError(f"model '{c.name}' cannot be written as GGUF: {what}")


def permute_for_ggml(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(H * Dh, D) rows of q or k in half-split RoPE order -> GGML's interleaved pair order, per head."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def gguf_tensors(model: Llama) -> dict[str, torch.Tensor]:
    """GGUF name -> tensor (fp32, CPU), in llama.cpp's layout."""
    c, tc = model.config, model.stack.cfg
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["embed.weight"], "output_norm.weight": sd["stack.norm.weight"]}
    if not c.tie_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(c.n_layers):
        p, b = f"stack.layers.{i}.", f"blk.{i}."
        out[b + "attn_norm.weight"] = sd[p + "attn_norm.weight"]
        # llama.cpp keeps q, k, v apart: our fused qkv_proj split by rows (shared/nn/fused.py)
        wq, wk, wv = sd[p + "attn.qkv_proj.weight"].split(model.stack.layers[i].attn.qkv_sizes)
        out[b + "attn_q.weight"] = permute_for_ggml(wq, tc.n_heads)
        out[b + "attn_k.weight"] = permute_for_ggml(wk, tc.n_kv_heads)
        out[b + "attn_v.weight"] = wv.contiguous()
        out[b + "attn_output.weight"] = sd[p + "attn.o_proj.weight"]
        out[b + "ffn_norm.weight"] = sd[p + "mlp_norm.weight"]
        if c.moe is None:  # the fused gate_up_proj as llama.cpp's ffn_gate, ffn_up
            gate, up = sd[p + "mlp.gate_up_proj.weight"].chunk(2)
            mlp = {"ffn_gate": gate, "ffn_up": up, "ffn_down": sd[p + "mlp.down_proj.weight"]}
        else:  # experts: (E, out, in), as llama.cpp stacks them
            names = (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down"))
            mlp = {theirs + "_exps": sd[p + f"mlp.{ours}"] for ours, theirs in names}
        out.update({b + k + ".weight": v.contiguous() for k, v in mlp.items()})
        if c.moe is not None:
            out[b + "ffn_gate_inp.weight"] = sd[p + "mlp.router.weight"]
    return out


def write_gguf(model: Llama, tok: Tokenizer, path: str | os.PathLike, dtype: str = "f32") -> None:
    """Write `model` and `tok` to `path` (atomically) with matrices in `dtype`; norms stay f32."""
    import gguf

    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    check_gguf_exportable(model, tok)
    c, tc = model.config, model.stack.cfg
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch="llama")
        w.add_name(c.name)
        w.add_file_type(
            {"f32": 0, "f16": 1, "q8_0": 7}[dtype]
        )  # llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0
        w.add_context_length(c.max_seq_len)
        w.add_embedding_length(c.dim)
        w.add_block_count(c.n_layers)
        w.add_feed_forward_length(tc.hidden_dim if c.moe is None else c.moe.hidden_dim or tc.hidden_dim)
        w.add_head_count(tc.n_heads)
        w.add_head_count_kv(tc.n_kv_heads)
        w.add_key_length(tc.head_dim)
        w.add_value_length(tc.head_dim)
        w.add_rope_dimension_count(tc.head_dim)
        w.add_rope_freq_base(c.rope_theta)
        w.add_layer_norm_rms_eps(c.norm_eps)
        w.add_vocab_size(c.vocab_size)
        if c.moe is not None:
            w.add_expert_count(c.moe.n_experts)
            w.add_expert_used_count(c.moe.top_k)
        _add_tokenizer(w, tok, c.vocab_size)
        for name, t in gguf_tensors(model).items():
            _add_tensor(w, gguf, name, t, dtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def _add_tokenizer(w, tok: Tokenizer, vocab_size: int) -> None:
    import gguf

    model = to_hf_tokenizer(tok)["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get) + list(tok.special_tokens)
    types = [gguf.TokenType.NORMAL] * (256 + len(tok.merges)) + [gguf.TokenType.CONTROL] * len(
        tok.special_tokens
    )
    for i in range(len(tokens), vocab_size):  # rows the model pads its vocabulary with: never produced
        tokens.append(f"<|unused_{i}|>")
        types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in model["merges"]])
    w.add_bos_token_id(tok.bos_id)
    w.add_eos_token_id(tok.eos_id)
    w.add_pad_token_id(tok.pad_id)
    w.add_add_bos_token(False)  # `text-lm generate` feeds the prompt as it is
    w.add_add_eos_token(False)


def _add_tensor(w, gguf, name: str, t: torch.Tensor, dtype: str) -> None:
    data = t.numpy()
    if (
        t.dim() == 1 or dtype == "f32" or name.endswith("ffn_gate_inp.weight")
    ):  # norms, routers: f32 as llama.cpp keeps them
        w.add_tensor(name, data.astype(np.float32))
    elif dtype == "f16":
        w.add_tensor(name, data.astype(np.float16))
    else:
        q = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
