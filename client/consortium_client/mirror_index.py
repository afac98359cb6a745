"""Matching against the verified mirror, with the index code the server matches with.

What matches is every `active` entry of the mirror (`consortium_client.mirror_store`) that is
neither awaiting its list's review nor quarantined: sync marks an entry `revoked` or `erased`
when its tombstone or erasure arrives, and such an entry never matches; a `pending` or
quarantined one matches again once its confirmation or restoration is synced. Per-list
distances are not in the feed, so each algorithm is searched at its default distance
(`hashvalues.ALGORITHMS`) unless the caller gives another.

Loading without replaying the feed: `index_snapshots` holds, per algorithm, the active
entries' ids and hashes as of the mirror's `cursor`, as two blobs (`ids`: int64 little-endian;
`hashes`: each value's bytes as its hex decodes, `bits / 8` a row; both in id order). A process
reads them with `np.frombuffer` and hands them to the index in one piece
(`HammingIndex.from_packed`): no row is parsed, and a 1M-entry PDQ snapshot is ~40 MB read in
one query. A snapshot older than the cursor is brought forward from `entries`: entry ids are
log indexes, so the entries added since are those with an id above the snapshot's cursor, and
the entries that ended since are those whose `ended_index` is above it, and those held back or
let go since (confirmed, quarantined, restored) those whose `held_index` is above it.

Two ways to hold an index, both exact (`consortium_client.index`):
- `tables=True` (serve-match, many queries): multi-index hashing tables, built once (about a
  second per million PDQ entries), then ~0.3 ms a query;
- `tables=False` (a process started per upload): no tables; each query scans the packed rows
  (~10 ms per million PDQ entries), and md5/sha256 are scanned at distance 0 the same way
  rather than loaded into a dict. For a handful of queries this is far cheaper than building.

Entry details (list, labels, provenance) are read from `entries` by id, only for the entries
found, and only if still `active` at that moment: a revocation synced after the index was
loaded already stops the entry matching.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from consortium_client.hashvalues import (
    ALGORITHMS,
    SINGLE_ALGORITHMS,
    HashValueError,
    algorithm_get,
    hash_value_parse,
    vpdq_value_parse,
)
from consortium_client.index import ExactIndex, HammingIndex, hashes_pack, index_for
from consortium_client.mirror_store import MirrorStoreError, meta_get, mirror_connect
from consortium_client.vpdq import FRAME_SLOTS, VideoShares, frame_rows, video_shares

Index = HammingIndex | ExactIndex
Ints = npt.NDArray[np.int64]

# Matches kept per query hash unless asked otherwise: the server's default (MATCH_DEFAULT_LIMIT).
DEFAULT_LIMIT = 10
_HEX64 = re.compile(r"[0-9a-f]{64}")


# The variants of active pdq entries, snapshotted and indexed like an algorithm of their own:
# row `entry * VARIANT_SLOTS + position` names the entry and the variant of its leaf.
VARIANTS_KEY = "pdq-variants"
VARIANT_SLOTS = 64
# A video (vpdq) is a set of frames, not one row: the mirror matches videos by their frames
# (`_video_matches`), not through a snapshot.
SNAPSHOT_NAMES: tuple[str, ...] = (*SINGLE_ALGORITHMS, VARIANTS_KEY)


def _width(name: str) -> int:
    return ALGORITHMS["pdq" if name == VARIANTS_KEY else name].bits // 8


class MirrorNotSynced(MirrorStoreError):
    """A mirror that has never been synced: nothing to match against yet."""


@dataclass(frozen=True)
class Snapshot:
    """One algorithm's active entries as of `cursor`: ids (int64, increasing) and, row for
    row, each value's bytes."""

    algorithm: str
    cursor: int
    ids: Ints
    hashes: npt.NDArray[np.uint8]

    @classmethod
    def from_blobs(cls, algorithm: str, cursor: int, ids: bytes, hashes: bytes) -> Snapshot:
        width = _width(algorithm)
        id_array = np.frombuffer(ids, dtype="<i8").astype(np.int64, copy=False)
        if len(hashes) != width * len(id_array):
            raise MirrorStoreError(f"the {algorithm} index snapshot is damaged: sizes differ")
        rows = np.frombuffer(hashes, dtype=np.uint8).reshape(len(id_array), width)
        return cls(algorithm, cursor, id_array, rows)

    def blobs(self) -> tuple[bytes, bytes]:
        return self.ids.astype("<i8").tobytes(), self.hashes.tobytes()


