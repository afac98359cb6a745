"""Exact in-memory match indexes: Hamming-radius search for perceptual hashes, lookup for exact.

`HammingIndex` answers "which entries are within `radius` bits of this hash" with exactly the set a
brute-force scan would return (distance <= radius, inclusive), sorted by distance then entry id.

How it finds candidates: multi-index hashing. The hash is split into `m` disjoint chunks. If two
hashes differ in at most `r` bits, then by pigeonhole at least one chunk differs in at most
`r // m` bits. For each chunk, a direct lookup table maps the chunk's key bits to the rows holding
that key (CSR form: one offsets array and one postings array per chunk). A query enumerates every
key within `r // m` bits of its own key in each chunk, collects the rows listed there and verifies
each candidate with a popcount over the XOR of its packed uint64 words. Candidates are a superset
of the answer and every candidate is verified, so the result is exact. A table may key on only
the first `t` bits of a chunk (`t` chosen from the segment size): two keys within `r // m` bits
still have prefixes within `r // m` bits, so exactness holds and a small segment does not pay for
a table sized for a huge one. When the enumeration would cost more than reading every row (a
large radius, a tiny segment) the segment is scanned instead, which is also exact.

How it changes: entries arrive from the consortium's log one batch at a time and must never force
a rebuild of the whole index, because a rebuild at 100M entries takes minutes. The index is a
stack of immutable segments (oldest and largest first) plus a small mutable buffer:

- `add` appends to the buffer, which is scanned; when full it is frozen into a segment. A batch
  larger than the buffer becomes a segment directly, so a bulk load builds one segment once.
- After a new segment is pushed, the two newest segments are merged while the older one holds at
  most `_MERGE_RATIO` times the rows of the newer. Segment sizes therefore grow geometrically
  towards the oldest: there are O(log n) segments, and each row is rebuilt O(log n) times over its
  life, so the cost of an add is amortised O(log n) row rebuilds, never O(n).
- `remove` marks the row in its segment's removal mask (found by binary search: rows in a segment
  are sorted by entry id) and the row is dropped when its segment is next merged. A segment where
  removed rows outnumber live ones is compacted, so masked rows never hold more than half of it.

Invariants: an entry id is live at most once (adding a live id is refused); `len()` counts live
entries; searches never return a removed entry. Not thread-safe: a matcher process serialises
`add`/`remove` against searches.

Memory (`memory_bytes`): per entry, the packed hash (bits/8 bytes), its int64 id, one mask byte
and one uint32 posting per chunk; per segment, `m` offset tables of `2**t + 1` uint32, where
`2**t` never exceeds the segment's rows, so the tables never outweigh the postings.

`ExactIndex` serves md5 and sha256: a dict from value to ids, with the same interface.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from consortium_client.hashvalues import algorithm_get

HashArray = npt.NDArray[np.uint8]
Hashes = Sequence[str] | HashArray
Query = str | HashArray
Match = tuple[int, int]

_Words = npt.NDArray[np.uint64]
_Ints = npt.NDArray[np.int64]

# A mutable buffer of this many rows is scanned by brute force on every query (tens of
# microseconds); beyond it, rows are frozen into an indexed segment.
_BUFFER_ROWS = 4096
# Merge the two newest segments while the older holds at most this many times the newer's rows.
# 2 keeps at most ~log2(n / buffer) segments with ~log2(n / buffer) rebuilds per row; larger
# ratios mean fewer segments but more rebuild work (measured by simulating the policy).
_MERGE_RATIO = 2
# Direct tables hold 2**t offsets per chunk; 2**24 uint32 offsets are 64 MiB per chunk.
_MAX_KEY_BITS = 24
# Relative costs used to choose a layout and to decide between the tables and a scan, measured on
# numpy 2 (one unit is about 75 ns, dominated by random gathers): a table search's fixed overhead
# of some thirty numpy calls, enumerating one key, verifying one candidate, and scanning one
# 64-bit word of one row sequentially.
_COST_TABLE_SEARCH = 1000.0
_COST_KEY = 1.0
_COST_CANDIDATE = 1.0
_COST_SCAN_WORD = 0.08
# A query whose keys hold more than this many times a scan's worth of candidates scans the
# segment instead (1: whichever the cost model says is cheaper; tests set 0 and infinity to
# force either path).
_CROWD_SCAN = 1.0
# Upper bound on enumerated keys (or scanned row-words) per block of a batch, to bound temporaries.
_BLOCK_BUDGET = 1 << 20
# Candidates listed under several keys are made unique by marking them in a bitmap of every
# (query, row) pair when it has at most this many slots per candidate, and at most
# _BITMAP_MAX slots: marking costs about 0.2 ns a slot, sorting about 45 ns a candidate. A
# query near a cluster lists tens of thousands of candidates (1.6 ms of a 2.9 ms query at
# 1M clustered rows went to the sort). Tests set 0 and infinity to force either path.
_BITMAP_PER_VALUE = 64.0
_BITMAP_MAX = 1 << 26


class MatchIndex(Protocol):
    """What the matcher needs from an index of one algorithm's values."""

    def add(self, ids: Sequence[int] | _Ints, hashes: Hashes) -> None: ...

    def remove(self, ids: Iterable[int] | _Ints) -> int: ...

    candidates_examined: int

    def search(self, query: Query, radius: int) -> list[Match]: ...

    def search_batch(
        self, queries: Hashes, radius: int, limit: int | None = None
    ) -> list[list[Match]]: ...

    def values_get(self, ids: Iterable[int]) -> dict[int, str]: ...

    def __len__(self) -> int: ...

    def memory_bytes(self) -> int: ...


