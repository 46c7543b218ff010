"""BPE merges inside one pre-split chunk: three implementations of one rule.

The rule (identical to tiktoken's, so ids match `tiktoken.Encoding` built from our merges):

    start from the chunk's bytes; while some adjacent pair of parts concatenates to a
    token of the vocabulary, merge the pair whose token has the lowest rank (the
    leftmost such pair on a tie); the ids of the final parts are the encoding.

Rank = token id here: merge i creates id 256 + i, so "lowest rank" is "smallest id".
`pair_table[(left_id, right_id)]` holds the id of the concatenation for every split of
every token into two tokens, so the loops never touch bytes.

Worked example with merges [(98, 99) -> 256 "bc", (97, 98) -> 257 "ab"] on "abc":
parts a b c; pairs (a,b) -> 257, (b,c) -> 256; the lowest rank wins, so b+c merge first:
[a, bc]; "abc" is not a token, so the result is [97, 256]. BPE is greedy by merge rank,
not left to right and not longest match.

- `merge_parts`: a list scan, O(n * merges), fast for one short chunk;
- `merge_parts_long`: a heap over a linked list, O(n log n), for long chunks (a megabyte
  of letters without a space is one chunk under the GPT-4 pattern);
- `merge_batch`: numpy, thousands of chunks at once, one merge per chunk per step. The
  interpreter loop costs ~0.5 us per merge; on a cold cache (a new text) that is most of
  the encoding time, and batching makes it about twice as fast.
"""

from __future__ import annotations

import heapq

import numpy as np

NO_MERGE = 1 << 62  # rank of a pair that is not in the vocabulary; above every real id
LONG_CHUNK = 256  # parts; longer chunks use the heap version to avoid quadratic time


def merge_parts(ids: list[int], pair_table: dict[tuple[int, int], int]) -> list[int]:
    """Apply the merges to `ids` (modified in place) by the rule of the module docstring."""
    if len(ids) > LONG_CHUNK:
        return merge_parts_long(ids, pair_table)
    get = pair_table.get
    ranks = [get(p, NO_MERGE) for p in zip(ids, ids[1:])]  # ranks[i] is the pair (ids[i], ids[i+1])
    while ranks:
        best = min(ranks)
        if best == NO_MERGE:
            break
        i = ranks.index(best)  # leftmost on a tie, as tiktoken
        ids[i] = best
        del ids[i + 1]
        del ranks[i]
        if i > 0:
            ranks[i - 1] = get((ids[i - 1], best), NO_MERGE)
        if i < len(ranks):
            ranks[i] = get((best, ids[i + 1]), NO_MERGE)
    return ids


def merge_parts_long(ids: list[int], pair_table: dict[tuple[int, int], int]) -> list[int]:
    """Same result as `merge_parts`, in O(n log n): a heap of (rank, position) candidates.

    Parts live in a doubly linked list indexed by their first byte's position, which never
    changes when a part absorbs its right neighbour, so (rank, position) order is exactly
    "lowest rank, then leftmost". Stale heap entries are skipped when popped.
    """
    n = len(ids)
    get = pair_table.get
    tok = list(ids)  # tok[i]: id of the part starting at i, or -1 once absorbed
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    heap = [(r, i) for i, p in enumerate(zip(ids, ids[1:])) if (r := get(p)) is not None]
    heapq.heapify(heap)
    while heap:
        r, i = heapq.heappop(heap)
        j = nxt[i]
        if tok[i] < 0 or j >= n or get((tok[i], tok[j])) != r:
            continue  # stale: one side was merged since this entry was pushed
        tok[i], tok[j] = r, -1
        k = nxt[j]
        nxt[i] = k
        if k < n:
            prv[k] = i
            if (rr := get((r, tok[k]))) is not None:
                heapq.heappush(heap, (rr, i))
        p = prv[i]
        if p >= 0 and (rr := get((tok[p], r))) is not None:
            heapq.heappush(heap, (rr, p))
    out, i = [], 0
    while i < n:
        out.append(tok[i])
        i = nxt[i]
    return out


