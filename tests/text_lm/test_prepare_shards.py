"""Sharded, streaming, parallel and multi-machine `text-lm prepare` against the one-file, one-process run.

Every check compares with a reference made by the same code on the same text in its simplest
form (one shard per split, one process, every input whole), so "the same ids" is exact.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.errors import UserError
from shared.tokenizer import Tokenizer
from text_lm import corpus_read, prepare_stream
from text_lm.data import TextDataModule
from text_lm.prepare import prepare
from text_lm.prepare_merge import main as merge_main
from text_lm.prepare_merge import merge
from text_lm.shards import TokenStream, load_prepared

ROOT = Path(__file__).resolve().parents[2]
PLAYS = ROOT / "data" / "shakespeare"
VOCAB = 300
SHARD = 12_000  # bytes of text per shard: several shards from a few excerpts


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """Five text files and a jsonl table (rows, one empty, one non-ASCII)."""
    src = tmp_path_factory.mktemp("inputs")
    for i, play in enumerate(["macbeth", "othello", "lear", "sonnets", "tempest"]):
        (src / f"{i}_{play}.txt").write_text((PLAYS / f"{play}_gut.txt").read_text()[:9000], encoding="utf-8")
    rows = [{"text": (PLAYS / "hamlet_gut.txt").read_text()[i * 700 : (i + 1) * 700]} for i in range(12)]
    rows[3]["text"], rows[5]["text"] = "", rows[5]["text"] + " café ☃ 日本語"
    (src / "9_rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return [str(src)]


@pytest.fixture(scope="module")
def tok_file(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    prepare(out, inputs, vocab_size=VOCAB, num_workers=1, progress=False)
    return out / "tokenizer.json"


def stream(out: Path, split: str) -> np.ndarray:
    meta, _ = load_prepared(out)
    ts = TokenStream(out, split, meta)
    return ts.read(0, len(ts))


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_shards_are_the_one_file_stream_cut_by_input(inputs, tok_file, tmp_path):
    one = tok_file.parent
    sharded = tmp_path / "sharded"
    meta = prepare(sharded, inputs, tokenizer=tok_file, shard_bytes=SHARD, num_workers=1, progress=False)
    ref = json.loads((one / "meta.json").read_text())
    assert [e["file"] for e in meta["shards"]["train"]] == [f"train-{k:05d}.bin" for k in range(3)]
    assert [e["file"] for e in meta["shards"]["val"]] == ["val-00000.bin"]
    for key in ("n_tokens", "bytes", "n_documents", "sources"):
        assert meta[key] == ref[key]
    train = meta["shards"]["train"]  # whole inputs (9000 bytes each), packed until SHARD bytes
    assert [len(e["sources"]) for e in train] == [2, 2, 1] and all(e["bytes"] >= SHARD for e in train[:-1])
    assert not (sharded / "train.bin").exists() and not list(sharded.glob(".*"))
    for split in ("train", "val"):
        assert np.array_equal(stream(sharded, split), stream(one, split))
    ts = TokenStream(sharded, "train", meta)  # a read across a shard boundary
    edge = meta["shards"]["train"][0]["n_tokens"]
    assert np.array_equal(ts.read(edge - 5, 10), stream(one, "train")[edge - 5 : edge + 5])


def test_datamodule_reads_shards_as_the_one_file_stream(inputs, tok_file, tmp_path):
    """Same windows, same batches, same per-rank split: the index math is the stream's."""
    sharded = tmp_path / "sharded"
    prepare(sharded, inputs, tokenizer=tok_file, shard_bytes=SHARD, num_workers=1, progress=False)
    batches = {}
    for name, folder in (("one", tok_file.parent), ("sharded", sharded)):
        dm = TextDataModule(str(folder), seq_len=64, batch_size=4, seed=7)
        dm.setup("fit")
        train = [b for _, b in zip(range(12), dm.train_dataloader())]
        batches[name] = torch.cat([x for x, _ in train] + [x for x, _ in dm.val_dataloader()])
    assert torch.equal(batches["one"], batches["sharded"])


