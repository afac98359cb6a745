"""The match index of this process: one index per algorithm, kept current from the log.

Loaded once from the entries table, then advanced by reading the log's new events by index:
adds and revocations are applied incrementally, never by a rebuild. `refresh()` runs before
every match, so a match sees every event committed before it started (well within the one
second promised). The index code is the client library's, the one partners run on their
mirrors.

The follower remembers the digest of the last leaf it applied and checks it on every
refresh; if the log at that index holds another leaf (a database restored or reset under a
running process), it reloads instead of matching against a history that no longer exists.
"""

from __future__ import annotations

import hashlib
import json
import threading
from array import array
from collections import defaultdict

import numpy as np

from audit.models import LogEvent, LogHead
from consortium_client import leaves
from consortium_client.hashvalues import ALGORITHMS
from consortium_client.index import ExactIndex, HammingIndex, index_for
from hashes.models import Entry

# Events applied per query while catching up; a long gap is walked in several queries.
CATCH_UP_PAGE = 5000
LOAD_CHUNK = 50_000


class MatchIndexes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.by_algorithm: dict[str, HammingIndex | ExactIndex] = {
            name: index_for(name) for name in ALGORITHMS
        }
        self.position = -1  # index of the last log event applied
        self.position_digest: bytes | None = None
        self.loaded = False

    def refresh(self) -> None:
        """Bring the indexes up to the log's committed head."""
        with self._lock:
            if not self.loaded:
                self._load()
            while self._catch_up():
                pass

    def search(self, algorithm: str, values: list[str], radius: int) -> list[list[tuple[int, int]]]:
        with self._lock:
            return self.by_algorithm[algorithm].search_batch(values, radius)

    def reset(self) -> None:
        """Forget everything; the next refresh reloads (tests, and a restored database)."""
        with self._lock:
            self._reset()

    def _load(self) -> None:
        self._reset()
        # Every index below the size read here is committed (log_append), so the active
        # entries with smaller ids are exactly the adds not yet revoked below it; events from
        # it on are replayed by _catch_up (a removal of an absent id is a no-op).
        size = LogHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
        # Packed as bytes while reading (32 bytes a PDQ hash rather than a 113-byte str) and
        # added in one batch per algorithm: the index then builds one segment, once.
        ids: dict[str, array[int]] = defaultdict(lambda: array("q"))
        packed: dict[str, bytearray] = defaultdict(bytearray)
        rows = (
            Entry.objects.filter(pk__lt=size, status=Entry.Status.ACTIVE)
            .values_list("pk", "algorithm", "value")
            .iterator(chunk_size=LOAD_CHUNK)
        )
        for entry_id, algorithm, value in rows:
            ids[algorithm].append(entry_id)
            packed[algorithm] += bytes.fromhex(value)
        for algorithm, entry_ids in ids.items():
            width = ALGORITHMS[algorithm].bits // 8
            hashes = np.frombuffer(bytes(packed.pop(algorithm)), np.uint8).reshape(-1, width)
            self.by_algorithm[algorithm].add(np.frombuffer(entry_ids, np.int64), hashes)
        self.position = size - 1
        if size:
            leaf = LogEvent.objects.values_list("leaf", flat=True).get(index=size - 1)
            self.position_digest = hashlib.sha256(bytes(leaf)).digest()
        self.loaded = True

    def _catch_up(self) -> bool:
        """Apply one page of new events; True if there may be more."""
        start = max(self.position, 0)
        rows = list(
            LogEvent.objects.filter(index__gte=start)
            .order_by("index")
            .values_list("index", "leaf")[: CATCH_UP_PAGE + 1]
        )
        if self.position >= 0:
            if not rows or hashlib.sha256(bytes(rows[0][1])).digest() != self.position_digest:
                self._load()
                return True
            rows = rows[1:]
        adds: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        for index, leaf in rows:
            event = json.loads(bytes(leaf))
            if event["type"] == leaves.ENTRY_ADDED:
                ids, values = adds[event["algorithm"]]
                ids.append(index)
                values.append(event["value"])
            elif event["type"] == leaves.ENTRY_REVOKED:
                # Adds before the revocation must be applied first: an entry may be added and
                # revoked within the same page.
                self._apply(adds)
                adds.clear()
                self.by_algorithm[event["algorithm"]].remove([event["entry"]])
        self._apply(adds)
        if rows:
            self.position = rows[-1][0]
            self.position_digest = hashlib.sha256(bytes(rows[-1][1])).digest()
        return len(rows) >= CATCH_UP_PAGE

    def _apply(self, adds: dict[str, tuple[list[int], list[str]]]) -> None:
        for algorithm, (ids, values) in adds.items():
            if ids:
                self.by_algorithm[algorithm].add(ids, values)

    def memory_bytes(self) -> dict[str, int]:
        with self._lock:
            return {name: index.memory_bytes() for name, index in self.by_algorithm.items()}


# One per process: each web worker holds its own copy, as the design's scaling section says.
match_indexes = MatchIndexes()
