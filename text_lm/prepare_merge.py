"""`text-lm prepare-merge`: join the parts of a multi-machine `text-lm prepare` into one folder.

    # every machine, same inputs and options, its own index I of N:
    text-lm prepare --input corpus/ --tokenizer tok.json --part I/N --out shared/data
    # once all have finished (on a shared disk: the same folder; else copy the part folders):
    text-lm prepare-merge shared/data
    text-lm prepare-merge part0/ part1/ part2/ --out data/corpus

Each part folder holds `meta.part-I-of-N.json` and its shards (`train-0000k.bin` for
k % N == I). The merge checks that the parts come from the same inputs, options and
tokenizer (their `inputs_sha256` and `tokenizer_sha256`), that all N are there and that
every shard is intact; it copies the shards into `--out` when they are elsewhere (hard
links where the disk allows), writes `meta.json` last (the same function as a one-machine
run, so the result is byte for byte what one machine would have written with the same
`--shard-bytes`) and removes the part meta files of `--out`.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from shared.errors import ArgumentParser, UserError, exit_on_user_error
from shared.io import atomic_path, write_json_atomic
from text_lm.prepare_layout import build_meta, meta_name
from text_lm.shards import (
    META_FILE,
    SPLITS,
    TOKENIZER_FILE,
    check_shards,
    load_tokenizer,
    read_meta,
    shard_name,
)


def find_parts(folders: list[Path]) -> list[tuple[Path, dict]]:
    """(folder, part meta) of every `meta.part-*-of-*.json` in `folders`, checked one by one."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder")
        for path in sorted(folder.glob("meta.part-*-of-*.json")):
            meta = read_meta(folder, path.name)
            if not isinstance(meta.get("part"), dict) or "shards" not in meta:
                raise UserError(f"{path} is not a part written by `text-lm prepare --part`")
            check_shards(folder, meta)
            load_tokenizer(folder, meta)
            found.append((folder, meta))
    if not found:
        raise UserError(
            f"no meta.part-I-of-N.json in {', '.join(map(str, folders))}: run `text-lm prepare --part I/N`"
        )
    return found


def merge(folders: list[str | os.PathLike], out: str | os.PathLike | None = None) -> dict:
    """Merge the parts found in `folders` into `out` (default: the only folder given); return meta.json."""
    folders = [Path(f) for f in folders]
    if out is None:
        if len(folders) != 1:
            raise UserError("several part folders: say where the merged folder goes with --out")
        out = folders[0]
    out = Path(out)
    parts = find_parts(folders)
    first = parts[0][1]
    count = first["part"]["count"]
    for folder, meta in parts:
        for key in ("inputs_sha256", "tokenizer_sha256", "dtype", "split_rule"):
            if meta[key] != first[key]:
                raise UserError(
                    f"{folder / meta_name((meta['part']['index'], meta['part']['count']))}: {key} differs from "
                    f"the other parts: every part must run the same command (inputs, options, tokenizer)"
                )
        if meta["part"]["count"] != count or meta["part"]["n_shards"] != first["part"]["n_shards"]:
            raise UserError(f"{folder}: its part is from a run of another size or shard plan than the others")
    by_index = {}
    for folder, meta in parts:
        by_index.setdefault(meta["part"]["index"], (folder, meta))
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise UserError(
            f"parts {', '.join(f'{i}/{count}' for i in missing)} are missing: merge once every part is done"
        )

    listing = {s: [] for s in SPLITS}
    for folder, meta in by_index.values():
        for s in SPLITS:
            listing[s] += [(folder, e) for e in meta["shards"][s]]
    out.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        listing[s].sort(key=lambda fe: fe[1]["file"])
        expected = [shard_name(s, k) for k in range(first["part"]["n_shards"][s])]
        if [e["file"] for _, e in listing[s]] != expected:
            raise UserError(f"the parts' {s} shards are not {expected[0]}..{expected[-1]} exactly once")
        for folder, e in listing[s]:
            _bring(folder / e["file"], out / e["file"])
        listing[s] = [e for _, e in listing[s]]
    _bring(by_index[0][0] / TOKENIZER_FILE, out / TOKENIZER_FILE)
    fields = {
        k: first[k] for k in ("dtype", "vocab_size", "tokenizer_sha256", "eos_id", "split_rule", "options")
    }
    meta = build_meta(listing, True, {**fields, "inputs_sha256": first["inputs_sha256"]})
    (out / META_FILE).unlink(missing_ok=True)
    write_json_atomic(out / META_FILE, meta)
    for path in out.glob("meta.part-*-of-*.json"):
        path.unlink()
    n = meta["n_tokens"]
    print(f"{out}: merged {count} parts; train {n['train']:,} tokens, val {n['val']:,} tokens")
    return meta


def _bring(src: Path, dst: Path) -> None:
    """`dst` becomes a copy of `src` (a hard link where possible), atomically; nothing if they are one file."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="text-lm prepare-merge",
        description="Join the parts written by `text-lm prepare --part I/N` on several machines into one "
        "prepared folder (meta.json listing every shard).",
    )
    p.add_argument(
        "folders",
        nargs="+",
        metavar="DIR",
        help="folders holding meta.part-I-of-N.json files and their shards",
    )
    p.add_argument("--out", metavar="DIR", help="the merged folder (default: the one DIR given)")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    merge(args.folders, args.out)


if __name__ == "__main__":
    main()