def test_parallel_encoding_gives_the_one_process_ids(inputs, tok_file, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_stream, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(prepare_stream, "TASK_CHARS", 3000)  # many tasks in flight, out-of-order finishes
    one = prepare(tmp_path / "one", inputs, tokenizer=tok_file, num_workers=1, progress=False)
    two = prepare(tmp_path / "two", inputs, tokenizer=tok_file, num_workers=2, progress=False)
    assert one == two and files(tmp_path / "one") == files(tmp_path / "two")


def test_long_text_is_read_in_pieces_that_encode_like_the_whole(tmp_path, monkeypatch):
    """A text file larger than the read block streams in cut pieces; the ids are the whole's."""
    monkeypatch.setattr(corpus_read, "BLOCK_BYTES", 2000)
    text = (PLAYS / "lear_gut.txt").read_text()[:60_000] + "\n  indented\r\nZ \t\nend"
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8")
    pieces = list(corpus_read.iter_text(path))
    assert len(pieces) > 20 and "".join(pieces) == text
    tok = Tokenizer.train([text[:20_000]], 350, progress=False)
    assert [i for p in pieces for i in tok.encode(p)] == tok.encode(text)


def test_parts_on_two_machines_merge_into_the_one_machine_folder(inputs, tok_file, tmp_path):
    args = dict(inputs=inputs, tokenizer=tok_file, shard_bytes=SHARD, num_workers=1, progress=False)
    prepare(tmp_path / "one", **args)
    shared = tmp_path / "shared"  # both machines write into one shared folder
    for i in (0, 1):
        part = prepare(shared, **args, part=(i, 2))
        assert [e["file"] for e in part["shards"]["train"]] == [f"train-{k:05d}.bin" for k in range(i, 3, 2)]
    assert not (shared / "meta.json").exists()
    merge_main([str(shared)])
    assert files(shared) == files(tmp_path / "one")
    apart = [tmp_path / "m0", tmp_path / "m1"]  # or on separate disks, copied next to each other
    for i, folder in enumerate(apart):
        prepare(folder, **args, part=(i, 2))
    merge(apart, tmp_path / "merged")
    assert files(tmp_path / "merged") == files(tmp_path / "one")


def test_merge_refuses_missing_or_mismatched_parts(inputs, tok_file, tmp_path):
    args = dict(inputs=inputs, tokenizer=tok_file, shard_bytes=SHARD, num_workers=1, progress=False)
    prepare(tmp_path / "a", **args, part=(0, 2))
    with pytest.raises(UserError, match="parts 1/2 are missing"):
        merge([tmp_path / "a"])
    prepare(tmp_path / "b", **{**args, "shard_bytes": SHARD + 1}, part=(1, 2))
    with pytest.raises(UserError, match="inputs_sha256 differs"):
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(UserError, match="--part needs --tokenizer"):
        prepare(tmp_path / "c", inputs, part=(0, 2), progress=False)


def test_tokenizer_sample(inputs, tmp_path):
    """All of the text as the 'sample' gives today's merges; a small sample is spread and bounded."""
    ref = prepare(tmp_path / "ref", inputs, vocab_size=VOCAB, num_workers=1, progress=False)
    same = prepare(
        tmp_path / "same",
        inputs,
        vocab_size=VOCAB,
        tokenizer_sample_bytes=10**9,
        num_workers=1,
        progress=False,
    )
    assert same["tokenizer_sha256"] == ref["tokenizer_sha256"]
    pieces = [(f"piece {i} " * 50, True) for i in range(100)]  # 100 pieces of 400-450 bytes
    total = sum(len(t) for t, _ in pieces)
    kept = list(prepare_stream.sample(pieces, total, total // 10))
    index = [int(t.split()[1]) for t in kept]
    assert 9 <= len(kept) <= 11 and 0 < index[0] < 10 and index[-1] >= 90  # one in ten, spread
    small = prepare(
        tmp_path / "small",
        inputs,
        vocab_size=VOCAB,
        tokenizer_sample_bytes=8000,
        num_workers=1,
        progress=False,
    )
    assert small["tokenizer_sha256"] != ref["tokenizer_sha256"]
    assert small["options"]["tokenizer_sample_bytes"] == 8000 and small["n_tokens"]["train"] > 0


def test_parquet_and_saved_datasets_read_like_jsonl(tmp_path):
    import datasets

    rows = [{"text": f"Row {i}: " + "words " * (i + 3)} for i in range(30)] + [{"text": None}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "nest" / "saved"))
    metas = {
        name: prepare(
            tmp_path / f"out_{name.replace('/', '_')}", [str(tmp_path / name)], vocab_size=270, progress=False
        )
        for name in ("rows.jsonl", "rows.parquet", "nest/saved", "nest")
    }
    sizes, k, acc = [len(r["text"]) for r in rows[:-1]], 0, 0  # the split rule on a list in memory
    while acc < 0.05 * sum(sizes):
        k, acc = k + 1, acc + sizes[-k - 1]
    label = {"nest": "nest/saved"}  # "nest": the saved folder found inside an input folder
    for name, meta in metas.items():
        assert meta["n_documents"] == {"train": 30 - k, "val": k}, name
        assert meta["sources"]["val"] == [f"{tmp_path}/{label.get(name, name)}[{30 - k}:30]"]
        assert meta["n_tokens"] == metas["rows.jsonl"]["n_tokens"]
        assert (tmp_path / f"out_{name.replace('/', '_')}" / "train.bin").read_bytes() == (
            tmp_path / "out_rows.jsonl" / "train.bin"
        ).read_bytes()
    with pytest.raises(UserError, match="has no split 'test'"):
        prepare(tmp_path / "bad", [str(tmp_path / "nest" / "saved")], split="test", progress=False)


def test_hub_streaming_code_path_offline_on_a_local_dataset_folder(tmp_path, monkeypatch):
    """--hf-dataset --hf-streaming through `datasets.load_dataset(NAME, streaming=True)`, where NAME is
    a local folder of jsonl files: the hub code path, offline; the ids are those of the file itself.
    (Downloaded hub datasets are memory-mapped Datasets, read like the saved folders above.)"""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "hubby"
    folder.mkdir()
    rows = [{"text": f"Line {i}: " + "to be or not " * (i + 2)} for i in range(20)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ref = prepare(tmp_path / "ref", [str(folder / "train.jsonl")], vocab_size=270, progress=False)
    hub = prepare(tmp_path / "hub", hf_dataset=str(folder), hf_streaming=True, vocab_size=270, progress=False)
    assert hub["sources"]["val"] == [f"hf:{folder}:train[{ref['n_documents']['train']}:20]"]
    assert hub["n_tokens"] == ref["n_tokens"] and hub["tokenizer_sha256"] == ref["tokenizer_sha256"]
    assert (tmp_path / "hub" / "train.bin").read_bytes() == (tmp_path / "ref" / "train.bin").read_bytes()


def test_a_damaged_shard_listing_is_one_clear_error(inputs, tok_file, tmp_path):
    out = tmp_path / "sharded"
    meta = prepare(out, inputs, tokenizer=tok_file, shard_bytes=SHARD, num_workers=1, progress=False)
    for change, message in [
        (
            lambda m: m["shards"]["train"][1].update(file="../train-00001.bin"),
            "is not a train-NNNNN.bin name",
        ),
        (lambda m: m["shards"]["train"][1].update(n_tokens=5), "its shards add up to"),
        (lambda m: m["shards"].pop("val"), "must map 'train' and 'val' to lists"),
    ]:
        bad = json.loads(json.dumps(meta))
        change(bad)
        (out / "meta.json").write_text(json.dumps(bad))
        with pytest.raises(UserError, match=message):
            load_prepared(out)
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "train-00002.bin").unlink()
    with pytest.raises(UserError, match="train-00002.bin not found"):
        load_prepared(out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "--part", "2/2", "--tokenizer", "T"], "--part 2/2: I must be in 0..N-1"),
        (["prepare", "--part", "half"], "expected I/N"),
        (["prepare", "--shard-bytes", "0"], "--shard-bytes must be at least 1"),
        (["merge"], "no meta.part-I-of-N.json in"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message, tok_file):
    from text_lm.prepare import main as prepare_main

    argv = [str(tok_file) if a == "T" else a for a in argv]
    main, rest = (merge_main, [str(tmp_path)]) if argv[0] == "merge" else (prepare_main, argv[1:])
    with pytest.raises(SystemExit) as exit_:
        main([*rest, "--out", str(tmp_path / "out")] if main is prepare_main else rest)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and message in lines[0], lines
