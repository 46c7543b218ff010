"""Learning BPE merges from text (Sennrich et al. 2016, byte-level as in GPT-2, Radford et al. 2019).

Training repeats: find the most frequent adjacent pair of ids in the corpus, give it a new
id, replace its occurrences. Done naively that is a full corpus scan per merge. Here:

1. Pre-split every text with the regex and count the chunks (`count_chunks`). Merges never
   cross chunk boundaries, so the corpus *is* its table of unique chunks with counts:
   Shakespeare's 5 MB are about 1.2 M chunks but only 38 k distinct ones.
2. Count pairs once over the unique chunks, weighted by chunk frequency, and index
   pair -> chunks containing it (`where`).
3. Per merge, touch only the chunks in `where[pair]`, and in each only the neighbours of
   the occurrences: x a b y -> x new y moves the chunk's frequency from (x, a) and (b, y)
   to (x, new) and (new, y) (`_apply_merge`).
4. The best pair comes from a heap of (-count, left, right) with lazy invalidation: an
   entry whose count no longer equals the current one is skipped when popped. Counts of
   existing pairs only ever fall (new adjacencies always involve the new id), so the
   current entry of a pair is the one pushed at its last change.

Tie-break (deterministic, independent of text order): the highest count, then the
smallest (left, right) pair. A pair whose byte string is already a token (the same bytes
reachable by two merge paths) is skipped, so every id has distinct bytes and the
vocabulary maps one-to-one onto tiktoken's `mergeable_ranks`.
"""

from __future__ import annotations

import heapq
import operator
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterable

import regex

from shared.tokenizer.encode import GPT4_PATTERN, GPT4_PATTERN_ASCII, split_blocks

_STREAM_ABOVE = 1 << 22  # characters; longer texts are counted from finditer, not a findall list


def count_chunks(texts: Iterable[str], pattern: str, progress: bool = False) -> Counter[str]:
    """Counter of the regex pre-split chunks of all `texts`, streaming (texts are not kept)."""
    from tqdm import tqdm

    compiled = regex.compile(pattern)
    is_gpt4 = pattern == GPT4_PATTERN
    ascii_twin = re.compile(GPT4_PATTERN_ASCII) if is_gpt4 and sys.version_info >= (3, 11) else None
    counts: Counter[str] = Counter()
    for text in tqdm(texts, desc="pre-splitting", unit=" texts", disable=not progress):
        if is_gpt4:  # exact 1 MB blocks bound the list of chunks held at once
            for block in split_blocks(text):
                splitter = ascii_twin if ascii_twin is not None and block.isascii() else compiled
                counts.update(splitter.findall(block))
        elif len(text) <= _STREAM_ABOVE:
            counts.update(compiled.findall(text))
        else:  # no exact cut points for an arbitrary pattern: stream the matches
            counts.update(map(operator.itemgetter(0), compiled.finditer(text)))
    return counts


def learn_merges(chunk_counts: Counter[str], n_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """Up to `n_merges` merges (rank order) learned from chunk counts. Empties `chunk_counts`.

    Fewer merges are returned (with a warning) when the corpus runs out of pairs.
    """
    from tqdm import tqdm

    words: list[list[int]] = []  # unique chunks as id lists; index = word id
    freqs: list[int] = []
    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], list[int]] = {}  # may hold stale word ids; harmless
    while chunk_counts:  # popitem: never hold the strings and their id lists at once
        chunk, freq = chunk_counts.popitem()
        try:
            b = chunk.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: U+FFFD, as encoding will do
            b = chunk.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
        if len(b) < 2:
            continue
        w = len(words)
        words.append(list(b))
        freqs.append(freq)
        for p in zip(b, b[1:]):
            pair_counts[p] = pair_counts.get(p, 0) + freq
            lst = where.setdefault(p, [])
            if not lst or lst[-1] != w:
                lst.append(w)

    vocab = [bytes([i]) for i in range(256)]
    known = set(vocab)
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    bar = tqdm(total=n_merges, desc="bpe merges", unit=" merges", disable=not progress)
    while len(merges) < n_merges and heap:
        neg, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b)) != -neg:
            continue  # stale entry
        token = vocab[a] + vocab[b]
        if token in known:
            continue  # duplicate bytes: skip for good (later pushes are skipped here too)
        new = len(vocab)
        merges.append((a, b))
        vocab.append(token)
        known.add(token)
        changed = _apply_merge(a, b, new, words, freqs, where.pop((a, b)), pair_counts, where)
        for p in changed:
            c = pair_counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, *p))
            else:
                pair_counts.pop(p, None)
                where.pop(p, None)
        bar.update()
    bar.close()
    if len(merges) < n_merges:
        warnings.warn(
            f"the corpus only supports {len(merges)} merges, fewer than the {n_merges} asked for; "
            "the vocabulary is smaller than requested",
            stacklevel=3,
        )
    return merges


def _apply_merge(a, b, new, words, freqs, word_ids, pair_counts, where) -> set[tuple[int, int]]:
    """Replace (a, b) by `new` in the listed words; update counts and index; return changed pairs.

    Only the neighbours of each occurrence change: with x a b y -> x new y, the pairs
    (x, a) and (b, y) lose the word's frequency and (x, new), (new, y) gain it. `x` is read
    from the rewritten word, so back-to-back occurrences (a b a b -> new new) net out right.
    """
    changed: set[tuple[int, int]] = set()
    for w in word_ids:
        word = words[w]
        if a not in word:
            continue  # stale index entry: the pair left this word in an earlier merge
        f = freqs[w]
        n = len(word)
        out: list[int] = []
        i = 0
        while i < n:
            x = word[i]
            if x == a and i + 1 < n and word[i + 1] == b:
                if out:
                    prev = out[-1]
                    pair_counts[(prev, a)] -= f
                    p = (prev, new)
                    pair_counts[p] = pair_counts.get(p, 0) + f
                    where.setdefault(p, []).append(w)
                    changed.add((prev, a))
                    changed.add(p)
                if i + 2 < n:
                    nxt = word[i + 2]
                    pair_counts[(b, nxt)] -= f
                    p = (new, nxt)
                    pair_counts[p] = pair_counts.get(p, 0) + f
                    where.setdefault(p, []).append(w)
                    changed.add((b, nxt))
                    changed.add(p)
                out.append(new)
                i += 2
            else:
                out.append(x)
                i += 1
        if len(out) < n:
            words[w] = out
    changed.discard((a, b))
    pair_counts.pop((a, b), None)
    return changed
