"""Streaming encoding for `text-lm prepare`: pieces of text in, token shards out, memory bounded.

`ShardEncoder` groups the (piece, ends its document) stream of `corpus.iter_part` into
tasks of about `TASK_CHARS` characters and encodes them in a pool of worker processes that
lives for the whole run (each worker keeps its chunk cache warm; a pool per batch would
start cold every time). At most `IN_FLIGHT` tasks per worker are queued or being encoded,
and results are written in order, so memory is a few tasks, never the corpus. A worker
returns its task's ids as little-endian shard bytes, with `<|eos|>` after each document's
last piece, so the parent only writes. Encoding is a pure function of the text (and cuts
fall where they cannot change it), so the ids are those of a one-process encode.

`write_shard` writes one shard atomically (temporary name, then rename) and then a small
`.NAME.done.json` record beside it: a restarted run skips every shard whose record matches
its inputs, which is what makes a killed `prepare` resume from the last finished shard.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from shared.io import atomic_path, write_json_atomic
from shared.tokenizer import GPT4_PATTERN, Tokenizer
from text_lm import corpus
from text_lm.shards import DTYPES, SPLITS, shard_name

TASK_CHARS = 1 << 20  # characters per task handed to a worker
IN_FLIGHT = 2  # tasks per worker queued or running at once
POOL_MIN_BYTES = 1 << 22  # less text than this is encoded in-process: starting workers costs more


def _encode_task(tok: Tokenizer, np_dtype, task: list[tuple[str, bool]]) -> tuple[bytes, int, int]:
    """(shard bytes, UTF-8 bytes of the text, documents ended) of one task."""
    ids: list[int] = []
    n_bytes = n_docs = 0
    for text, ends_doc in task:
        ids += tok.encode(text)
        n_bytes += len(text.encode("utf-8", "surrogatepass"))
        if ends_doc:
            ids.append(tok.eos_id)
            n_docs += 1
    return np.asarray(ids, dtype=np_dtype).tobytes(), n_bytes, n_docs


_WORKER: tuple | None = None  # (Tokenizer, dtype) of this worker process


def _init_worker(state, dtype: str) -> None:
    global _WORKER
    _WORKER = (Tokenizer(*state), DTYPES[dtype])
    parent = os.getppid()

    def exit_with_parent() -> None:  # a parent killed with SIGKILL leaves no orphan behind
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def _run_task(task):
    return _encode_task(*_WORKER, task)


def tasks_of(pieces: Iterable[tuple[str, bool]], size: int = TASK_CHARS) -> Iterator[list[tuple[str, bool]]]:
    task, chars = [], 0
    for piece in pieces:
        task.append(piece)
        chars += len(piece[0])
        if chars >= size:
            yield task
            task, chars = [], 0
    if task:
        yield task


class ShardEncoder:
    """Encodes piece streams into shard bytes, in `num_workers` processes when more than 1."""

    def __init__(self, tok: Tokenizer, dtype: str, num_workers: int):
        self.tok, self.np_dtype, self.pool = tok, DTYPES[dtype], None
        self.num_workers = num_workers
        if num_workers > 1:
            state = (tok.merges, tok.special_tokens, tok.pattern)
            self.pool = multiprocessing.get_context().Pool(num_workers, _init_worker, (state, dtype))

    def __enter__(self) -> ShardEncoder:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def encode(self, pieces: Iterable[tuple[str, bool]]) -> Iterator[tuple[bytes, int, int]]:
        """(shard bytes, text bytes, documents) per task, in stream order."""
        if self.pool is None:
            for task in tasks_of(pieces):
                yield _encode_task(self.tok, self.np_dtype, task)
            return
        window: deque = deque()
        for task in tasks_of(pieces):
            window.append(self.pool.apply_async(_run_task, (task,)))
            if len(window) >= IN_FLIGHT * self.num_workers:
                yield window.popleft().get()
        while window:
            yield window.popleft().get()


def done_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.done.json")


def finished(path: Path, record: dict, itemsize: int) -> dict | None:
    """The counts of a shard a previous run finished for the same `record`, if it is intact."""
    try:
        done = json.loads(done_path(path).read_text(encoding="utf-8"))
        ok = {k: done.get(k) for k in record} == record and path.stat().st_size == done["n_tokens"] * itemsize
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return done if ok else None


def write_shard(path: Path, encoder: ShardEncoder, pieces, record: dict, bar) -> dict:
    """Encode `pieces` into `path` (atomically), then its done record; return the record with counts."""
    n_tokens = n_bytes = n_docs = 0
    itemsize = encoder.np_dtype.itemsize
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for data, b, d in encoder.encode(pieces):
            f.write(data)
            n_tokens += len(data) // itemsize
            n_bytes += b
            n_docs += d
            bar.update(b)
    done = {**record, "n_tokens": n_tokens, "bytes": n_bytes, "n_documents": n_docs}
    write_json_atomic(done_path(path), done)
    return done


def sample(pieces: Iterable[tuple[str, bool]], total_bytes: int, sample_bytes: int | None) -> Iterator[str]:
    """The texts of `pieces`, or about `sample_bytes` of them spread evenly over the stream.

    A piece is kept when the bytes taken so far plus half of it stay within `sample / total`
    of the bytes seen so far including it (error diffusion), so the sample is deterministic
    and spread over the whole stream, not its head."""
    if sample_bytes is None or sample_bytes >= total_bytes:
        yield from (text for text, _ in pieces)
        return
    seen = taken = 0
    for text, _ in pieces:
        n = len(text.encode("utf-8", "surrogatepass"))
        seen += n
        if (2 * taken + n) * total_bytes <= 2 * seen * sample_bytes:
            taken += n
            yield text


def pieces_of_parts(parts, text_field: str, can_cut: bool):
    for p in parts:
        yield from corpus.iter_part(p, text_field, can_cut)


def encode_plan(out, plan, sharded, part, tok, dtype, text_field, num_workers, inputs_sha256, progress):
    """Encode every shard of the plan this run owns (skipping finished ones); their records by split."""
    from tqdm import tqdm

    itemsize = DTYPES[dtype].itemsize
    jobs = []  # (split, path, parts, record, the record of a previous run that finished it, or None)
    for s in SPLITS:
        for k, group in enumerate(plan[s]):
            if part is None or k % part[1] == part[0]:
                path = out / (shard_name(s, k) if sharded else f"{s}.bin")
                record = {
                    "inputs_sha256": inputs_sha256,
                    "tokenizer_sha256": tok.sha256,
                    "file": path.name,
                    "sources": [p.label for p in group],
                }
                jobs.append((s, path, group, record, finished(path, record, itemsize)))
    total = sum(p.n_bytes for *_, group, _, _ in jobs for p in group)
    left = sum(p.n_bytes for *_, group, _, done in jobs if done is None for p in group)
    bar = tqdm(total=total, desc="encoding", unit="B", unit_scale=True, disable=not progress, smoothing=0.1)
    bar.update(total - left)
    listing = {s: [] for s in SPLITS}
    can_cut = tok.pattern == GPT4_PATTERN
    with ShardEncoder(tok, dtype, num_workers if left >= POOL_MIN_BYTES else 1) as encoder:
        for s, path, group, record, done in jobs:
            if done is None:
                done = write_shard(path, encoder, pieces_of_parts(group, text_field, can_cut), record, bar)
            listing[s].append({k: done[k] for k in ("file", "n_tokens", "bytes", "n_documents", "sources")})
    bar.close()
    return listing
