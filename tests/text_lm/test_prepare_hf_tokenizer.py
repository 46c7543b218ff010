"""`text-lm prepare --tokenizer X/tokenizer.json` reuses a Hugging Face `tokenizers` file (ours exported, or
another byte-level BPE with byte ids first): the same shards as with our own file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.tokenizer import Tokenizer
from shared.tokenizer.hf_format import write_hf_tokenizer
from text_lm.prepare import prepare as run_prepare

DATA = Path(__file__).resolve().parents[2] / "data" / "shakespeare"


def test_prepare_with_a_hugging_face_tokenizer_file_gives_the_same_shards(tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("macbeth_gut.txt", "tempest_gut.txt"):
        (texts / name).write_text((DATA / name).read_text(encoding="utf-8")[:15_000], encoding="utf-8")
    tok = Tokenizer.train([(texts / "macbeth_gut.txt").read_text(encoding="utf-8")], 400, progress=False)
    ours, hf = tmp_path / "ours.json", tmp_path / "hf"
    tok.save(ours)
    write_hf_tokenizer(tok, hf, model_max_length=256)
    assert Tokenizer.load(hf / "tokenizer.json").sha256 == tok.sha256

    kw = dict(val_files=["tempest_gut.txt"], progress=False)
    a = run_prepare(tmp_path / "a", [str(texts)], tokenizer=ours, **kw)
    b = run_prepare(tmp_path / "b", [str(texts)], tokenizer=hf / "tokenizer.json", **kw)
    assert a["tokenizer_sha256"] == b["tokenizer_sha256"]
    for split in ("train", "val"):
        x = np.fromfile(tmp_path / "a" / f"{split}.bin", dtype=a["dtype"])
        y = np.fromfile(tmp_path / "b" / f"{split}.bin", dtype=b["dtype"])
        assert len(x) > 100 and np.array_equal(x, y)