def mirror_cursor(connection: sqlite3.Connection) -> int:
    """The index of the last feed event the mirror applied; MirrorNotSynced before any."""
    cursor = meta_get(connection, "cursor")
    if cursor is None:
        raise MirrorNotSynced("the mirror has not been synced yet: run 'consortium sync'")
    return int(cursor)


def _snapshot_stored(connection: sqlite3.Connection, algorithm: str) -> Snapshot | None:
    row = connection.execute(
        "SELECT cursor, ids, hashes FROM index_snapshots WHERE algorithm = ?", [algorithm]
    ).fetchone()
    return None if row is None else Snapshot.from_blobs(algorithm, row[0], row[1], row[2])


# An entry that may match: active, not awaiting review, not quarantined (alias `e`).
MATCHABLE = "e.status = 'active' AND e.review IS NOT 'pending' AND e.quarantined = 0"


def _active_after(
    connection: sqlite3.Connection, algorithm: str, after: int, *, held_upto: int | None = None
) -> tuple[Ints, npt.NDArray[np.uint8]]:
    """Matchable entries of `algorithm` with an id above `after`, by id (for VARIANTS_KEY, the
    variants of such pdq entries, by row). With `held_upto`: instead, the matchable entries
    with an id up to `after` whose hold changed after it (up to `held_upto`): those let go."""
    if held_upto is None:
        where, params = "e.id > ?", [after]
    else:
        where, params = (
            "e.id <= ? AND e.held_index > ? AND e.held_index <= ?",
            [
                after,
                after,
                held_upto,
            ],
        )
    if algorithm == VARIANTS_KEY:
        rows = connection.execute(
            f"SELECT v.entry * {VARIANT_SLOTS} + v.position, v.value FROM variants v "  # noqa: S608
            f"JOIN entries e ON e.id = v.entry WHERE {MATCHABLE} AND {where} "
            "AND v.value IS NOT NULL ORDER BY v.entry, v.position",
            params,
        ).fetchall()
    else:
        rows = connection.execute(
            f"SELECT e.id, e.value FROM entries e WHERE e.algorithm = ? AND {MATCHABLE} "  # noqa: S608
            f"AND {where} ORDER BY e.id",
            [algorithm, *params],
        ).fetchall()
    width = _width(algorithm)
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    try:
        packed = bytes.fromhex("".join(row[1] for row in rows))
    except ValueError as exc:
        raise MirrorStoreError(f"the mirror holds a {algorithm} value that is not hex") from exc
    if len(packed) != width * len(rows):
        raise MirrorStoreError(f"the mirror holds a {algorithm} value of the wrong length")
    return ids, np.frombuffer(packed, dtype=np.uint8).reshape(len(rows), width)


def _ended_between(connection: sqlite3.Connection, algorithm: str, after: int, upto: int) -> Ints:
    """Ids of entries of `algorithm` added by `after` whose end, or a change of whose hold,
    came after it (up to `upto`): what an index as of `after` must drop (those let go are
    then added back by `_active_after(..., held_upto=upto)`)."""
    changed = (
        "((e.ended_index > ? AND e.ended_index <= ?) OR (e.held_index > ? AND e.held_index <= ?))"
    )
    params = [after, upto, after, upto, after]
    if algorithm == VARIANTS_KEY:
        rows = connection.execute(
            f"SELECT v.entry * {VARIANT_SLOTS} + v.position FROM variants v "  # noqa: S608
            f"JOIN entries e ON e.id = v.entry WHERE {changed} AND e.id <= ?",
            params,
        ).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    rows = connection.execute(
        f"SELECT e.id FROM entries e WHERE {changed} AND e.id <= ? AND e.algorithm = ?",  # noqa: S608
        [*params, algorithm],
    ).fetchall()
    return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))


