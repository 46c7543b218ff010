"""Bad inputs to every `text-lm` command: each exits non-zero with one clear line, writes nothing.

Every case runs the real command in-process on a prepared workspace and checks, through
`fault_helpers.assert_fails_cleanly`: a non-zero exit, exactly one `error:` line on stderr
naming the culprit, no traceback, and no file written or changed anywhere in the workspace
(outputs are pointed inside it). The vision track's cases are in test_bad_inputs_vision.py.
"""

import io
import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fault_helpers import ROOT, TINY, assert_fails_cleanly, snapshot

from shared.tokenizer import Tokenizer
from text_lm.cli import main as text_lm
from text_lm.config import LlamaConfig
from text_lm.model import Llama


class Evil:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tokenizer_file(path: Path, **changes) -> str:
    d = {"type": "byte_bpe", "version": 1, "pattern": " ?\\w+", "merges": [[32, 116]],
         "special_tokens": {"<|bos|>": 257, "<|eos|>": 258}, **changes}  # fmt: skip
    path.write_text(json.dumps(d))
    return str(path)


@pytest.fixture(scope="module")
def ws(shakespeare_bpe, tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    w = SimpleNamespace(root=root, runs=str(root / "runs"), out=str(root / "out"))
    data = Path(shutil.copytree(shakespeare_bpe, root / "data"))  # the session's, copied: cases damage theirs
    w.data = str(data)
    for name, change in {
        "badmeta": lambda d: (d / "meta.json").write_text('{"dtype": "uint16", "vocab'),
        "dtype": lambda d: (d / "meta.json").write_text(
            json.dumps({**json.loads((d / "meta.json").read_text()), "dtype": "float32"})
        ),
        "trunc": lambda d: (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[:1001]),
        "othertok": lambda d: Tokenizer.train(["other text entirely"], 300, progress=False).save(d / "tokenizer.json"),
    }.items():  # fmt: skip
        shutil.copytree(data, root / name)
        change(root / name)
        setattr(w, name, str(root / name))
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (root / "latin1.txt").write_bytes("Où est la café?".encode("latin-1"))
    (root / "afile").write_text("not a folder")
    (root / "truncated.json").write_text('{"type": "byte_bpe", "version": 1, "merges": [[32, 1')
    w.nomerges = tokenizer_file(root / "nomerges.json", merges=None)
    w.futuremerge = tokenizer_file(root / "futuremerge.json", merges=[[300, 5]])
    w.specialids = tokenizer_file(root / "specialids.json", special_tokens={"<|eos|>": 5})
    w.noeos = tokenizer_file(root / "noeos.json", special_tokens={"<|bos|>": 257})

    tok = Tokenizer.load(data / "tokenizer.json")
    cfg = LlamaConfig(vocab_size=320, max_seq_len=16, dim=32, n_layers=1, n_heads=2)
    state = {f"model.{k}": v for k, v in Llama(cfg).state_dict().items()}
    torch.save(
        {"state_dict": state, "model_config": cfg.to_dict(), "tokenizer": tok.to_dict()}, root / "gpt.ckpt"
    )
    (root / "truncated.ckpt").write_bytes((root / "gpt.ckpt").read_bytes()[:3000])
    torch.save({"state_dict": state, "model_config": {"vision": {}, "text": {}}}, root / "siglip.ckpt")
    torch.save({"state_dict": state, "payload": Evil(root / "pwned")}, root / "evil.ckpt")
    return w


def fit(w, data: str, *extra: str) -> list[str]:
    return ["fit", "-c", str(ROOT / "configs/text/llama-tiny.yaml"), *TINY, "--data.data_dir", data,
            "--trainer.default_root_dir", w.runs, "--trainer.max_steps", "2", *extra]  # fmt: skip


def gen(w, ckpt: str, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", ckpt, "--prompt", "Th", "--max-new-tokens", "4", *extra]


CASES = {  # id: (argv, culprit named in the error, stdin bytes or None)
    "prepare/missing-input": (lambda w: ["prepare", "--input", f"{w.root}/nope.txt", "--out", w.out], "nope.txt", None),
    "prepare/empty-input": (lambda w: ["prepare", "--input", f"{w.root}/empty.txt", "--out", w.out], "empty.txt", None),
    "prepare/binary-input": (lambda w: ["prepare", "--input", f"{w.root}/binary.txt", "--out", w.out], "binary.txt", None),
    "prepare/not-utf8": (lambda w: ["prepare", "--input", f"{w.root}/latin1.txt", "--out", w.out], "latin1.txt", None),
    "prepare/truncated-tokenizer-json": (
        lambda w: ["prepare", "--tokenizer", f"{w.root}/truncated.json", "--out", w.out], "truncated.json", None),
    "prepare/tokenizer-without-eos": (lambda w: ["prepare", "--tokenizer", w.noeos, "--out", w.out], "<|eos|>", None),
    "prepare/vocab-too-small": (lambda w: ["prepare", "--vocab-size", "100", "--out", w.out], "--vocab-size", None),
    "prepare/negative-val-fraction": (
        lambda w: ["prepare", "--val-fraction", "-0.5", "--out", w.out], "--val-fraction", None),
    "prepare/out-is-a-file": (lambda w: ["prepare", "--out", f"{w.root}/afile"], "afile", None),
    "tokenizer/train-missing-input": (
        lambda w: ["tokenizer", "train", "--input", f"{w.root}/nope", "--vocab-size", "300", "--out", w.out],
        "nope", None),
    "tokenizer/train-negative-vocab": (
        lambda w: ["tokenizer", "train", "--input", f"{w.root}/latin1.txt", "--vocab-size", "-5", "--out", w.out],
        "-5", None),
    "tokenizer/missing-field": (lambda w: ["tokenizer", "encode", "--tokenizer", w.nomerges], "nomerges.json", b"hi"),
    "tokenizer/merge-of-unknown-id": (
        lambda w: ["tokenizer", "encode", "--tokenizer", w.futuremerge], "futuremerge.json", b"hi"),
    "tokenizer/special-ids-out-of-place": (
        lambda w: ["tokenizer", "encode", "--tokenizer", w.specialids], "specialids.json", b"hi"),
    "tokenizer/binary-stdin": (lambda w: ["tokenizer", "encode", "--tokenizer", w.noeos], "stdin", b"\xff\xfe\x00"),
    "tokenizer/decode-not-an-id": (lambda w: ["tokenizer", "decode", "--tokenizer", w.noeos], "'x7'", b"1 x7 3"),
    "tokenizer/decode-huge-line-bad-id": (
        lambda w: ["tokenizer", "decode", "--tokenizer", w.noeos], "99999", b"65 " * 300_000 + b"99999"),
    "fit/missing-data": (lambda w: fit(w, f"{w.root}/nodata"), "nodata", None),
    "fit/malformed-meta-json": (lambda w: fit(w, w.badmeta), "meta.json", None),
    "fit/wrong-dtype-in-meta": (lambda w: fit(w, w.dtype), "float32", None),
    "fit/truncated-shard": (lambda w: fit(w, w.trunc), "train.bin", None),
    "fit/tokenizer-not-the-shards-one": (lambda w: fit(w, w.othertok), "tokenizer.json", None),
    "fit/vocab-smaller-than-data": (lambda w: fit(w, w.data, "--model.config.vocab_size", "300"), "vocab_size", None),
    "fit/n-heads-not-dividing-dim": (
        lambda w: fit(w, w.data, "--model.config.n_heads", "5", "--model.config.n_kv_heads", "5"), "n_heads=5", None),
    "fit/n-kv-heads-not-dividing": (lambda w: fit(w, w.data, "--model.config.n_kv_heads", "3"), "n_kv_heads=3", None),
    "fit/top-k-above-n-experts": (
        lambda w: fit(w, w.data, "--model.config.moe.n_experts", "2", "--model.config.moe.top_k", "4"), "top_k", None),
    "fit/negative-seq-len": (lambda w: fit(w, w.data, "--data.seq_len", "-4"), "data.seq_len", None),
    "fit/seq-len-beyond-the-data": (lambda w: fit(w, w.data, "--data.seq_len", "100000"), "data.seq_len", None),
    "fit/not-an-integer": (lambda w: fit(w, w.data, "--trainer.max_steps", "many"), "trainer.max_steps", None),
    "fit/truncated-ckpt-path": (lambda w: fit(w, w.data, "--ckpt_path", f"{w.root}/truncated.ckpt"), "truncated.ckpt", None),
    "fit/missing-ckpt-path": (lambda w: fit(w, w.data, "--ckpt_path", f"{w.root}/gone.ckpt"), "gone.ckpt", None),
    "generate/missing-checkpoint": (lambda w: gen(w, f"{w.root}/gone.ckpt"), "gone.ckpt", None),
    "generate/truncated-checkpoint": (lambda w: gen(w, f"{w.root}/truncated.ckpt"), "truncated.ckpt", None),
    "generate/code-in-checkpoint": (lambda w: gen(w, f"{w.root}/evil.ckpt"), "evil.ckpt", None),
    "generate/prompt-longer-than-context": (
        lambda w: gen(w, f"{w.root}/gpt.ckpt", "--prompt", "To be or not to be " * 8), "context", None),
    "generate/negative-length": (lambda w: gen(w, f"{w.root}/gpt.ckpt", "--max-new-tokens", "-3"), "--max-new-tokens", None),
    "generate/top-k-zero": (lambda w: gen(w, f"{w.root}/gpt.ckpt", "--top-k", "0"), "--top-k", None),
    "export-hf/truncated-checkpoint": (
        lambda w: ["export-hf", "--checkpoint", f"{w.root}/truncated.ckpt", "--out", w.out], "truncated.ckpt", None),
    "export-hf/vision-checkpoint": (
        lambda w: ["export-hf", "--checkpoint", f"{w.root}/siglip.ckpt", "--out", w.out], "siglip.ckpt", None),
    "export-hf/out-is-a-file": (
        lambda w: ["export-hf", "--checkpoint", f"{w.root}/gpt.ckpt", "--out", f"{w.root}/afile"], "afile", None),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_cleanly(case, ws, capsys, monkeypatch):
    argv, culprit, stdin = CASES[case]
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    assert_fails_cleanly(text_lm, argv(ws), culprit, capsys, ws.root)
    assert not (ws.root / "pwned").exists()  # the malicious checkpoint ran nothing


def test_the_workspace_is_sound(ws, capsys):
    """The cases fail because of their one defect: the same commands on good inputs succeed."""
    before = snapshot(ws.root)
    text_lm(
        ["generate", "--checkpoint", str(ws.root / "gpt.ckpt"), "--prompt", "Th", "--max-new-tokens", "3"]
    )
    assert capsys.readouterr().out.startswith("Th")
    assert np.fromfile(ws.root / "data" / "train.bin", dtype="<u2").size > 1000
    assert snapshot(ws.root) == before
