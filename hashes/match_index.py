"""The match index of this process: one index per list and algorithm, built from the log.

What is indexed is decided by the log: an entry_added leaf gives an entry's list, algorithm
and a salted commitment to its value; an entry_revoked or entry_erased leaf ends it. Leaves
hold no values (so that a value can be erased without touching the log), so the value and
salt come from the entry's row and are indexed only if they open the leaf's commitment. The
log is append-only in the database, the entries table is not, so a row changed behind the
application's back (a revoked entry flipped back to active, a value rewritten) cannot change
what the index finds: a rewritten value does not open the commitment and is left out (and
logged, without the value), and an erased entry has no value to index. The matcher also
checks each row it then loads against the value the index holds (`hashes.matching`).

One index per list, so that a search reads only the lists the partner may see, each at that
list's own radius: the work a query does, and so its timing, never depends on entries in
lists the caller cannot see.

Loaded once, then advanced by reading the log's new events by index: adds and revocations
are applied incrementally, never by a rebuild. `refresh()` runs before every match, so a match
sees every event committed before it started. The index code is the client library's, the one
partners run on their mirrors.

The follower remembers the digest of the last leaf it applied and checks it on every refresh;
if the log at that index holds another leaf (a database restored or reset under a running
process), it reloads instead of matching against a history that no longer exists.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np

from audit.selectors import log_entry_events_below, log_events_from, log_leaf, log_size
from consortium_client import leaves
from consortium_client.commitments import commitment_opens
from consortium_client.hashvalues import ALGORITHMS
from consortium_client.index import ExactIndex, HammingIndex, index_for
from hashes.models import Entry

logger = logging.getLogger(__name__)

# Events that end an entry: it stops matching either way.
ENDING_TYPES = frozenset({leaves.ENTRY_REVOKED, leaves.ENTRY_ERASED})
# Events applied per query while catching up; a long gap is walked in several queries.
CATCH_UP_PAGE = 5000
LOAD_CHUNK = 50_000

Index = HammingIndex | ExactIndex
Key = tuple[int, str]  # (list id, algorithm)


@dataclass(frozen=True)
class IndexHit:
    """An entry the index found: its list, its distance, and its value as the log has it."""

    entry_id: int
    distance: int
    list_id: int
    algorithm: str
    value: str


@dataclass
class IndexResult:
    hits: list[IndexHit] = field(default_factory=list)
    truncated: bool = False  # more than `limit` entries were within reach


class LeafFields(msgspec.Struct):
    """The fields of a leaf that the index reads. msgspec parses the whole leaf as JSON (and
    refuses one that is not) but builds nothing for the other fields: at a million leaves on
    load, it takes a tenth of the time of json.loads."""

    v: int
    type: str
    algorithm: str | None = None
    commitment: str | None = None
    entry: int | None = None


_leaf_decode = msgspec.json.Decoder(LeafFields).decode


def leaf_fields(leaf: str | bytes) -> LeafFields:
    fields = _leaf_decode(leaf)
    if fields.v != leaves.LEAF_VERSION:
        raise ValueError(f"not a version {leaves.LEAF_VERSION} leaf")
    return fields


class LoggedEntry(NamedTuple):
    """An added entry as the index holds it: the log's list and algorithm, and a value that
    opens the log's commitment. (A tuple: one is made per entry on load, and a tuple is
    made in half a dataclass's time.)"""

    entry_id: int
    list_id: int
    algorithm: str
    value: str


# An entry's row as the index reads it: (id, value, salt); value and salt NULL once erased.
Opening = tuple[int, str | None, str | None]


def entry_added_read(
    index: int, list_id: int | None, event: LeafFields, opening: Opening | None
) -> LoggedEntry | None:
    """The entry an entry_added event adds, with the value of its row, or None if there is
    nothing to index: the entry was erased, or its row's value does not open the leaf's
    commitment (changed outside the application: logged, never indexed). The one place
    that decides where an indexed value comes from."""
    if list_id is None or event.algorithm is None or event.commitment is None:
        raise ValueError(f"log event {index} adds an entry without a list, algorithm or commitment")
    _, value, salt = (index, None, None) if opening is None else opening
    if value is None or salt is None:
        return None  # erased (its entry_erased event follows), or a row deleted
    if not commitment_opens(event.algorithm, value, salt, event.commitment):
        # The values stay out of the server's log: they may be erased later, its lines may not.
        logger.error("entry %s does not open its leaf's commitment; not indexed", index)
        return None
    return LoggedEntry(index, list_id, event.algorithm, value)