def _snapshot_compute(
    connection: sqlite3.Connection, algorithm: str, cursor: int, stored: Snapshot | None
) -> Snapshot:
    """The snapshot as of `cursor`: `stored` brought forward, or built from `entries` when
    there is none or it is ahead of the mirror (a mirror synced again from scratch)."""
    if stored is not None and stored.cursor == cursor:
        return stored
    if stored is None or stored.cursor > cursor:
        ids, hashes = _active_after(connection, algorithm, -1)
        return Snapshot(algorithm, cursor, ids, hashes)
    ended = _ended_between(connection, algorithm, stored.cursor, cursor)
    keep = ~np.isin(stored.ids, ended)
    let_go_ids, let_go_hashes = _active_after(
        connection, algorithm, stored.cursor, held_upto=cursor
    )
    added_ids, added_hashes = _active_after(connection, algorithm, stored.cursor)
    ids = np.concatenate([stored.ids[keep], let_go_ids, added_ids])
    hashes = np.concatenate([stored.hashes[keep], let_go_hashes, added_hashes])
    if len(let_go_ids):  # entries let go are older than the snapshot: keep id order
        order = np.argsort(ids, kind="stable")
        ids, hashes = ids[order], hashes[order]
    return Snapshot(algorithm, cursor, ids, hashes)


def _snapshots_write(connection: sqlite3.Connection, snapshots: Sequence[Snapshot]) -> None:
    for snapshot in snapshots:
        ids, hashes = snapshot.blobs()
        connection.execute(
            "INSERT INTO index_snapshots (algorithm, cursor, ids, hashes) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (algorithm) DO UPDATE SET cursor = excluded.cursor, "
            "ids = excluded.ids, hashes = excluded.hashes",
            [snapshot.algorithm, snapshot.cursor, ids, hashes],
        )


def snapshots_stale(connection: sqlite3.Connection) -> list[str]:
    """Algorithms whose snapshot is missing or not as of the mirror's cursor."""
    cursor = mirror_cursor(connection)
    stored = dict(connection.execute("SELECT algorithm, cursor FROM index_snapshots").fetchall())
    return [name for name in SNAPSHOT_NAMES if stored.get(name) != cursor]


def snapshot_refresh(connection: sqlite3.Connection, *, rebuild: bool = False) -> list[str]:
    """Bring every algorithm's snapshot to the mirror's cursor; returns the algorithms written.

    In the caller's transaction if one is open (sync calls this at the end of a step, so the
    snapshot commits with the step), else in one `BEGIN IMMEDIATE` transaction of its own.
    `rebuild` builds every snapshot from `entries` rather than bringing the stored one forward.
    """
    own = not connection.in_transaction
    if own:
        connection.execute("BEGIN IMMEDIATE")
    try:
        cursor = mirror_cursor(connection)
        stale = list(SNAPSHOT_NAMES) if rebuild else snapshots_stale(connection)
        snapshots = [
            _snapshot_compute(
                connection, name, cursor, None if rebuild else _snapshot_stored(connection, name)
            )
            for name in stale
        ]
        _snapshots_write(connection, snapshots)
        if own:
            connection.execute("COMMIT")
    except BaseException:
        if own:
            connection.execute("ROLLBACK")
        raise
    return stale


