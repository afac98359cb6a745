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

Review and quarantine hold an entry back without ending it. An entry_added leaf with
`"review": "pending"` (its list required review) goes into the list's pending index, searched
only when a match asks for pending entries, until its entry_confirmed event moves it into the
list's index. An entry_quarantined event takes the entry (and its variants) out of whichever
index held it and parks its values here, so that its entry_quarantine_resolved event
(`resolution` `restored`) puts it back without reading a row; a quarantined entry never
matches, pending asked for or not. A video's frames are held the same way: in its list's
frame index, its pending frame index, or parked with it.

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
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np

from audit.selectors import log_entry_events_below, log_events_from, log_leaf, log_size
from consortium_client import leaves
from consortium_client.commitments import commitment_opens
from consortium_client.hashvalues import ALGORITHMS, vpdq_value_parse
from consortium_client.index import ExactIndex, HammingIndex, index_for
from consortium_client.variants import MAX_VARIANTS
from consortium_client.vpdq import FRAME_SLOTS, VideoShares, frame_rows
from hashes.models import Entry, EntryVariant

logger = logging.getLogger(__name__)

# Events that end an entry: it stops matching either way.
ENDING_TYPES = frozenset({leaves.ENTRY_REVOKED, leaves.ENTRY_ERASED})
HOLD_TYPES = frozenset(leaves.ENTRY_HOLD_TYPES)
# Events applied per query while catching up; a long gap is walked in several queries.
CATCH_UP_PAGE = 5000
LOAD_CHUNK = 50_000

Index = HammingIndex | ExactIndex
Key = tuple[int, str]  # (list id, algorithm)
# A variant's row in its list's variant index: entry id x VARIANT_SLOTS + its position, so
# that the row names its entry and the leaf's variant without a table beside the index.
VARIANT_SLOTS = 64
assert MAX_VARIANTS <= VARIANT_SLOTS  # noqa: S101 - a position must fit in its slot
# Stored frames kept per query frame and list: a frame that hundreds of videos share (a
# studio's logo) cannot make one query cost more; the answer says `truncated` when cut.
FRAME_HITS = 1000


@dataclass(frozen=True)
class IndexHit:
    """An entry the index found: its list, its distance, and its value as the log has it."""

    entry_id: int
    distance: int
    list_id: int
    algorithm: str
    # Of the row that matched: the entry's own value or its variant's; for a video, the
    # SHA-256 (hex) of its value, which the index keeps instead of the value.
    value: str
    variant: str | None = None  # the variant's name, or None for the entry's own value
    pending: bool = False  # found in the list's pending index (awaiting review)
    shares: VideoShares | None = None  # for a video: its frames matched each way


class VideoRule(NamedTuple):
    """A list's vPDQ rule (HashList's video settings; consortium_client.vpdq)."""

    frame_distance: int
    quality_floor: int
    query_share: int
    stored_share: int


@dataclass(frozen=True)
class StoredVideo:
    """What the index keeps of a video entry beside its frames' hashes: their qualities in
    the value's order (a frame's place is its row's), and the SHA-256 of the value."""

    qualities: np.ndarray
    digest: str


def value_digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class IndexResult:
    hits: list[IndexHit] = field(default_factory=list)
    truncated: bool = False  # more than `limit` entries were within reach


class VariantLeaf(msgspec.Struct):
    name: str
    commitment: str


class LeafFields(msgspec.Struct):
    """The fields of a leaf that the index reads. msgspec parses the whole leaf as JSON (and
    refuses one that is not) but builds nothing for the other fields: at a million leaves on
    load, it takes a tenth of the time of json.loads."""

    v: int
    type: str
    algorithm: str | None = None
    commitment: str | None = None
    entry: int | None = None
    variants: list[VariantLeaf] | None = None
    review: str | None = None  # entry_added: "pending" when its list required review
    resolution: str | None = None  # entry_quarantine_resolved: "restored" or "revoked"


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


# A variant's row as the index reads it: (entry id, position, value, salt); only rows that
# hold a value are read, but the types say what the column may hold.
VariantOpening = tuple[int, int, str | None, str | None]


