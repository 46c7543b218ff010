"""The tokenizer.json file: save -> load round trip, and every malformed file a one-line UserError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import play

from shared.errors import UserError
from shared.tokenizer import GPT4_PATTERN, Tokenizer


def test_save_load_roundtrip(tok, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == ["type", "version", "pattern", "merges", "special_tokens"]
    assert data["type"] == "byte_bpe" and data["version"] == 1 and data["pattern"] == GPT4_PATTERN
    assert data["merges"][0] == list(tok.merges[0]) and data["special_tokens"]["<|bos|>"] == tok.bos_id
    loaded = Tokenizer.load(path)
    text = play("twelfth_night_gut.txt")[:20000]
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.sha256 == tok.sha256 and len(tok.sha256) == 64
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temporary left behind


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ("TRUNCATE", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"type": "byte_bpe"}', "missing field 'version'"),
        (
            '{"type": "sentencepiece", "version": 1, "pattern": "x", "merges": [], "special_tokens": {}}',
            "'type'",
        ),
        (
            '{"type": "byte_bpe", "version": 1, "pattern": "x", "merges": [[1]], "special_tokens": {}}',
            "merges\\[0\\]",
        ),
        (
            '{"type": "byte_bpe", "version": 1, "pattern": "x", "merges": [[1, 300]], "special_tokens": {}}',
            "merge 0",
        ),
        ('{"type": "byte_bpe", "version": 1, "pattern": "(", "merges": [], "special_tokens": {}}', "pattern"),
        (
            '{"type": "byte_bpe", "version": 1, "pattern": "x", "merges": [], "special_tokens": {"<a>": 9}}',
            "256",
        ),
        (
            '{"type": "byte_bpe", "version": 2, "pattern": "x", "merges": [], "special_tokens": {}}',
            "'version'",
        ),
    ],
)
def test_bad_files_are_user_errors_naming_the_file(tok, tmp_path, content, message):
    path = tmp_path / "tok.json"
    if content == "TRUNCATE":
        tok.save(path)
        _write(path, path.read_text(encoding="utf-8")[:500])
    elif content is not None:
        _write(path, content)
    with pytest.raises(UserError, match=message) as err:
        Tokenizer.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_folder_instead_of_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="folder"):
        Tokenizer.load(tmp_path)