@dataclass(frozen=True)
class MirrorMatch:
    """An active entry of the mirror within reach of a query, with what the feed said of it."""

    entry: int
    hash_list: str
    algorithm: str
    distance: int
    labels: list[str]
    quality: int | None
    partner: str
    signing_key: str
    submission: int
    envelope_sha256: str
    transform: str | None = None  # which dihedral transformation of the query matched
    variant: str | None = None  # the entry's variant that matched; None for its own value
    # For a video (vpdq): the shares of frames matched each way (consortium_client.vpdq).
    query_share: float | None = None
    stored_share: float | None = None

    @property
    def rule(self) -> str:
        """Which rule found the match, named as the server's match API names it: the
        algorithm for the hash as given, `pdq-variant` through a variant, `pdq-canonical`
        for the query image without its plain borders, `pdq-dihedral` for a turned one."""
        if self.algorithm != "pdq":
            return self.algorithm
        if self.transform is not None and self.transform.startswith("canonical"):
            return "pdq-canonical"
        if self.transform is not None:
            return "pdq-dihedral"
        return "pdq-variant" if self.variant is not None else "pdq"

    @property
    def log_index(self) -> int:
        # An entry's id is the log index of the event that added it.
        return self.entry

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "entry": self.entry,
            "list": self.hash_list,
            "algorithm": self.algorithm,
            "distance": self.distance,
            "labels": self.labels,
            "quality": self.quality,
            "partner": self.partner,
            "signing_key": self.signing_key,
            "submission": self.submission,
            "envelope_sha256": self.envelope_sha256,
            "log_index": self.log_index,
        }
        if self.transform is not None:
            found["transform"] = self.transform
        found["variant"] = self.variant
        found["rule"] = self.rule
        if self.query_share is not None:
            found["query_share"] = self.query_share
            found["stored_share"] = self.stored_share
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MirrorMatch:
        return cls(
            entry=int(data["entry"]),
            hash_list=str(data["list"]),
            algorithm=str(data["algorithm"]),
            distance=int(data["distance"]),
            labels=[str(label) for label in data["labels"]],
            quality=None if data.get("quality") is None else int(data["quality"]),
            partner=str(data["partner"]),
            signing_key=str(data["signing_key"]),
            submission=int(data["submission"]),
            envelope_sha256=str(data["envelope_sha256"]),
            transform=data.get("transform"),
            variant=data.get("variant"),
            query_share=None if data.get("query_share") is None else float(data["query_share"]),
            stored_share=None if data.get("stored_share") is None else float(data["stored_share"]),
        )


@dataclass
class QueryResult:
    """The nearest matches of one query hash (by distance, then entry id)."""

    algorithm: str
    value: str
    matches: list[MirrorMatch] = field(default_factory=list)
    truncated: bool = False  # more than `limit` entries were within reach


def radii_resolve(radii: Mapping[str, int] | None) -> dict[str, int]:
    """Each algorithm's search radius: its default unless `radii` names another. Exact
    algorithms match only at 0; a radius beyond a hash's width is refused."""
    resolved = {name: spec.default_distance for name, spec in ALGORITHMS.items()}
    for name, radius in (radii or {}).items():
        spec = algorithm_get(name)
        if not spec.perceptual and radius != 0:
            raise HashValueError(f"{name} is an exact hash: it matches only at distance 0")
        if not 0 <= radius <= spec.bits:
            raise HashValueError(f"a {name} radius is between 0 and {spec.bits}")
        resolved[name] = radius
    return resolved


def _envelope_digest(envelope: str) -> str:
    # The mirror keeps the envelope's SHA-256 as the leaf names it; a mirror that kept the
    # envelope itself is shown by its digest, never by megabytes of envelope per match.
    if _HEX64.fullmatch(envelope):
        return envelope
    return hashlib.sha256(envelope.encode()).hexdigest()


