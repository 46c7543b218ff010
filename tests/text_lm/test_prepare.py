"""`text-lm prepare`: shards, meta.json, the split rule, idempotence, atomicity and user errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from text_lm import corpus, corpus_split, prepare_stream
from text_lm.prepare import pieces_of
from text_lm.prepare import prepare as run_prepare

ROOT = Path(__file__).resolve().parents[2]
PLAYS = ROOT / "data" / "shakespeare"
VOCAB = 300  # 256 bytes + 39 merges + 5 specials: trains in a blink


def excerpt(play: str, n: int = 12_000) -> str:
    return (PLAYS / play).read_text(encoding="utf-8")[:n]


@pytest.fixture
def texts(tmp_path) -> Path:
    """A folder of three small documents, one with non-ASCII text (multi-byte UTF-8)."""
    src = tmp_path / "texts"
    (src / "sub").mkdir(parents=True)
    (src / "a_macbeth.txt").write_text(excerpt("macbeth_gut.txt"), encoding="utf-8")
    (src / "sub" / "b_sonnets.txt").write_text(
        excerpt("sonnets_gut.txt") + "\ncafé ☃ 日本語 🎭\n", encoding="utf-8"
    )
    (src / "c_tempest.txt").write_text(excerpt("tempest_gut.txt", 3000), encoding="utf-8")
    (src / ".hidden.txt").write_text("never read", encoding="utf-8")
    return src


def shard(out: Path, split: str, meta: dict) -> np.ndarray:
    return np.fromfile(out / f"{split}.bin", dtype="<u2" if meta["dtype"] == "uint16" else "<u4")


def test_shards_meta_and_exact_byte_counts(texts, tmp_path):
    out = tmp_path / "out"
    meta = run_prepare(out, [str(texts)], vocab_size=VOCAB, val_files=["c_tempest.txt"], progress=False)
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == meta
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]

    tok = Tokenizer.load(out / "tokenizer.json")
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == tok.vocab_size == VOCAB
    assert meta["tokenizer_sha256"] == tok.sha256 and meta["eos_id"] == tok.eos_id
    assert meta["sources"] == {
        "train": [f"{texts}/a_macbeth.txt", f"{texts}/sub/b_sonnets.txt"],
        "val": [f"{texts}/c_tempest.txt"],
    }
    train_text = [(texts / "a_macbeth.txt").read_text(), (texts / "sub" / "b_sonnets.txt").read_text()]
    val_text = (texts / "c_tempest.txt").read_text()
    assert meta["bytes"] == {"train": sum(len(t.encode()) for t in train_text), "val": len(val_text.encode())}
    assert meta["n_documents"] == {"train": 2, "val": 1}

    for split, docs in (("train", train_text), ("val", [val_text])):
        ids = shard(out, split, meta)
        assert len(ids) == meta["n_tokens"][split]
        ends = np.flatnonzero(ids == tok.eos_id)
        assert len(ends) == len(docs) and ends[-1] == len(ids) - 1  # one separator after each document
        pieces = np.split(ids, ends + 1)[:-1]
        assert [tok.decode(p[:-1]) for p in pieces] == docs  # lossless, in order


def test_rerun_does_nothing_until_inputs_or_options_change(texts, tmp_path, capsys):
    out = tmp_path / "out"
    args = dict(inputs=[str(texts)], vocab_size=VOCAB, val_files=["c_tempest.txt"], progress=False)
    first = run_prepare(out, **args)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert run_prepare(out, **args, num_workers=1) == first  # workers do not change the output
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    (texts / "a_macbeth.txt").write_text(excerpt("macbeth_gut.txt", 6000), encoding="utf-8")
    changed = run_prepare(out, **args)
    assert (
        changed["inputs_sha256"] != first["inputs_sha256"]
        and changed["bytes"]["train"] < first["bytes"]["train"]
    )
    assert run_prepare(out, **{**args, "vocab_size": VOCAB + 8})["vocab_size"] == VOCAB + 8

    (out / "val.bin").write_bytes(b"\0\0")  # a damaged folder is rebuilt, not reported up to date
    capsys.readouterr()
    rebuilt = run_prepare(out, **{**args, "vocab_size": VOCAB + 8})
    assert "up to date" not in capsys.readouterr().out
    assert (out / "val.bin").stat().st_size == 2 * rebuilt["n_tokens"]["val"]


def test_interrupted_run_leaves_no_meta(texts, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_prepare(out, [str(texts)], vocab_size=VOCAB, progress=False)
    (texts / "c_tempest.txt").write_text("changed", encoding="utf-8")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_stream, "write_shard", boom)
    with pytest.raises(KeyboardInterrupt):
        run_prepare(out, [str(texts)], vocab_size=VOCAB, progress=False)
    assert not (out / "meta.json").exists()  # the DataModule refuses the folder
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_reused_tokenizer_and_default_split_rule(texts, tmp_path):
    first = run_prepare(tmp_path / "one", [str(texts)], vocab_size=VOCAB, progress=False)
    # No --val-files: the last files by name until 5% of the bytes; tempest (3 kB of 27 kB) is enough.
    assert first["sources"]["val"] == [f"{texts}/sub/b_sonnets.txt"]
    assert first["split_rule"].startswith("last sources")
    second = run_prepare(
        tmp_path / "two", [f"{texts}/*.txt"], tokenizer=tmp_path / "one" / "tokenizer.json", progress=False
    )
    assert second["tokenizer_sha256"] == first["tokenizer_sha256"]
    assert second["sources"]["val"] == [f"{texts}/c_tempest.txt"]  # the glob does not recurse into sub/


def test_single_document_is_split_at_a_paragraph_break(tmp_path):
    text = excerpt("hamlet_gut.txt", 40_000)
    (tmp_path / "hamlet.txt").write_text(text, encoding="utf-8")
    meta = run_prepare(tmp_path / "out", [str(tmp_path / "hamlet.txt")], vocab_size=VOCAB, progress=False)
    (label,) = meta["sources"]["val"]
    cut = int(label.rsplit("[", 1)[1].strip(":]"))
    assert meta["sources"]["train"] == [f"{tmp_path}/hamlet.txt[:{cut}]"]
    assert text[cut - 2 : cut] == "\n\n" and text[cut] != "\n"
    assert 0.03 < meta["bytes"]["val"] / len(text) < 0.08
    assert meta["bytes"]["train"] + meta["bytes"]["val"] == len(text.encode())


@pytest.mark.parametrize(
    "text, fraction, expected",
    [
        ("aaaa\n\nbbbb\n\ncc", 0.2, 12),  # the nearest blank line to the 80% point
        ("aaaa\nbbbb\ncc", 0.2, 10),  # no blank line: a line break
        ("abcdefghij", 0.2, 8),  # no break at all: the character
        ("one two three four five\n\n\n\nsix", 0.2, 27),  # a run of blank lines stays in the first part
    ],
)
def test_cut_near_end(text, fraction, expected):
    assert corpus_split.cut_near_end(text, fraction) == expected


def test_table_rows_are_documents(tmp_path):
    rows = [{"text": f"Row {i}: " + "words " * (i + 3), "id": i} for i in range(40)] + [
        {"text": None, "id": 99}
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    meta = run_prepare(tmp_path / "out", [str(tmp_path / "rows.jsonl")], vocab_size=270, progress=False)
    assert meta["n_documents"]["train"] + meta["n_documents"]["val"] == 40
    assert meta["sources"]["val"] == [f"{tmp_path}/rows.jsonl[38:40]"]
    with pytest.raises(UserError, match="no field 'body'.*--text-field"):
        run_prepare(tmp_path / "out2", [str(tmp_path / "rows.jsonl")], text_field="body", progress=False)


def test_pieces_encode_exactly_like_the_whole():
    tok = Tokenizer.train([excerpt("lear_gut.txt", 30_000)], 400, progress=False)
    text = excerpt("othello_gut.txt", 20_000) + "x. \n\n  y\r\nZ \t\nword\n\n\n,then 12345\n"
    pieces = list(pieces_of(text, size=500))
    assert len(pieces) > 20 and "".join(pieces) == text
    assert [i for p in pieces for i in tok.encode(p)] == tok.encode(text)


def test_default_corpus_full_vocab(tmp_path):
    """The shipped corpus with the default 4096 vocabulary (about 2 s on 2 cores)."""
    meta = run_prepare(tmp_path / "out", progress=False)
    assert meta["vocab_size"] == 4096 and meta["n_documents"] == {"train": 39, "val": 3}
    assert [Path(s).name for s in meta["sources"]["val"]] == list(corpus.DEFAULT_VAL_FILES)
    sizes = {p.name: p.stat().st_size for p in PLAYS.glob("*_gut.txt")}  # ASCII: bytes = file sizes
    assert meta["bytes"]["val"] == sum(sizes[n] for n in corpus.DEFAULT_VAL_FILES)
    assert meta["bytes"]["train"] == sum(sizes.values()) - meta["bytes"]["val"]
    assert 3.0 < meta["bytes"]["train"] / meta["n_tokens"]["train"] < 4.5


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "text_lm.prepare", "--no-progress", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
    )


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "input not found"),
        ("empty", "empty corpus"),
        ("small_vocab", "--vocab-size 200 is too small"),
        ("binary", "is not UTF-8 text"),
        ("bad_tokenizer", "not valid JSON"),
        ("all_val", "training split is empty"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, case, message):
    good = tmp_path / "good.txt"
    good.write_text("Some text.\n\nMore text.\n", encoding="utf-8")
    (tmp_path / "empty1.txt").write_text("")
    (tmp_path / "empty2.txt").write_text("")
    (tmp_path / "blob.txt").write_bytes(bytes([0xFF, 0xFE, 0x41]) * 20)
    (tmp_path / "tok.json").write_text('{"type": "byte_bpe", "merges": [[1, 2]')
    args = {
        "missing": ["--input", tmp_path / "nope.txt"],
        "empty": ["--input", tmp_path / "empty1.txt", tmp_path / "empty2.txt"],
        "small_vocab": ["--input", good, "--vocab-size", "200"],
        "binary": ["--input", good, tmp_path / "blob.txt"],
        "bad_tokenizer": ["--input", good, "--tokenizer", tmp_path / "tok.json"],
        "all_val": ["--input", good, "--val-files", "good.txt"],
    }[case]
    out = tmp_path / "out"
    r = cli(*args, "--out", out)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert not (out / "meta.json").exists()
    if case == "binary":
        assert "blob.txt" in lines[0]


def test_cli_help_explains_every_flag():
    r = cli("--help")
    assert r.returncode == 0
    for flag in ("--input", "--hf-dataset", "--split", "--text-field", "--vocab-size", "--tokenizer", "--out",
                 "--val-files", "--val-fraction", "--num-workers", "--hf-streaming", "--tokenizer-sample-bytes",
                 "--shard-bytes", "--part"):  # fmt: skip
        assert flag in r.stdout


def test_hub_dataset_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # unresolvable: fails at once, network or not
    with pytest.raises(UserError, match="cannot reach hub.invalid.*needs network access"):
        run_prepare(tmp_path / "out", hf_dataset="someone/corpus", progress=False)
    assert not (tmp_path / "out").exists()