class PairHash:
    """`pair_table` as an open-addressing hash table in numpy arrays, for `merge_batch`.

    Keys are `left << 32 | right`; Fibonacci hashing, linear probing, load factor <= 1/4,
    so a vectorised lookup costs about one random read per query (a sorted array with
    `searchsorted` costs log2(n) of them).
    """

    _EMPTY = -1
    _MULT = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, pair_table: dict[tuple[int, int], int]):
        n = len(pair_table)
        self.bits = max(4, (4 * n).bit_length())
        self.mask = (1 << self.bits) - 1
        keys = np.fromiter(((a << 32) | b for a, b in pair_table), dtype=np.int64, count=n)
        vals = np.fromiter(pair_table.values(), dtype=np.int64, count=n)
        self.keys = np.full(1 << self.bits, self._EMPTY, dtype=np.int64)
        self.vals = np.zeros(1 << self.bits, dtype=np.int64)
        self.byte_pairs = np.full(1 << 16, -1, dtype=np.int32)  # (256*256,) dense table of byte pairs
        small = (keys >> 32 < 256) & (keys & 0xFFFFFFFF < 256)
        self.byte_pairs[((keys[small] >> 32) << 8) | (keys[small] & 0xFF)] = vals[small]
        owner = np.full(1 << self.bits, -1, dtype=np.int64)  # index of the key in each slot
        todo, pos = np.arange(n), self._hash(keys)
        while todo.size:  # each key takes its first free slot; one of several rivals wins a slot
            free = owner[pos] < 0
            owner[pos[free]] = todo[free]
            lost = owner[pos] != todo
            todo, pos = todo[lost], (pos[lost] + 1) & self.mask
        filled = owner >= 0
        self.keys[filled], self.vals[filled] = keys[owner[filled]], vals[owner[filled]]

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * self._MULT) >> np.uint64(64 - self.bits)).astype(np.int64)

    def lookup(self, left: np.ndarray, right: np.ndarray, missing: int) -> np.ndarray:
        """Ids of the pairs (left[i], right[i]) as int32, `missing` where absent."""
        keys = (left.astype(np.int64) << 32) | right
        out = np.full(keys.shape, missing, dtype=np.int32)
        todo, pos = np.arange(keys.size), self._hash(keys)
        while todo.size:
            found = self.keys[pos]
            hit = found == keys[todo]
            out[todo[hit]] = self.vals[pos[hit]]
            more = ~hit & (found != self._EMPTY)
            todo, pos = todo[more], (pos[more] + 1) & self.mask
        return out


def merge_batch(chunks: list[bytes], table: PairHash) -> list[tuple[int, ...]]:
    """`merge_parts` of every chunk, vectorised: each step merges the leftmost lowest-rank
    pair of every chunk that still has one; finished chunks leave the arrays.

    All chunks live in flat arrays over positions (M,): `tok` the part ids, `seg` the
    chunk of each part, `rank[i]` the rank of the pair (tok[i], tok[i+1]) or `NO`
    (no such token, or i is the last part of its chunk). A merge at i changes only the
    pairs at i-1 and i, so each step looks up two pairs per chunk, not M.
    """
    n = len(chunks)
    NO = np.iinfo(np.int32).max  # noqa: N806
    tok = np.frombuffer(b"".join(chunks), dtype=np.uint8).astype(np.int32)  # (M,)
    seg = np.repeat(np.arange(n, dtype=np.int32), np.fromiter(map(len, chunks), dtype=np.int64, count=n))
    head = _heads(seg)  # (M+1,) True where a chunk starts, and a sentinel at M
    rank = np.full(tok.size, NO, dtype=np.int32)  # (M,)
    rank[:-1] = table.byte_pairs[(tok[:-1] << 8) | tok[1:]]  # all parts are bytes yet
    rank[rank < 0] = NO
    rank[:-1][head[1:-1]] = NO  # the last part of a chunk has no pair
    best = np.empty(n, dtype=np.int32)  # (n,) lowest pair rank of each chunk, this step
    done_tok, done_seg = [], []
    while True:
        best[seg[head[:-1]]] = np.minimum.reduceat(rank, np.flatnonzero(head[:-1]))
        finished = best[seg] == NO  # (M,)
        if finished.any():
            done_tok.append(tok[finished])
            done_seg.append(seg[finished])
            if finished.all():
                break
            keep = ~finished
            tok, seg, rank = tok[keep], seg[keep], rank[keep]
            head = _heads(seg)
        cand = np.flatnonzero(rank == best[seg])
        first = cand[np.r_[True, seg[cand[1:]] != seg[cand[:-1]]]]  # leftmost per chunk
        tok[first] = rank[first]
        rank[first] = NO
        right = first[~head[first + 2]]  # the part after the absorbed one is in the same chunk
        rank[right] = table.lookup(tok[right], tok[right + 2], NO)
        left = first[~head[first]] - 1  # the part before the merged one is in the same chunk
        rank[left] = table.lookup(tok[left], tok[left + 1], NO)
        keep = np.ones(tok.size, dtype=bool)
        keep[first + 1] = False  # the right part is absorbed
        tok, seg, rank = tok[keep], seg[keep], rank[keep]
        head = np.append(head[:-1][keep], True)
    all_seg = np.concatenate(done_seg)
    order = np.argsort(all_seg, kind="stable")  # a chunk's parts leave together, in order
    flat = np.concatenate(done_tok)[order].tolist()
    out, s = [], 0
    for c in np.bincount(all_seg, minlength=n).tolist():
        out.append(tuple(flat[s : s + c]))
        s += c
    return out


def _heads(seg: np.ndarray) -> np.ndarray:
    head = np.empty(seg.size + 1, dtype=bool)
    head[0] = head[-1] = True
    np.not_equal(seg[1:], seg[:-1], out=head[1:-1])
    return head