def _file_identity(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


class MirrorMatcher:
    """The mirror's active entries, one index per algorithm, as of `cursor`.

    Thread-safe: searches and `advance` take a lock (the index classes are not thread-safe
    against changes), and each thread reads entry details through its own connection.
    """

    def __init__(
        self, path: Path, cursor: int, indexes: dict[str, Index], *, tables: bool, origin: str
    ) -> None:
        self.path = path
        self.cursor = cursor
        self.indexes = indexes
        self.tables = tables
        self.origin = origin
        self.identity = _file_identity(path)
        self._lock = threading.Lock()
        self._local = threading.local()
        # The frames of the mirror's videos, by FRAME_SLOTS row, read from the file at the
        # first video query and then as sync adds videos (ids up to `_frames_upto` are in).
        # A video that ends or is held stays in: each video a frame reaches is read again
        # from the file before it is judged, so the index only has to hold every candidate.
        self._frames: Index = index_for("pdq")
        self._frames_upto = -1

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, tables: bool = True) -> MirrorMatcher:
        """Load the mirror at `path` from its snapshots (brought forward first if stale, and
        saved again when the file can be written, so the next process need not).

        Raises MirrorStoreError (MirrorNotSynced for a mirror never synced).
        """
        path = Path(path)
        connection = mirror_connect(path, create=False)
        try:
            connection.execute("BEGIN")  # one read transaction: snapshots and cursor agree
            try:
                cursor = mirror_cursor(connection)
                origin = meta_get(connection, "origin") or ""
                stale: list[Snapshot] = []
                snapshots = []
                for name in SNAPSHOT_NAMES:
                    stored = _snapshot_stored(connection, name)
                    snapshot = _snapshot_compute(connection, name, cursor, stored)
                    if snapshot is not stored:
                        stale.append(snapshot)
                    snapshots.append(snapshot)
            finally:
                connection.execute("COMMIT")
            if stale:
                _snapshots_save(connection, stale)
        finally:
            connection.close()
        indexes = {snapshot.algorithm: _index_build(snapshot, tables) for snapshot in snapshots}
        return cls(path, cursor, indexes, tables=tables, origin=origin)

    def __len__(self) -> int:
        """Entries indexed (variants are rows of their entries, not entries)."""
        return sum(len(index) for name, index in self.indexes.items() if name != VARIANTS_KEY)

    def search(
        self,
        queries: Sequence[tuple[str, str]],
        *,
        radii: Mapping[str, int] | None = None,
        limit: int = DEFAULT_LIMIT,
        variants: bool = True,
    ) -> list[QueryResult]:
        """For each (algorithm, value), the nearest `limit` active entries within the
        algorithm's radius, by distance then entry id; `truncated` when more were in reach.
        A pdq query also searches the entries' variants (unless `variants` is false): an
        entry reached through several rows counts once, at its nearest (its own value first
        on a tie), and the match names the variant.

        Raises HashValueError for an unknown algorithm, a malformed value or a bad radius.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        reach = radii_resolve(radii)
        parsed = [(algorithm, hash_value_parse(algorithm, value)) for algorithm, value in queries]
        results = [QueryResult(algorithm, value) for algorithm, value in parsed]
        # Per query: (distance, entry, is a variant, row id), every row within reach.
        found: list[list[tuple[int, int, int, int]]] = [[] for _ in parsed]
        by_algorithm: dict[str, list[int]] = {}
        for position, (algorithm, _) in enumerate(parsed):
            by_algorithm.setdefault(algorithm, []).append(position)
        shares: dict[tuple[int, int], VideoShares] = {}  # (query, entry) -> a video's shares
        with self._lock:
            for algorithm, positions in by_algorithm.items():
                values = [parsed[p][1] for p in positions]
                if ALGORITHMS[algorithm].frames:
                    for position, value in zip(positions, values, strict=True):
                        for entry_id, share in self._videos_matching(value, reach[algorithm]):
                            found[position].append((share.distance, entry_id, 0, entry_id))
                            shares[(position, entry_id)] = share
                    continue
                index = self.indexes[algorithm]
                if len(index):
                    # One more than asked for, to tell a cut answer from a complete one.
                    hits = index.search_batch(values, reach[algorithm], limit + 1)
                    for position, matches in zip(positions, hits, strict=True):
                        found[position] += [(d, entry_id, 0, entry_id) for entry_id, d in matches]
                rows = self.indexes.get(VARIANTS_KEY)
                if algorithm == "pdq" and variants and rows is not None and len(rows):
                    # Enough rows for limit + 1 entries even if each is reached by all its rows.
                    hits = rows.search_batch(values, reach[algorithm], (limit + 1) * 33)
                    for position, matches in zip(positions, hits, strict=True):
                        found[position] += [(d, row // VARIANT_SLOTS, 1, row) for row, d in matches]
        nearest: list[list[tuple[int, int, int, int]]] = []
        for result, rows_found in zip(results, found, strict=True):
            rows_found.sort()
            seen: set[int] = set()
            kept = []
            for row in rows_found:
                if row[1] not in seen:
                    seen.add(row[1])
                    kept.append(row)
            result.truncated = len(kept) > limit
            nearest.append(kept[:limit])
        wanted = sorted({row[1] for kept in nearest for row in kept})
        details = self._details(wanted)
        names = self._variant_names([row[3] for kept in nearest for row in kept if row[2]])
        for position, (result, kept) in enumerate(zip(results, nearest, strict=True)):
            result.matches = [
                _with_distance(
                    details[entry_id],
                    distance,
                    names.get(row) if is_variant else None,
                    shares.get((position, entry_id)),
                )
                for distance, entry_id, is_variant, row in kept
                if entry_id in details and details[entry_id].algorithm == result.algorithm
            ]
        return results

    def _videos_matching(self, value: str, frame_distance: int) -> list[tuple[int, VideoShares]]:
        """The mirror's matchable videos that match the vpdq `value` under HMA's rule with its
        defaults (the feed does not carry a list's own settings), at `frame_distance`.

        Each query frame is looked up in the frame index; the videos some frame reaches are
        read from the file (so that a revocation or hold synced since counts at once) and
        judged frame by frame, as a scan of every video would judge them: a video with no
        frame within `frame_distance` of the query's shares nothing and cannot match. Runs
        under the matcher's lock."""
        reader = self._reader()
        self._frames_catch_up(reader)
        query = vpdq_value_parse(value)
        if not len(self._frames):
            return []
        # Every row in reach: a mirror answers exactly, and the partner's own machine pays.
        hits = self._frames.search_batch(
            [frame.pdq for frame in query], frame_distance, len(self._frames)
        )
        reached = sorted({row // FRAME_SLOTS for matches in hits for row, _ in matches})
        if not reached:
            return []
        rows = reader.execute(
            f"SELECT e.id, e.value FROM entries e WHERE e.algorithm = 'vpdq' AND {MATCHABLE} "  # noqa: S608
            "AND e.value IS NOT NULL AND e.id <= ? "
            "AND e.id IN (SELECT value FROM json_each(?)) ORDER BY e.id",
            [self.cursor, json.dumps(reached)],
        )
        found = []
        for entry_id, stored in rows:
            share = video_shares(query, vpdq_value_parse(stored), frame_distance=frame_distance)
            if share.matches():
                found.append((int(entry_id), share))
        return found

    def _frames_catch_up(self, reader: sqlite3.Connection) -> None:
        """Add the frames of the videos synced since the last video query (up to `cursor`).
        Revoked and erased videos never match again and are left out; held ones may."""
        rows = reader.execute(
            "SELECT id, value FROM entries WHERE algorithm = 'vpdq' AND status = 'active' "
            "AND value IS NOT NULL AND id > ? AND id <= ? ORDER BY id",
            [self._frames_upto, self.cursor],
        ).fetchall()
        ids: list[int] = []
        hashes: list[str] = []
        for entry_id, stored in rows:
            frames = vpdq_value_parse(stored)
            ids += frame_rows(int(entry_id), len(frames))
            hashes += [frame.pdq for frame in frames]
        if ids and len(self._frames):
            self._frames.add(ids, hashes)
        elif ids:
            # The first read, as the snapshots are built: without tables (a process that
            # answers a few queries) every search scans the packed frames instead.
            self._frames = HammingIndex.from_packed(
                np.array(ids, dtype=np.int64),
                hashes_pack(hashes, 256),
                bits=256,
                radius_hint=ALGORITHMS["pdq"].default_distance,
                tables=self.tables,
            )
        self._frames_upto = max(self._frames_upto, self.cursor)

    def _variant_names(self, rows: list[int]) -> dict[int, str]:
        """Row id -> the variant's name, for the variant rows `rows`."""
        if not rows:
            return {}
        found = (
            self._reader()
            .execute(
                f"SELECT entry * {VARIANT_SLOTS} + position, name FROM variants "  # noqa: S608
                f"WHERE entry * {VARIANT_SLOTS} + position IN (SELECT value FROM json_each(?))",
                [json.dumps(rows)],
            )
            .fetchall()
        )
        return dict(found)

    def _details(self, ids: list[int]) -> dict[int, MirrorMatch]:
        """The still-active entries among `ids`, with what a match shows of them."""
        if not ids:
            return {}
        connection = self._reader()
        details: dict[int, MirrorMatch] = {}
        # One bound parameter however many ids: a JSON array, read by json_each.
        rows = connection.execute(
            "SELECT id, list, algorithm, labels, quality, partner, key, submission, envelope "  # noqa: S608
            f"FROM entries e WHERE {MATCHABLE} AND id IN (SELECT value FROM json_each(?))",
            [json.dumps(ids)],
        ).fetchall()
        for row in rows:
            details[row[0]] = MirrorMatch(
                entry=row[0],
                hash_list=row[1],
                algorithm=row[2],
                distance=0,
                labels=[str(label) for label in json.loads(row[3])],
                quality=row[4],
                partner=row[5],
                signing_key=row[6],
                submission=row[7],
                envelope_sha256=_envelope_digest(row[8]),
            )
        return details

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Read-only: a matcher never writes the mirror while answering.
            connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            self._local.connection = connection
        return connection

    def cursor_read(self) -> int:
        """The mirror file's cursor now (one indexed read)."""
        return mirror_cursor(self._reader())

    def changed_file(self) -> bool:
        """Whether `path` is now another file, or another log's mirror (resynced or replaced):
        then only a fresh `load` is right."""
        try:
            if _file_identity(self.path) != self.identity:
                return True
        except OSError:
            return True
        return (meta_get(self._reader(), "origin") or "") != self.origin

    def advance(self) -> bool:
        """Apply what sync changed since `cursor` to the indexes in place (adds and ends, no
        rebuild); returns whether the cursor moved. Raises MirrorStoreError if the mirror's
        cursor went back: only a fresh `load` is right then."""
        connection = self._reader()
        connection.execute("BEGIN")
        try:
            cursor = mirror_cursor(connection)
            if cursor == self.cursor:
                return False
            if cursor < self.cursor:
                raise MirrorStoreError("the mirror's cursor went back: reload it")
            changes = [
                (
                    name,
                    _ended_between(connection, name, self.cursor, cursor),
                    *_active_after(connection, name, self.cursor),
                )
                for name in SNAPSHOT_NAMES
            ] + [
                (
                    name,
                    np.empty(0, dtype=np.int64),
                    *_active_after(connection, name, self.cursor, held_upto=cursor),
                )
                for name in SNAPSHOT_NAMES
            ]
        finally:
            connection.execute("COMMIT")
        with self._lock:
            for name, ended, added_ids, added_hashes in changes:
                index = self.indexes[name]
                if len(ended):
                    index.remove(ended)
                if len(added_ids):
                    index.add(added_ids, added_hashes)
            self.cursor = cursor
        return True


def _with_distance(
    match: MirrorMatch,
    distance: int,
    variant: str | None = None,
    shares: VideoShares | None = None,
) -> MirrorMatch:
    changes: dict[str, Any] = {"distance": distance, "variant": variant}
    if shares is not None:
        changes.update(query_share=shares.query_share, stored_share=shares.stored_share)
    return MirrorMatch(**{**match.__dict__, **changes})


def _index_build(snapshot: Snapshot, tables: bool) -> Index:
    spec = ALGORITHMS["pdq" if snapshot.algorithm == VARIANTS_KEY else snapshot.algorithm]
    if not spec.perceptual and tables:
        index = ExactIndex(spec.bits)
        index.add(snapshot.ids, snapshot.hashes)
        return index
    # Without tables an exact hash is a Hamming index searched at distance 0: one scan of
    # the packed rows, where filling a dict would cost more than every query of the process.
    return HammingIndex.from_packed(
        snapshot.ids,
        hashes_pack(snapshot.hashes, spec.bits),
        bits=spec.bits,
        radius_hint=spec.default_distance,
        tables=tables,
    )


def _snapshots_save(connection: sqlite3.Connection, snapshots: Sequence[Snapshot]) -> None:
    """Save snapshots brought forward while loading, if the mirror is unchanged and writable;
    a reader never waits on sync for it (sync refreshes them itself)."""
    try:
        connection.execute("PRAGMA busy_timeout = 0")
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return  # locked by a sync, or a read-only file
    try:
        if mirror_cursor(connection) == snapshots[0].cursor:
            _snapshots_write(connection, snapshots)
        connection.execute("COMMIT")
    except sqlite3.Error:
        connection.execute("ROLLBACK")