def variants_added_read(
    index: int, event: LeafFields, openings: Iterable[VariantOpening]
) -> list[tuple[int, str, str]]:
    """(position, name, value) of each variant of the entry_added event `index` whose row
    opens the leaf's commitment; rows that do not are logged and left out, like an entry's."""
    signed = event.variants or []
    found = []
    for _, position, value, salt in openings:
        if value is None or salt is None:
            continue  # erased with its entry
        if position >= len(signed) or not commitment_opens(
            "pdq", value, salt, signed[position].commitment
        ):
            logger.error("a variant of entry %s does not open its leaf; not indexed", index)
            continue
        found.append((position, signed[position].name, value))
    return found


def _variant_openings_from(*, start: int, below: int, chunk: int) -> Iterator[VariantOpening]:
    """Variant rows of entries with id in [start, below) that still hold a value, in order."""
    return iter(
        EntryVariant.objects.filter(entry_id__gte=start, entry_id__lt=below, value__isnull=False)
        .order_by("entry_id", "position")
        .values_list("entry_id", "position", "value", "salt")
        .iterator(chunk_size=chunk)
    )


def _variant_openings_of(ids: list[int]) -> dict[int, list[VariantOpening]]:
    rows = (
        EntryVariant.objects.filter(entry_id__in=ids, value__isnull=False)
        .order_by("entry_id", "position")
        .values_list("entry_id", "position", "value", "salt")
    )
    found: dict[int, list[VariantOpening]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(row)
    return found


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


# Where a search found a row: the entry's own value or a variant, in the list's index or its
# pending index (bit 0: a variant; bit 1: pending). Own value sorts first on a tie.
MAIN, VARIANT, PENDING, PENDING_VARIANT = 0, 1, 2, 3


@dataclass
class Parked:
    """A quarantined entry's values, held out of every index until it is restored."""

    list_id: int
    algorithm: str
    value: str  # for a video, its digest (its frames are in `frames`)
    pending: bool
    variants: list[tuple[int, str]]  # (row id, value)
    frames: list[tuple[int, str]] = field(default_factory=list)  # a video's (row id, PDQ)
    video: StoredVideo | None = None


class MatchIndexes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.by_list: dict[int, dict[str, Index]] = defaultdict(dict)
        # Per list, its entries' PDQ variants, by VARIANT_SLOTS row id; and per entry with
        # variants, their names by position (a revocation drops them all).
        self.variants_by_list: dict[int, Index] = {}
        self.variant_names: dict[int, tuple[str, ...]] = {}
        # Entries awaiting review, per list and algorithm (and their variants), searched only
        # when asked; quarantined entries, out of every index until restored.
        self.pending_by_list: dict[int, dict[str, Index]] = defaultdict(dict)
        self.pending_variants_by_list: dict[int, Index] = {}
        self.parked: dict[int, Parked] = {}
        # Per list, its videos' frames (PDQ), by FRAME_SLOTS row id, and those of its videos
        # awaiting review; per indexed video entry (either), what else the rule needs.
        self.frames_by_list: dict[int, Index] = {}
        self.pending_frames_by_list: dict[int, Index] = {}
        self.videos: dict[int, StoredVideo] = {}
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
        self,
        *,
        algorithm: str,
        values: list[str],
        radii: dict[int, int],
        limit: int,
        variant_lists: Collection[int] = (),
        include_pending: bool = False,
    ) -> list[IndexResult]:
        """For each value, the nearest `limit` entries (by distance, then id) of the lists in
        `radii`, each searched at its own radius; lists not named are never read. For pdq,
        the variants of the lists in `variant_lists` are searched too: an entry reached
        through several rows (its value, its variants) counts once, at its nearest row (its
        own value first on a tie). Entries awaiting review are searched only if
        `include_pending`; quarantined entries never."""
        with self._lock:
            # (distance, id, kind, list, row id)
            found: list[list[tuple[int, int, int, int, int]]] = [[] for _ in values]
            # Enough variant rows for limit + 1 entries even if each is reached by all its rows.
            variant_rows = (limit + 1) * (MAX_VARIANTS + 1)
            sources = [(self.by_list, self.variants_by_list, MAIN)]
            if include_pending:
                sources.append((self.pending_by_list, self.pending_variants_by_list, PENDING))
            for list_id, radius in sorted(radii.items()):
                for by_list, variants_by_list, kind in sources:
                    index = by_list.get(list_id, {}).get(algorithm)
                    if index is not None and len(index):
                        # One more than asked for, to tell a cut answer from a complete one.
                        self._search_into(found, index, values, radius, limit + 1, list_id, kind)
                    variants = variants_by_list.get(list_id)
                    if algorithm == "pdq" and list_id in variant_lists and variants is not None:
                        if len(variants):
                            self._search_into(
                                found, variants, values, radius, variant_rows, list_id, kind | 1
                            )
            kept_per_value: list[list[tuple[int, int, int, int, int]]] = []
            truncated: list[bool] = []
            for hits in found:
                hits.sort()
                nearest: list[tuple[int, int, int, int, int]] = []
                seen: set[int] = set()
                for hit in hits:
                    if hit[1] not in seen:
                        seen.add(hit[1])
                        nearest.append(hit)
                truncated.append(len(nearest) > limit)
                kept_per_value.append(nearest[:limit])
            # The logged values of every kept row, read once per index for the whole batch.
            logged = self._values(algorithm, (hit for kept in kept_per_value for hit in kept))
            return [
                IndexResult(
                    [
                        IndexHit(
                            entry_id,
                            distance,
                            list_id,
                            algorithm,
                            logged[(kind, row_id)],
                            self._variant_name(row_id) if kind & VARIANT else None,
                            pending=bool(kind & PENDING),
                        )
                        for distance, entry_id, kind, list_id, row_id in kept
                    ],
                    cut,
                )
                for kept, cut in zip(kept_per_value, truncated, strict=True)
            ]

    def search_videos(
        self,
        *,
        values: list[str],
        rules: dict[int, VideoRule],
        limit: int,
        include_pending: bool = False,
    ) -> list[IndexResult]:
        """For each vpdq value, the nearest `limit` videos (by distance, then id) of the lists
        in `rules` that match it under each list's rule; lists not named are never read.
        Each query frame of at least the list's quality floor is looked up in the list's
        frame index (never a scan of its videos); a video reached by some frame is then
        judged by the shares of frames matched each way. Videos awaiting review are searched
        only if `include_pending` (in the list's pending frame index); quarantined never."""
        with self._lock:
            sources = [(self.frames_by_list, False)]
            if include_pending:
                sources.append((self.pending_frames_by_list, True))
            results = []
            for value in values:
                frames = vpdq_value_parse(value)
                found: list[tuple[int, int, int, bool, VideoShares]] = []
                truncated = False
                for list_id, rule in sorted(rules.items()):
                    asked = [frame.pdq for frame in frames if frame.quality >= rule.quality_floor]
                    if not asked:
                        continue
                    for frames_by_list, pending in sources:
                        index = frames_by_list.get(list_id)
                        if index is None or not len(index):
                            continue
                        cut, shares = self._video_shares(index, asked, rule)
                        truncated |= cut
                        for entry_id, share in shares.items():
                            if share.matches(
                                query_share=rule.query_share, stored_share=rule.stored_share
                            ):
                                found.append((share.distance, entry_id, list_id, pending, share))
                found.sort(key=lambda hit: (hit[0], hit[1]))
                results.append(
                    IndexResult(
                        hits=[
                            IndexHit(
                                entry_id,
                                distance,
                                list_id,
                                "vpdq",
                                self.videos[entry_id].digest,
                                pending=pending,
                                shares=share,
                            )
                            for distance, entry_id, list_id, pending, share in found[:limit]
                        ],
                        truncated=truncated or len(found) > limit,
                    )
                )
            return results

    def _video_shares(
        self, index: Index, asked: list[str], rule: VideoRule
    ) -> tuple[bool, dict[int, VideoShares]]:
        """Whether a query frame reached more than FRAME_HITS rows, and the shares of each
        video that some query frame reached."""
        before = index.candidates_examined
        searched = index.search_batch(asked, rule.frame_distance, FRAME_HITS + 1)
        self.candidates_examined += index.candidates_examined - before
        truncated = False
        query_hits: dict[int, set[int]] = defaultdict(set)
        stored_hits: dict[int, set[int]] = defaultdict(set)
        for position, matches in enumerate(searched):
            if len(matches) > FRAME_HITS:
                truncated = True
            for row_id, _ in matches[:FRAME_HITS]:
                entry_id, place = divmod(row_id, FRAME_SLOTS)
                if self.videos[entry_id].qualities[place] >= rule.quality_floor:
                    query_hits[entry_id].add(position)
                    stored_hits[entry_id].add(place)
        shares = {}
        for entry_id, matched in query_hits.items():
            compared = int(np.count_nonzero(self.videos[entry_id].qualities >= rule.quality_floor))
            shares[entry_id] = VideoShares(
                len(matched), len(asked), len(stored_hits[entry_id]), compared
            )
        return truncated, shares

    def _search_into(
        self,
        found: list[list[tuple[int, int, int, int, int]]],
        index: Index,
        values: list[str],
        radius: int,
        limit: int,
        list_id: int,
        kind: int,
    ) -> None:
        before = index.candidates_examined
        for hits, matches in zip(found, index.search_batch(values, radius, limit), strict=True):
            for row_id, distance in matches:
                entry_id = row_id // VARIANT_SLOTS if kind & VARIANT else row_id
                hits.append((distance, entry_id, kind, list_id, row_id))
        self.candidates_examined += index.candidates_examined - before

    def _variant_name(self, row_id: int) -> str:
        entry_id, position = divmod(row_id, VARIANT_SLOTS)
        return self.variant_names[entry_id][position]

    def _values(
        self, algorithm: str, hits: Iterable[tuple[int, int, int, int, int]]
    ) -> dict[tuple[int, int], str]:
        by_index: dict[tuple[int, int], list[int]] = defaultdict(list)
        for _, _, kind, list_id, row_id in hits:
            by_index[(kind, list_id)].append(row_id)
        values: dict[tuple[int, int], str] = {}
        for (kind, list_id), ids in by_index.items():
            index = self._index_of(kind, list_id, algorithm)
            for row_id, value in index.values_get(ids).items():
                values[(kind, row_id)] = value
        return values

    def _index_of(self, kind: int, list_id: int, algorithm: str) -> Index:
        if kind == MAIN:
            return self.by_list[list_id][algorithm]
        if kind == VARIANT:
            return self.variants_by_list[list_id]
        if kind == PENDING:
            return self.pending_by_list[list_id][algorithm]
        return self.pending_variants_by_list[list_id]

    def reset(self) -> None:
        """Forget everything; the next refresh reloads (tests, and a restored database)."""
        with self._lock:
            self._reset()

    def _index(self, list_id: int, algorithm: str, *, pending: bool = False) -> Index:
        indexes = (self.pending_by_list if pending else self.by_list)[list_id]
        if algorithm not in indexes:
            indexes[algorithm] = index_for(algorithm)
        return indexes[algorithm]

    def _variants_add(
        self, list_id: int, entry_id: int, found: list[tuple[int, str, str]], names: int
    ) -> tuple[list[int], list[str]]:
        """Remember the variant names of `entry_id`; the row ids and values to index."""
        if not found:
            return [], []
        slots = [""] * names
        for position, name, _ in found:
            slots[position] = name
        self.variant_names[entry_id] = tuple(slots)
        return (
            [entry_id * VARIANT_SLOTS + position for position, _, _ in found],
            [value for _, _, value in found],
        )

    def _videos_add(
        self, list_id: int, entry_ids: list[int], values: list[str], *, pending: bool = False
    ) -> None:
        """Index the frames of the videos `entry_ids` (values from rows that opened their
        leaves' commitments) in their list's frame index, or its pending frame index."""
        rows: list[int] = []
        hashes: list[str] = []
        for entry_id, value in zip(entry_ids, values, strict=True):
            frames = vpdq_value_parse(value)
            self.videos[entry_id] = StoredVideo(
                np.array([frame.quality for frame in frames], np.uint8), value_digest(value)
            )
            rows += frame_rows(entry_id, len(frames))
            hashes += [frame.pdq for frame in frames]
        if rows:
            self._frame_index(list_id, pending=pending).add(rows, hashes)

    def _frame_index(self, list_id: int, *, pending: bool = False) -> Index:
        frames_by_list = self.pending_frames_by_list if pending else self.frames_by_list
        if list_id not in frames_by_list:
            frames_by_list[list_id] = index_for("pdq")
        return frames_by_list[list_id]

    def _videos_end(self, list_id: int, entry_ids: Iterable[int]) -> None:
        rows = []
        for entry_id in entry_ids:
            video = self.videos.pop(entry_id, None)
            if video is not None:
                rows += frame_rows(entry_id, len(video.qualities))
        for frames_by_list in (self.frames_by_list, self.pending_frames_by_list):
            if rows and list_id in frames_by_list:
                frames_by_list[list_id].remove(rows)

    def _video_take(self, list_id: int, entry_id: int, *, pending: bool) -> Parked | None:
        """Remove a video's frames from the list's frame index (or its pending one) and return
        them; None if that index does not hold them."""
        video = self.videos.get(entry_id)
        index = (self.pending_frames_by_list if pending else self.frames_by_list).get(list_id)
        if video is None or index is None:
            return None
        frames = sorted(index.values_get(frame_rows(entry_id, len(video.qualities))).items())
        if not frames:
            return None
        index.remove([row for row, _ in frames])
        del self.videos[entry_id]
        return Parked(list_id, "vpdq", video.digest, pending, [], frames, video)

    def _variant_index(self, list_id: int, *, pending: bool = False) -> Index:
        variants_by_list = self.pending_variants_by_list if pending else self.variants_by_list
        if list_id not in variants_by_list:
            variants_by_list[list_id] = index_for("pdq")
        return variants_by_list[list_id]

    def _variants_end(self, list_id: int, entry_ids: Iterable[int]) -> None:
        rows = [
            entry_id * VARIANT_SLOTS + position
            for entry_id in entry_ids
            for position in range(len(self.variant_names.pop(entry_id, ())))
        ]
        for variants_by_list in (self.variants_by_list, self.pending_variants_by_list):
            if rows and list_id in variants_by_list:
                variants_by_list[list_id].remove(rows)

    def _end(self, list_id: int, entry_id: int) -> None:
        """An entry revoked or erased: out of every index of its list, and unparked."""
        for by_list in (self.by_list, self.pending_by_list):
            # Neither a tombstone nor an erasure names the algorithm (the entry's add
            # does); every index of the list drops the id, absent ids being ignored.
            for index_of_list in by_list.get(list_id, {}).values():
                index_of_list.remove([entry_id])
        self._variants_end(list_id, [entry_id])
        self._videos_end(list_id, [entry_id])
        self.parked.pop(entry_id, None)

    def _take(self, list_id: int, entry_id: int, *, pending: bool) -> Parked | None:
        """Remove an entry and its variants from the list's index (or its pending index) and
        return its values; None if that index does not hold it."""
        if entry_id in self.videos:
            return self._video_take(list_id, entry_id, pending=pending)
        for algorithm, index in (self.pending_by_list if pending else self.by_list)[
            list_id
        ].items():
            value = index.values_get([entry_id]).get(entry_id)
            if value is None:
                continue
            index.remove([entry_id])
            variants: list[tuple[int, str]] = []
            names = self.variant_names.get(entry_id, ())
            variant_index = (
                self.pending_variants_by_list if pending else self.variants_by_list
            ).get(list_id)
            if names and variant_index is not None:
                rows = [entry_id * VARIANT_SLOTS + position for position in range(len(names))]
                variants = sorted(variant_index.values_get(rows).items())
                variant_index.remove([row for row, _ in variants])
            return Parked(list_id, algorithm, value, pending, variants)
        return None

    def _put(self, entry_id: int, parked: Parked, *, pending: bool) -> None:
        if parked.video is not None:
            self._frame_index(parked.list_id, pending=pending).add(
                [row for row, _ in parked.frames], [value for _, value in parked.frames]
            )
            self.videos[entry_id] = parked.video
            return
        self._index(parked.list_id, parked.algorithm, pending=pending).add(
            [entry_id], [parked.value]
        )
        if parked.variants:
            self._variant_index(parked.list_id, pending=pending).add(
                [row for row, _ in parked.variants], [value for _, value in parked.variants]
            )

    def _hold_apply(self, list_id: int, entry_id: int, event: LeafFields) -> None:
        """An entry confirmed (pending -> the list's index), quarantined (parked) or its
        quarantine resolved (restored: back where it was; revoked: its tombstone ended it)."""
        if event.type == leaves.ENTRY_CONFIRMED:
            parked = self.parked.get(entry_id)
            if parked is not None:
                parked.pending = False  # confirmed while quarantined: restored as confirmed
                return
            taken = self._take(list_id, entry_id, pending=True)
            if taken is not None:
                self._put(entry_id, taken, pending=False)
        elif event.type == leaves.ENTRY_QUARANTINED:
            if entry_id in self.parked:
                return
            taken = self._take(list_id, entry_id, pending=False) or self._take(
                list_id, entry_id, pending=True
            )
            if taken is not None:
                self.parked[entry_id] = taken
        elif event.type == leaves.ENTRY_QUARANTINE_RESOLVED:
            parked = self.parked.pop(entry_id, None)
            if parked is not None and event.resolution == "restored":
                self._put(entry_id, parked, pending=parked.pending)

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
        variant_rows = _variant_openings_from(start=0, below=size, chunk=LOAD_CHUNK)
        variant_pending = next(variant_rows, None)
        variant_ids: dict[int, list[int]] = defaultdict(list)
        variant_values: dict[int, list[str]] = defaultdict(list)
        revoked_by_list: dict[int, list[int]] = defaultdict(list)
        # Entries added pending review, and the hold events, replayed once all is indexed.
        pending_by_list: dict[int, list[int]] = defaultdict(list)
        holds: list[tuple[int, int, LeafFields]] = []
        # Videos, per (list, pending review): their frames are indexed, not their values.
        video_adds: dict[tuple[int, bool], tuple[list[int], list[str]]] = defaultdict(
            lambda: ([], [])
        )
        for index, list_id, leaf in log_entry_events_below(size=size, chunk=LOAD_CHUNK):
            event = leaf_fields(leaf)
            if event.type in HOLD_TYPES:
                if list_id is None or event.entry is None:
                    raise ValueError(f"log event {index} holds no entry of a list")
                holds.append((list_id, event.entry, event))
                continue
            if event.type == leaves.ENTRY_ADDED:
                while pending is not None and pending[0] < index:
                    pending = next(openings, None)
                opening = pending if pending is not None and pending[0] == index else None
                entry = entry_added_read(index, list_id, event, opening)
                mine: list[VariantOpening] = []
                while variant_pending is not None and variant_pending[0] <= index:
                    if variant_pending[0] == index:
                        mine.append(variant_pending)
                    variant_pending = next(variant_rows, None)
                if entry is None:
                    continue
                if ALGORITHMS[entry.algorithm].frames:
                    video_ids, videos = video_adds[(entry.list_id, event.review == "pending")]
                    video_ids.append(entry.entry_id)
                    videos.append(entry.value)
                    continue
                key = (entry.list_id, entry.algorithm)
                ids[key].append(entry.entry_id)
                packed[key] += bytes.fromhex(entry.value)
                if event.review == "pending":
                    pending_by_list[entry.list_id].append(entry.entry_id)
                if event.variants:
                    row_ids, row_values = self._variants_add(
                        entry.list_id,
                        index,
                        variants_added_read(index, event, mine),
                        len(event.variants),
                    )
                    variant_ids[entry.list_id] += row_ids
                    variant_values[entry.list_id] += row_values
            elif event.entry is not None:
                revoked.append(event.entry)  # revoked or erased: ended either way
                if list_id is not None:
                    revoked_by_list[list_id].append(event.entry)
            else:
                raise ValueError(f"log event {index} ends no entry")
        ended = np.frombuffer(revoked, np.int64)
        for (list_id, algorithm), entry_ids in ids.items():
            width = ALGORITHMS[algorithm].bits // 8
            hashes = np.frombuffer(bytes(packed.pop((list_id, algorithm))), np.uint8)
            id_array = np.frombuffer(entry_ids, np.int64)
            live = ~np.isin(id_array, ended)
            self._index(list_id, algorithm).add(id_array[live], hashes.reshape(-1, width)[live])
        for list_id, row_ids in variant_ids.items():
            self._variant_index(list_id).add(row_ids, variant_values[list_id])
        ended_set = set(revoked)
        for (list_id, pending_review), (video_ids, videos) in video_adds.items():
            kept = [(i, v) for i, v in zip(video_ids, videos, strict=True) if i not in ended_set]
            self._videos_add(
                list_id, [i for i, _ in kept], [v for _, v in kept], pending=pending_review
            )
        for list_id, ended_ids in revoked_by_list.items():
            self._variants_end(list_id, ended_ids)
        for list_id, pending_ids in pending_by_list.items():
            self._pending_move(list_id, pending_ids)
        for list_id, entry_id, event in holds:
            self._hold_apply(list_id, entry_id, event)
        self.position = size - 1
        if size:
            leaf_bytes = log_leaf(index=size - 1)
            self.position_digest = None if leaf_bytes is None else _digest(leaf_bytes)
        self.loaded = True

    def _pending_move(self, list_id: int, entry_ids: list[int]) -> None:
        """Move the entries `entry_ids` (those still indexed) and their variants from the
        list's index to its pending index (on load: everything was indexed first)."""
        for algorithm, index in list(self.by_list.get(list_id, {}).items()):
            found = index.values_get(entry_ids)
            if found:
                index.remove(list(found))
                self._index(list_id, algorithm, pending=True).add(list(found), list(found.values()))
        variants = self.variants_by_list.get(list_id)
        if variants is not None:
            rows = [
                entry_id * VARIANT_SLOTS + position
                for entry_id in entry_ids
                for position in range(len(self.variant_names.get(entry_id, ())))
            ]
            found = variants.values_get(rows)
            if found:
                variants.remove(list(found))
                self._variant_index(list_id, pending=True).add(list(found), list(found.values()))

    def _catch_up(self) -> bool:
        """Apply one page of new events; True if there may be more."""
        rows = log_events_from(start=max(self.position, 0), limit=CATCH_UP_PAGE + 1)
        if self.position >= 0:
            if not rows or _digest(rows[0][2]) != self.position_digest:
                self._load()
                return True
            rows = rows[1:]
        adds: dict[Key, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        pending_adds: dict[Key, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        events = [(index, list_id, leaf_fields(leaf)) for index, list_id, leaf in rows]
        added = [index for index, _, event in events if event.type == leaves.ENTRY_ADDED]
        openings = _openings_of(added)
        variant_openings = _variant_openings_of(
            [index for index, _, event in events if event.variants]
        )
        for index, list_id, event in events:
            if event.type == leaves.ENTRY_ADDED:
                entry = entry_added_read(index, list_id, event, openings.get(index))
                if entry is None:
                    continue
                pending = event.review == "pending"
                entry_ids, values = (pending_adds if pending else adds)[
                    (entry.list_id, entry.algorithm)
                ]
                entry_ids.append(entry.entry_id)
                values.append(entry.value)
                if event.variants:
                    row_ids, row_values = self._variants_add(
                        entry.list_id,
                        index,
                        variants_added_read(index, event, variant_openings.get(index, [])),
                        len(event.variants),
                    )
                    if row_ids:
                        self._variant_index(entry.list_id, pending=pending).add(row_ids, row_values)
            elif event.type in ENDING_TYPES or event.type in HOLD_TYPES:
                if list_id is None or event.entry is None:
                    raise ValueError(f"log event {index} names no entry of a list")
                # Adds before the revocation must be applied first: an entry may be added and
                # revoked (or confirmed, or quarantined) within the same page.
                self._apply(adds)
                self._apply(pending_adds, pending=True)
                adds.clear()
                pending_adds.clear()
                if event.type in ENDING_TYPES:
                    self._end(list_id, event.entry)
                else:
                    self._hold_apply(list_id, event.entry, event)
        self._apply(adds)
        self._apply(pending_adds, pending=True)
        if rows:
            self.position = rows[-1][0]
            self.position_digest = _digest(rows[-1][2])
        return len(rows) >= CATCH_UP_PAGE

    def _apply(
        self, adds: dict[Key, tuple[list[int], list[str]]], *, pending: bool = False
    ) -> None:
        for (list_id, algorithm), (ids, values) in adds.items():
            if ids and ALGORITHMS[algorithm].frames:
                self._videos_add(list_id, ids, values, pending=pending)
            elif ids:
                self._index(list_id, algorithm, pending=pending).add(ids, values)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held per algorithm, summed over the lists."""
        with self._lock:
            totals = dict.fromkeys(ALGORITHMS, 0)
            for by_list in (self.by_list, self.pending_by_list):
                for indexes in by_list.values():
                    for algorithm, index in indexes.items():
                        totals[algorithm] += index.memory_bytes()
            for variants_by_list in (self.variants_by_list, self.pending_variants_by_list):
                for variants in variants_by_list.values():
                    totals["pdq"] += variants.memory_bytes()
            for frames_by_list in (self.frames_by_list, self.pending_frames_by_list):
                for frames in frames_by_list.values():
                    totals["vpdq"] += frames.memory_bytes()
            totals["vpdq"] += sum(video.qualities.nbytes + 64 for video in self.videos.values())
            return totals


def _digest(leaf: bytes) -> bytes:
    return hashlib.sha256(leaf).digest()


# One per process: each web worker holds its own copy, as the design's scaling section says.
match_indexes = MatchIndexes()