def _openings_from(*, start: int, below: int, chunk: int) -> Iterator[Opening]:
    """The rows of entries with id in [start, below) that still hold a value, by id."""
    return iter(
        Entry.objects.filter(pk__gte=start, pk__lt=below, value__isnull=False)
        .order_by("pk")
        .values_list("pk", "value", "salt")
        .iterator(chunk_size=chunk)
    )


def _openings_of(ids: list[int]) -> dict[int, Opening]:
    rows = Entry.objects.filter(pk__in=ids, value__isnull=False).values_list("pk", "value", "salt")
    return {row[0]: row for row in rows}


class MatchIndexes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.by_list: dict[int, dict[str, Index]] = defaultdict(dict)
        self.position = -1  # index of the last log event applied
        self.position_digest: bytes | None = None
        self.loaded = False
        # Rows whose distance searches computed (see HammingIndex.candidates_examined).
        self.candidates_examined = 0

    def refresh(self) -> None:
        """Bring the indexes up to the log's committed head."""
        with self._lock:
            if not self.loaded:
                self._load()
            while self._catch_up():
                pass

    def search(
        self, *, algorithm: str, values: list[str], radii: dict[int, int], limit: int
    ) -> list[IndexResult]:
        """For each value, the nearest `limit` entries (by distance, then id) of the lists in
        `radii`, each searched at its own radius; lists not named are never read."""
        with self._lock:
            found: list[list[tuple[int, int, int]]] = [[] for _ in values]  # (dist, id, list)
            for list_id, radius in sorted(radii.items()):
                index = self.by_list.get(list_id, {}).get(algorithm)
                if index is None or not len(index):
                    continue
                before = index.candidates_examined
                # One more than asked for, to tell a cut answer from a complete one.
                for hits, matches in zip(
                    found, index.search_batch(values, radius, limit + 1), strict=True
                ):
                    hits.extend((distance, entry_id, list_id) for entry_id, distance in matches)
                self.candidates_examined += index.candidates_examined - before
            results = []
            for hits in found:
                hits.sort()
                results.append(IndexResult(truncated=len(hits) > limit))
                kept = hits[:limit]
                logged = self._values(algorithm, kept)
                results[-1].hits = [
                    IndexHit(entry_id, distance, list_id, algorithm, logged[entry_id])
                    for distance, entry_id, list_id in kept
                ]
            return results

    def _values(self, algorithm: str, hits: Iterable[tuple[int, int, int]]) -> dict[int, str]:
        by_list: dict[int, list[int]] = defaultdict(list)
        for _, entry_id, list_id in hits:
            by_list[list_id].append(entry_id)
        values: dict[int, str] = {}
        for list_id, ids in by_list.items():
            values.update(self.by_list[list_id][algorithm].values_get(ids))
        return values

    def reset(self) -> None:
        """Forget everything; the next refresh reloads (tests, and a restored database)."""
        with self._lock:
            self._reset()

    def _index(self, list_id: int, algorithm: str) -> Index:
        indexes = self.by_list[list_id]
        if algorithm not in indexes:
            indexes[algorithm] = index_for(algorithm)
        return indexes[algorithm]

    def _load(self) -> None:
        self._reset()
        # Every index below the size read here is committed (log_append); events from it on
        # are replayed by _catch_up.
        size = log_size()
        # Packed as bytes while reading (32 bytes a PDQ hash rather than a 113-byte str) and
        # added in one batch per index: each then builds one segment, once. An entry is
        # always added before it is revoked, so the revoked ids are dropped at the end.
        ids: dict[Key, array[int]] = defaultdict(lambda: array("q"))
        packed: dict[Key, bytearray] = defaultdict(bytearray)
        revoked: array[int] = array("q")
        # The rows are read beside the log, both in id order (an entry's id is its add's
        # index), and joined as they stream: memory holds one chunk of each, not a map.
        openings = _openings_from(start=0, below=size, chunk=LOAD_CHUNK)
        pending = next(openings, None)
        for index, list_id, leaf in log_entry_events_below(size=size, chunk=LOAD_CHUNK):
            event = leaf_fields(leaf)
            if event.type == leaves.ENTRY_ADDED:
                while pending is not None and pending[0] < index:
                    pending = next(openings, None)
                opening = pending if pending is not None and pending[0] == index else None
                entry = entry_added_read(index, list_id, event, opening)
                if entry is None:
                    continue
                key = (entry.list_id, entry.algorithm)
                ids[key].append(entry.entry_id)
                packed[key] += bytes.fromhex(entry.value)
            elif event.entry is not None:
                revoked.append(event.entry)  # revoked or erased: ended either way
            else:
                raise ValueError(f"log event {index} ends no entry")
        ended = np.frombuffer(revoked, np.int64)
        for (list_id, algorithm), entry_ids in ids.items():
            width = ALGORITHMS[algorithm].bits // 8
            hashes = np.frombuffer(bytes(packed.pop((list_id, algorithm))), np.uint8)
            id_array = np.frombuffer(entry_ids, np.int64)
            live = ~np.isin(id_array, ended)
            self._index(list_id, algorithm).add(id_array[live], hashes.reshape(-1, width)[live])
        self.position = size - 1
        if size:
            leaf_bytes = log_leaf(index=size - 1)
            self.position_digest = None if leaf_bytes is None else _digest(leaf_bytes)
        self.loaded = True

    def _catch_up(self) -> bool:
        """Apply one page of new events; True if there may be more."""
        rows = log_events_from(start=max(self.position, 0), limit=CATCH_UP_PAGE + 1)
        if self.position >= 0:
            if not rows or _digest(rows[0][2]) != self.position_digest:
                self._load()
                return True
            rows = rows[1:]
        adds: dict[Key, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        events = [(index, list_id, leaf_fields(leaf)) for index, list_id, leaf in rows]
        openings = _openings_of(
            [index for index, _, event in events if event.type == leaves.ENTRY_ADDED]
        )
        for index, list_id, event in events:
            if event.type == leaves.ENTRY_ADDED:
                entry = entry_added_read(index, list_id, event, openings.get(index))
                if entry is None:
                    continue
                entry_ids, values = adds[(entry.list_id, entry.algorithm)]
                entry_ids.append(entry.entry_id)
                values.append(entry.value)
            elif event.type in ENDING_TYPES:
                if list_id is None or event.entry is None:
                    raise ValueError(f"log event {index} ends no entry of a list")
                # Adds before the revocation must be applied first: an entry may be added and
                # revoked within the same page.
                self._apply(adds)
                adds.clear()
                # Neither a tombstone nor an erasure names the algorithm (the entry's add
                # does); every index of the list drops the id, absent ids being ignored.
                for index_of_list in self.by_list.get(list_id, {}).values():
                    index_of_list.remove([event.entry])
        self._apply(adds)
        if rows:
            self.position = rows[-1][0]
            self.position_digest = _digest(rows[-1][2])
        return len(rows) >= CATCH_UP_PAGE

    def _apply(self, adds: dict[Key, tuple[list[int], list[str]]]) -> None:
        for (list_id, algorithm), (ids, values) in adds.items():
            if ids:
                self._index(list_id, algorithm).add(ids, values)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held per algorithm, summed over the lists."""
        with self._lock:
            totals = dict.fromkeys(ALGORITHMS, 0)
            for indexes in self.by_list.values():
                for algorithm, index in indexes.items():
                    totals[algorithm] += index.memory_bytes()
            return totals


def _digest(leaf: bytes) -> bytes:
    return hashlib.sha256(leaf).digest()


# One per process: each web worker holds its own copy, as the design's scaling section says.
match_indexes = MatchIndexes()