def index_for(algorithm: str) -> HammingIndex | ExactIndex:
    """An empty index suited to `algorithm` (a name in `hashvalues.ALGORITHMS`)."""
    spec = algorithm_get(algorithm)
    if spec.perceptual:
        return HammingIndex(spec.bits, radius_hint=spec.default_distance)
    return ExactIndex(spec.bits)


def hashes_pack(hashes: Hashes, bits: int) -> _Words:
    """Hex strings, or an (n, bits/8) uint8 array, as an (n, bits/64) array of uint64 words.

    Word 0 holds the first 64 bits, most significant bit first, so bit `i` of the hash (counting
    from the first hex digit) is bit `63 - i % 64` of word `i // 64`.
    """
    raw = np.ascontiguousarray(_bytes_rows(hashes, bits // 8))
    return raw.view(">u8").astype(np.uint64)


def _query_pack(query: Query, bits: int) -> _Words:
    if isinstance(query, np.ndarray):
        return hashes_pack(query.reshape(1, -1), bits)
    return hashes_pack([query], bits)


def _distances(words: _Words, query: _Words) -> _Ints:
    """Hamming distances between rows of `words` and `query` (broadcast on the leading axes)."""
    counts = np.bitwise_count(words ^ query)
    # Column by column: numpy's sum over a short last axis is several times slower.
    total: _Ints = counts[..., 0].astype(np.int64)
    for word in range(1, counts.shape[-1]):
        total += counts[..., word]
    return total


def _keys_extract(words: _Words, starts: _Ints, key_bits: int) -> _Ints:
    """For each row and each start, bits `start .. start + key_bits` as an integer.

    Returns an (n, len(starts)) array. Bits are numbered from the first hex digit, and a key may
    straddle two words.
    """
    last_word = words.shape[1] - 1
    word = starts // 64
    offset = (starts % 64).astype(np.uint64)
    if len(starts) == 1:
        # One start (building a table): slices are views, where fancy indexing would copy.
        high = words[:, word[0] : word[0] + 1]
        low = words[:, min(word[0] + 1, last_word) : min(word[0] + 1, last_word) + 1]
    else:
        high = words[:, word]
        low = words[:, np.minimum(word + 1, last_word)]
    # (low >> 1) >> (63 - offset) is low >> (64 - offset) without a shift by 64 when offset is 0.
    window = (high << offset) | ((low >> np.uint64(1)) >> (np.uint64(63) - offset))
    return (window >> np.uint64(64 - key_bits)).astype(np.int64)


def _ball_size(key_bits: int, flips: int) -> int:
    return sum(math.comb(key_bits, i) for i in range(min(flips, key_bits) + 1))


@lru_cache(maxsize=64)
def _flip_masks(key_bits: int, flips: int) -> _Ints:
    """Every XOR mask of at most `flips` set bits within `key_bits` bits."""
    masks = [
        sum(1 << bit for bit in combination)
        for count in range(min(flips, key_bits) + 1)
        for combination in itertools.combinations(range(key_bits), count)
    ]
    array = np.array(masks, dtype=np.int64)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class _Layout:
    """How a segment's tables split the hash: `chunks` disjoint chunks, keyed on `key_bits` each."""

    chunk_starts: tuple[int, ...]
    key_bits: int

    @property
    def chunks(self) -> int:
        return len(self.chunk_starts)

    def table_cost(self, rows: int, radius: int) -> float:
        keys = self.chunks * _ball_size(self.key_bits, radius // self.chunks)
        candidates = keys * rows / (1 << self.key_bits)
        return _COST_TABLE_SEARCH + keys * _COST_KEY + candidates * _COST_CANDIDATE


def _scan_cost(rows: int, bits: int) -> float:
    return rows * (bits // 64) * _COST_SCAN_WORD


def _layout_choose(bits: int, radius: int, rows: int) -> _Layout | None:
    """The cheapest chunking for `rows` rows searched at `radius`, or None if a scan is cheaper.

    Tables are capped at `rows` keys each so that they never outweigh the postings.
    """
    best: _Layout | None = None
    best_cost = _scan_cost(rows, bits)
    max_key_bits = min(_MAX_KEY_BITS, rows.bit_length() - 1)
    for chunks in range(1, bits + 1):
        key_bits = min(bits // chunks, max_key_bits)
        if key_bits < 1:
            break
        # Spread the remainder so chunk widths differ by at most one bit.
        widths = [bits // chunks + (1 if i < bits % chunks else 0) for i in range(chunks)]
        starts = tuple(itertools.accumulate([0, *widths[:-1]]))
        layout = _Layout(starts, key_bits)
        cost = layout.table_cost(rows, radius)
        if cost < best_cost:
            best, best_cost = layout, cost
    return best


@dataclass
class _Hits:
    """Verified matches of a block of queries: query position, entry id and distance."""

    queries: _Ints
    ids: _Ints
    distances: _Ints
    # Rows whose distance was computed (candidates verified, or rows scanned), per query summed.
    examined: int = 0

    @classmethod
    def concat(cls, parts: list[_Hits]) -> _Hits:
        return cls(
            np.concatenate([p.queries for p in parts]),
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.distances for p in parts]),
            sum(p.examined for p in parts),
        )


def _empty_hits() -> _Hits:
    empty = np.zeros(0, dtype=np.int64)
    return _Hits(empty, empty, empty)


class _Segment:
    """Rows sorted by entry id, frozen except for the removal mask, with optional MIH tables.

    Invariant: `postings[offsets[c * (2**t + 1) + k] : offsets[c * (2**t + 1) + k + 1]]` are
    the rows whose chunk `c` has key `k`; every row appears once per chunk.
    """

    def __init__(
        self, ids: _Ints, words: _Words, bits: int, radius_hint: int, *, tables: bool = True
    ) -> None:
        if len(ids) and np.all(ids[1:] > ids[:-1]):
            # Already in order (a bulk load from a snapshot): keep the arrays, copy nothing.
            self.ids: _Ints = ids
            self.words: _Words = words
        else:
            order = np.argsort(ids, kind="stable")
            self.ids = ids.take(order)
            self.words = words.take(order, axis=0)
        self.removed = np.zeros(len(ids), dtype=np.bool_)
        self.live = len(ids)
        self.bits = bits
        # Without tables every search scans: exact all the same, and nothing to build.
        self.layout = _layout_choose(bits, radius_hint, len(ids)) if tables else None
        self.offsets: npt.NDArray[np.integer[Any]] = np.zeros(0, dtype=np.uint32)
        self.postings: npt.NDArray[np.uint32] = np.zeros(0, dtype=np.uint32)
        if self.layout is not None:
            self._tables_build(self.layout)

    def _tables_build(self, layout: _Layout) -> None:
        rows = len(self.ids)
        keys_per_chunk = 1 << layout.key_bits
        # uint32 halves the tables; offsets are positions in the concatenated postings.
        offset_type = np.uint32 if rows * layout.chunks < 1 << 32 else np.int64
        offsets: npt.NDArray[np.integer[Any]] = np.zeros(
            layout.chunks * (keys_per_chunk + 1), dtype=offset_type
        )
        postings = np.empty(layout.chunks * rows, dtype=np.uint32)
        for chunk, start in enumerate(layout.chunk_starts):
            keys = _keys_extract(self.words, np.array([start]), layout.key_bits)[:, 0]
            # Keys fit in 24 bits; numpy sorts uint32 a third faster than int64.
            postings[chunk * rows : (chunk + 1) * rows] = np.argsort(keys.astype(np.uint32))
            counts = np.bincount(keys, minlength=keys_per_chunk)
            table = offsets[chunk * (keys_per_chunk + 1) : (chunk + 1) * (keys_per_chunk + 1)]
            table[0] = chunk * rows
            np.cumsum(counts, out=table[1:])
            table[1:] += chunk * rows
        self.offsets, self.postings = offsets, postings

    def __len__(self) -> int:
        return len(self.ids)

    def memory_bytes(self) -> int:
        arrays = (self.ids, self.words, self.removed, self.offsets, self.postings)
        return sum(a.nbytes for a in arrays)

    def rows_live(self, ids: _Ints) -> _Ints:
        """Rows holding live entries among the distinct `ids` (ids not live here are skipped)."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.int64)
        rows: _Ints = np.searchsorted(self.ids, ids)
        inside = rows < len(self.ids)
        rows = rows[inside]
        rows = rows[self.ids[rows] == ids[inside]]
        return rows[~self.removed[rows]]

    def rows_remove(self, rows: _Ints) -> None:
        self.removed[rows] = True
        self.live -= len(rows)

    def live_rows(self) -> tuple[_Ints, _Words]:
        keep = ~self.removed
        return self.ids[keep], self.words[keep]

    def search(self, queries: _Words, radius: int) -> _Hits:
        if self.layout is None or self.layout.table_cost(len(self), radius) >= _scan_cost(
            len(self), self.bits
        ):
            return _scan(self.ids, self.words, self.removed, queries, radius)
        return self._tables_search(self.layout, queries, radius)

    def _tables_search(self, layout: _Layout, queries: _Words, radius: int) -> _Hits:
        masks = _flip_masks(layout.key_bits, radius // layout.chunks)
        block = max(1, _BLOCK_BUDGET // (layout.chunks * len(masks)))
        parts = [
            self._tables_search_block(layout, masks, queries[i : i + block], i, radius)
            for i in range(0, len(queries), block)
        ]
        return _Hits.concat(parts) if parts else _empty_hits()

    def _tables_search_block(
        self, layout: _Layout, masks: _Ints, queries: _Words, first: int, radius: int
    ) -> _Hits:
        table_length = (1 << layout.key_bits) + 1
        starts = np.array(layout.chunk_starts, dtype=np.int64)
        chunk_bases = np.arange(layout.chunks, dtype=np.int64) * table_length
        query_keys = _keys_extract(queries, starts, layout.key_bits)
        # (queries, chunks, masks): every key within radius // chunks bits of each query's key,
        # then offset to its chunk's table (after the XOR: the offset is not a power of two).
        keys = (query_keys[:, :, None] ^ masks[None, None, :]) + chunk_bases[None, :, None]
        keys = keys.ravel()
        key_queries = np.repeat(np.arange(len(queries), dtype=np.int64), layout.chunks * len(masks))
        starts = self.offsets.take(keys).astype(np.int64)
        lengths = self.offsets.take(keys + 1).astype(np.int64) - starts
        # Before gathering anything, the bucket sizes tell each query how many candidates its
        # keys hold. Where that costs more than reading every row (keys crowded by a cluster of
        # near-identical values: templated images, or a crowd one partner planted), that query
        # scans the segment instead, so no query costs more than a scan whatever the data.
        gathered = np.bincount(key_queries, weights=lengths, minlength=len(queries))
        crowded = gathered * _COST_CANDIDATE > _scan_cost(len(self), self.bits) * _CROWD_SCAN
        parts = []
        if crowded.any():
            positions_crowded = np.flatnonzero(crowded)
            hits = _scan(self.ids, self.words, self.removed, queries[positions_crowded], radius)
            hits.queries = positions_crowded[hits.queries] + first
            parts.append(hits)
        occupied = np.flatnonzero(lengths)
        if crowded.any():
            occupied = occupied[~crowded[key_queries[occupied]]]
        starts, lengths, key_queries = starts[occupied], lengths[occupied], key_queries[occupied]
        # Expand each [start, start + length) range into positions, without a Python loop.
        ends = np.cumsum(lengths)
        positions = np.arange(ends[-1] if len(ends) else 0, dtype=np.int64)
        positions += np.repeat(starts - (ends - lengths), lengths)
        rows = self.postings.take(positions).astype(np.int64)
        # A row near a query is usually listed under several of its chunks (on clustered data,
        # under most of them): verify each (query, row) pair once. Sorting the pairs costs
        # less than gathering a 32-byte hash from a random row for each duplicate.
        pairs = _unique_below(
            np.repeat(key_queries, lengths) * len(self) + rows, len(queries) * len(self)
        )
        candidate_queries, rows = np.divmod(pairs, len(self))
        # take() gathers rows many times faster than fancy indexing of a 2-D array.
        candidates = self.words.take(rows, axis=0)
        if len(queries) == 1:
            distances = _distances(candidates, queries[0])
        else:
            distances = _distances(candidates, queries.take(candidate_queries, axis=0))
        near = (distances <= radius) & ~self.removed[rows]
        parts.append(
            _Hits(
                candidate_queries[near] + first,
                self.ids[rows[near]],
                distances[near],
                len(pairs),
            )
        )
        return _Hits.concat(parts)


def _scan(
    ids: _Ints, words: _Words, removed: npt.NDArray[np.bool_], queries: _Words, radius: int
) -> _Hits:
    """Brute force: every live row against every query."""
    if not len(ids):
        return _empty_hits()
    block = max(1, _BLOCK_BUDGET // (len(ids) * words.shape[1]))
    parts = []
    for first in range(0, len(queries), block):
        distances = _distances(words[None, :, :], queries[first : first + block, None, :])
        query_positions, rows = np.nonzero((distances <= radius) & ~removed[None, :])
        parts.append(
            _Hits(
                query_positions.astype(np.int64) + first,
                ids[rows],
                distances[query_positions, rows],
                distances.size,
            )
        )
    return _Hits.concat(parts)


def _run_starts(ordered: _Ints) -> npt.NDArray[np.bool_]:
    """True where a sorted array's value differs from the one before it."""
    starts = np.ones(len(ordered), dtype=np.bool_)
    starts[1:] = ordered[1:] != ordered[:-1]
    return starts


def _unique(values: _Ints) -> _Ints:
    # np.unique takes a hash-based path for int64 that is many times slower than sorting.
    ordered = np.sort(values)
    return ordered[_run_starts(ordered)]


def _unique_below(values: _Ints, space: int) -> _Ints:
    """`_unique` of values known to lie in [0, space): through a bitmap when that is cheaper."""
    if space <= _BITMAP_MAX and space <= _BITMAP_PER_VALUE * len(values):
        seen = np.zeros(space, dtype=np.bool_)
        seen[values] = True
        return np.flatnonzero(seen).astype(np.int64, copy=False)
    return _unique(values)


class _Buffer:
    """The newest rows, unindexed and scanned on every query; at most `_BUFFER_ROWS` of them."""

    def __init__(self, words_per_hash: int) -> None:
        self.ids = np.zeros(_BUFFER_ROWS, dtype=np.int64)
        self.words = np.zeros((_BUFFER_ROWS, words_per_hash), dtype=np.uint64)
        self.removed = np.zeros(_BUFFER_ROWS, dtype=np.bool_)
        self.size = 0
        self.live = 0

    def room(self) -> int:
        return _BUFFER_ROWS - self.size

    def append(self, ids: _Ints, words: _Words) -> None:
        end = self.size + len(ids)
        self.ids[self.size : end], self.words[self.size : end] = ids, words
        self.removed[self.size : end] = False
        self.size, self.live = end, self.live + len(ids)

    def rows_live(self, ids: _Ints) -> _Ints:
        rows = np.flatnonzero(np.isin(self.ids[: self.size], ids) & ~self.removed[: self.size])
        return rows.astype(np.int64)

    def rows_remove(self, rows: _Ints) -> None:
        self.removed[rows] = True
        self.live -= len(rows)

    def drain(self) -> tuple[_Ints, _Words]:
        """Return the live rows and empty the buffer."""
        keep = ~self.removed[: self.size]
        ids, words = self.ids[: self.size][keep].copy(), self.words[: self.size][keep].copy()
        self.size = self.live = 0
        return ids, words

    def search(self, queries: _Words, radius: int) -> _Hits:
        n = self.size
        return _scan(self.ids[:n], self.words[:n], self.removed[:n], queries, radius)

    def memory_bytes(self) -> int:
        return self.ids.nbytes + self.words.nbytes + self.removed.nbytes


class HammingIndex:
    """Exact Hamming-radius index of `bits`-bit hashes (64 or 256) keyed by int64 entry ids.

    `radius_hint` is the radius most searches use (the algorithm's default distance); it shapes
    the tables, while any radius still returns the exact answer.
    """

    def __init__(self, bits: int, *, radius_hint: int | None = None) -> None:
        if bits <= 0 or bits % 64:
            raise ValueError("bits must be a positive multiple of 64")
        self.bits = bits
        self.radius_hint = radius_hint if radius_hint is not None else (31 if bits >= 256 else 10)
        self._segments: list[_Segment] = []
        self._buffer = _Buffer(bits // 64)
        self._live = 0
        # Rows whose distance a search computed, over the index's life: the work a search did,
        # so that a caller can show it depends only on what it searched (never on other data).
        self.candidates_examined = 0

    def __len__(self) -> int:
        return self._live

    @classmethod
    def from_packed(
        cls,
        ids: _Ints,
        words: _Words,
        *,
        bits: int,
        radius_hint: int | None = None,
        tables: bool = True,
    ) -> HammingIndex:
        """An index of `ids` (int64, strictly increasing) and their packed `words` (as
        `hashes_pack` makes them), built as one segment without copying the arrays.

        With `tables=False` nothing is built and every search scans the rows: for a process
        that answers a few queries and exits, a scan costs less than building the tables.
        Rows added later are indexed as usual.
        """
        index = cls(bits, radius_hint=radius_hint)
        if words.dtype != np.uint64 or words.shape != (len(ids), bits // 64):
            raise ValueError(f"words must be uint64 of shape (n, {bits // 64})")
        if ids.dtype != np.int64 or ids.ndim != 1 or np.any(ids[1:] <= ids[:-1]):
            raise ValueError("ids must be int64 and strictly increasing")
        if len(ids):
            index._segments.append(_Segment(ids, words, bits, index.radius_hint, tables=tables))
            index._live = len(ids)
        return index

    def add(self, ids: Sequence[int] | _Ints, hashes: Hashes) -> None:
        """Add entries; refuses (changing nothing) an id that is already live or repeated."""
        id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
        words = hashes_pack(hashes, self.bits)
        if len(id_array) != len(words):
            raise ValueError("ids and hashes differ in length")
        ordered = np.sort(id_array)
        if np.any(ordered[1:] == ordered[:-1]):
            raise ValueError("an id appears twice in one batch")
        if any(len(part.rows_live(ordered)) for part in self._parts()):
            raise ValueError("an id is already in the index")
        if len(id_array) <= self._buffer.room():
            self._buffer.append(id_array, words)
        else:
            # Fold the buffer in so that a large batch makes one segment, not two.
            buffered_ids, buffered_words = self._buffer.drain()
            self._segment_push(
                np.concatenate([buffered_ids, id_array]), np.concatenate([buffered_words, words])
            )
        if not self._buffer.room():
            self._segment_push(*self._buffer.drain())
        self._live += len(id_array)

    def remove(self, ids: Iterable[int] | _Ints) -> int:
        """Remove the live entries among `ids`; returns how many were removed.

        Ids that are not live are ignored, so replaying a revocation is harmless.
        """
        id_array = _unique(np.fromiter(ids, dtype=np.int64))
        removed = 0
        for part in self._parts():
            rows = part.rows_live(id_array)
            part.rows_remove(rows)
            removed += len(rows)
        self._live -= removed
        if any(segment.live < len(segment) - segment.live for segment in self._segments):
            self._segments = [
                segment if segment.live >= len(segment) - segment.live else self._rebuilt(segment)
                for segment in self._segments
                if segment.live
            ]
            self._segments_settle()
        return removed

    def search(self, query: Query, radius: int) -> list[Match]:
        """Entries within `radius` bits of `query`, as (id, distance) by distance then id."""
        return self._search_packed(_query_pack(query, self.bits), radius)[0]

    def search_batch(
        self, queries: Hashes, radius: int, limit: int | None = None
    ) -> list[list[Match]]:
        """`search` for each query, in order; only the first `limit` matches of each if given
        (the nearest, ties by id), cut before any Python object is made for the rest."""
        return self._search_packed(hashes_pack(queries, self.bits), radius, limit)

    def values_get(self, ids: Iterable[int]) -> dict[int, str]:
        """The hex value of each live entry among `ids` (absent ids are left out)."""
        wanted = _unique(np.fromiter(ids, dtype=np.int64))
        width = self.bits // 8
        values: dict[int, str] = {}
        for part in self._parts():
            rows = part.rows_live(wanted)
            raw = part.words[rows].astype(">u8").tobytes()
            for position, entry_id in enumerate(part.ids[rows].tolist()):
                values[entry_id] = raw[position * width : (position + 1) * width].hex()
        return values

    def memory_bytes(self) -> int:
        """Bytes held in arrays: hashes, ids, removal masks, offset tables, postings, buffer."""
        return self._buffer.memory_bytes() + sum(s.memory_bytes() for s in self._segments)

    def memory_breakdown(self) -> dict[str, int]:
        """`memory_bytes` split into raw hashes, ids and masks, offset tables and postings."""
        segments = self._segments
        return {
            "hashes": sum(s.words.nbytes for s in segments) + self._buffer.words.nbytes,
            "ids_and_masks": sum(s.ids.nbytes + s.removed.nbytes for s in segments)
            + self._buffer.ids.nbytes
            + self._buffer.removed.nbytes,
            "tables": sum(s.offsets.nbytes for s in segments),
            "postings": sum(s.postings.nbytes for s in segments),
        }

    def segment_sizes(self) -> list[int]:
        """Rows per segment, oldest first, then the buffer's rows (for diagnostics and tests)."""
        return [len(s) for s in self._segments] + [self._buffer.size]

    def _parts(self) -> list[_Segment | _Buffer]:
        return [*self._segments, self._buffer]

    def _search_packed(
        self, queries: _Words, radius: int, limit: int | None = None
    ) -> list[list[Match]]:
        if radius < 0:
            raise ValueError("radius must not be negative")
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        hits = _Hits.concat([part.search(queries, radius) for part in self._parts()])
        self.candidates_examined += hits.examined
        order = np.lexsort((hits.ids, hits.distances, hits.queries))
        if limit is not None:
            # Rank of each hit within its query (hits are grouped by query after the sort).
            grouped = hits.queries[order]
            rank = np.arange(len(grouped)) - np.searchsorted(grouped, grouped, side="left")
            order = order[rank < limit]
        # One slice per query of two flat lists: a large answer (a cluster of templated images)
        # then costs one tuple per match, not a Python-level append and index per match.
        grouped = hits.queries[order]
        bounds = np.searchsorted(grouped, np.arange(len(queries) + 1)).tolist()
        pairs = list(zip(hits.ids[order].tolist(), hits.distances[order].tolist(), strict=True))
        return [pairs[bounds[q] : bounds[q + 1]] for q in range(len(queries))]

    def _rebuilt(self, *segments: _Segment) -> _Segment:
        parts = [segment.live_rows() for segment in segments]
        ids = np.concatenate([ids for ids, _ in parts])
        words = np.concatenate([words for _, words in parts])
        return _Segment(ids, words, self.bits, self.radius_hint)

    def _segment_push(self, ids: _Ints, words: _Words) -> None:
        if len(ids):
            self._segments.append(_Segment(ids, words, self.bits, self.radius_hint))
            self._segments_settle()

    def _segments_settle(self) -> None:
        """Merge neighbours until each segment holds over `_MERGE_RATIO` times its successor."""
        segments = self._segments
        while True:
            # Newest first: a push only unsettles the tail, so the scan usually stops at once.
            crowded = next(
                (
                    position
                    for position in range(len(segments) - 1, 0, -1)
                    if segments[position - 1].live <= _MERGE_RATIO * segments[position].live
                ),
                None,
            )
            if crowded is None:
                return
            merged = self._rebuilt(segments[crowded - 1], segments[crowded])
            segments[crowded - 1 : crowded + 1] = [merged]


class ExactIndex:
    """Exact-value index for cryptographic hashes (md5, sha256); a search radius must be 0."""

    def __init__(self, bits: int) -> None:
        if bits <= 0 or bits % 8:
            raise ValueError("bits must be a positive multiple of 8")
        self.bits = bits
        self._ids_by_value: dict[bytes, tuple[int, ...]] = {}
        self._value_by_id: dict[int, bytes] = {}
        self.candidates_examined = 0  # ids looked at by searches, as HammingIndex counts

    def __len__(self) -> int:
        return len(self._value_by_id)

    def add(self, ids: Sequence[int] | _Ints, hashes: Hashes) -> None:
        """Add entries; refuses (changing nothing) an id that is already live or repeated."""
        id_list = [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)]
        values = self._values(hashes)
        if len(id_list) != len(values):
            raise ValueError("ids and hashes differ in length")
        if len(set(id_list)) != len(id_list):
            raise ValueError("an id appears twice in one batch")
        if any(i in self._value_by_id for i in id_list):
            raise ValueError("an id is already in the index")
        for entry_id, value in zip(id_list, values, strict=True):
            self._value_by_id[entry_id] = value
            self._ids_by_value[value] = (*self._ids_by_value.get(value, ()), entry_id)

    def remove(self, ids: Iterable[int] | _Ints) -> int:
        """Remove the live entries among `ids`; returns how many were removed."""
        removed = 0
        for entry_id in {int(i) for i in ids}:
            value = self._value_by_id.pop(entry_id, None)
            if value is None:
                continue
            remaining = tuple(i for i in self._ids_by_value[value] if i != entry_id)
            if remaining:
                self._ids_by_value[value] = remaining
            else:
                del self._ids_by_value[value]
            removed += 1
        return removed

    def search(self, query: Query, radius: int = 0) -> list[Match]:
        """Entries whose value equals `query`, as (id, 0) by id."""
        return self.search_batch(
            query.reshape(1, -1) if isinstance(query, np.ndarray) else [query], radius
        )[0]

    def search_batch(
        self, queries: Hashes, radius: int = 0, limit: int | None = None
    ) -> list[list[Match]]:
        """`search` for each query, in order; only the first `limit` ids of each if given."""
        if radius != 0:
            raise ValueError("exact hashes match only at radius 0")
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        results = []
        for value in self._values(queries):
            found = self._ids_by_value.get(value, ())
            self.candidates_examined += len(found)
            results.append([(i, 0) for i in sorted(found)[:limit]])
        return results

    def values_get(self, ids: Iterable[int]) -> dict[int, str]:
        """The hex value of each live entry among `ids` (absent ids are left out)."""
        found = ((int(i), self._value_by_id.get(int(i))) for i in ids)
        return {entry_id: value.hex() for entry_id, value in found if value is not None}

    def memory_bytes(self) -> int:
        """Bytes held by the two dicts, their keys and their id tuples (an O(n) walk)."""
        total = sys.getsizeof(self._ids_by_value) + sys.getsizeof(self._value_by_id)
        for value, entry_ids in self._ids_by_value.items():
            total += sys.getsizeof(value) + sys.getsizeof(entry_ids)
            total += sum(sys.getsizeof(i) for i in entry_ids)
        return total

    def _values(self, hashes: Hashes) -> list[bytes]:
        return [row.tobytes() for row in _bytes_rows(hashes, self.bits // 8)]


def _bytes_rows(hashes: Hashes, width: int) -> HashArray:
    if isinstance(hashes, np.ndarray):
        if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != width:
            raise ValueError(f"hash array must be uint8 of shape (n, {width})")
        return hashes
    values = list(hashes)
    if any(not isinstance(v, str) or len(v) != width * 2 for v in values):
        raise ValueError(f"hash values must be {width * 2} hex characters")
    try:
        packed = bytes.fromhex("".join(values))
    except ValueError as error:
        raise ValueError("hash values must be hex") from error
    if len(packed) != width * len(values):
        raise ValueError("hash values must be hex")
    return np.frombuffer(packed, dtype=np.uint8).reshape(len(values), width)
