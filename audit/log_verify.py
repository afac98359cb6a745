"""Tamper detection: recompute what the log commits to and compare it with what is stored.

`log_verify` reads the log once, front to back, and merge-joins every other table the log
speaks of with it, each read as a stream ordered by the key the log names it by:

- the leaves: canonical version 2 JSON, dense indexes, known types, row columns as the leaf;
- the tree: every leaf hash is appended to the tree's right edge (what a
  `merkle.CompactRange` keeps), which closes complete subtrees; those of tree levels 0, 8,
  16, ... are compared with the stored tiles as they close, so a changed, missing, extra,
  truncated or widened tile is found;
- checkpoints: the root at each checkpoint's size against its row and its note, the note's
  signature by the log key, and each cosignature row against its partner's key;
- entries (by id, which is their log index), their tombstones and erasures (by the log
  index that names them), submissions and revocations (by the ids their leaves name,
  fetched one chunk of leaves at a time, each envelope verified once however many entries
  share it);
- sealed access periods: each `access_period_sealed` leaf against its row, and the access
  events of its range re-hashed to its count and root;
- feedback (by its event's log index): each `entry_feedback` leaf against its verdict's row
  and signed envelope, each `entry_confirmed` against its entry's confirmation, each
  `entry_quarantine_resolved` against its resolution's row.

Everything runs in one REPEATABLE READ, READ ONLY transaction, so concurrent writers are
neither seen half-way nor blocked. Memory is bounded by the chunk size, one tile per tree
level, O(log n) hashes of the compact range, and the signing keys and lists of the
consortium: never by the length of the log. The first divergence ends the run with one line
naming the table, the row and what differs; hash values and salts are never printed.

Speed: each row is checked by one comparison of what it should be with what it is; only a
difference takes the slower code that names it, so every check is the original one. Leaves
are read with msgspec where its encoding is the canonical one, and the events and entries by
keyset pages of plain SQL: about twice the rate of reading them with the ORM and the stdlib.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import connection, transaction

from audit.models import AccessPeriod, Checkpoint, Cosignature, LogEvent, LogTile
from audit.selectors import access_period_event_fields, log_size
from audit.services import leaf_time, log_signer
from audit.tree import TreeError, tree_root
from audit.witnesses import witnesses_configured
from consortium_client import leaves, merkle
from consortium_client.accesslog import AccessLogError, access_event_encode
from consortium_client.commitments import commitment_opens
from consortium_client.dsse import (
    SUBMISSION_PAYLOAD_TYPE,
    SUBMISSION_V1_PAYLOAD_TYPE,
    EnvelopeError,
    envelope_parse,
    envelope_verify,
)
from consortium_client.hashvalues import HashValueError, hash_value_parse
from consortium_client.keys import key_id
from consortium_client.notes import (
    COSIGNATURE_V1,
    NoteError,
    cosignature_verify,
    note_verifier,
    signature_parse,
)
from consortium_client.strictjson import StrictJsonError, strict_json_loads
from consortium_client.verify import (
    VerificationError,
    verify_checkpoint,
    verify_feedback,
    verify_revocation,
)
from hashes import selectors as hashes_selectors
from hashes.selectors import EntryVerifyRow
from partners.models import Partner

T = TypeVar("T")

# The events as _event_chunks reads them from PostgreSQL, a keyset page at a time; the time
# column in the leaf's format (audit.services.leaf_time).
EVENTS_COLUMNS = (
    '"index", event_type, '
    "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "hash_list_id, partner_id, leaf"
)
EVENTS_FIRST_SQL = (
    f'SELECT {EVENTS_COLUMNS} FROM audit_logevent WHERE "index" < %s '  # noqa: S608
    'ORDER BY "index" LIMIT %s'
)
EVENTS_AFTER_SQL = (
    f'SELECT {EVENTS_COLUMNS} FROM audit_logevent WHERE "index" > %s AND "index" < %s '  # noqa: S608
    'ORDER BY "index" LIMIT %s'
)

PAYLOAD_TYPES = {1: SUBMISSION_V1_PAYLOAD_TYPE, 2: SUBMISSION_PAYLOAD_TYPE}

CHUNK = 5000
# Tiles are 8 KiB each: fetched a few at a time, so that a stream holds about 128 KiB.
TILE_CHUNK = 16
LIST_SCOPED = (
    leaves.ENTRY_ADDED,
    leaves.ENTRY_REVOKED,
    leaves.ENTRY_ERASED,
    leaves.ENTRY_FEEDBACK,
    *leaves.ENTRY_HOLD_TYPES,
)
# Events whose row names the partner the leaf names (the feed and the admin filter on it).
PARTNER_NAMED = (
    leaves.ENTRY_FEEDBACK,
    *leaves.ENTRY_HOLD_TYPES,
    leaves.SIGNING_KEY_REGISTERED,
    leaves.SIGNING_KEY_REVOKED,
    leaves.PARTNER_SUSPENDED,
    leaves.PARTNER_REACTIVATED,
)


class Divergence(Exception):
    """The first place where stored data and the log disagree, as one line: the table, the
    row, what differs and, where it helps, the expected and the found value."""

    def __init__(
        self, table: str, where: str, what: str, expected: Any = None, found: Any = None
    ) -> None:
        line = f"{table} {where}: {what}"
        if expected is not None or found is not None:
            line += f": expected {expected}, found {found}"
        super().__init__(" ".join(line.split()))
        self.table = table


@dataclass
class LogVerifyReport:
    """What a run that found no divergence covered."""

    size: int = 0
    tiles: int = 0
    checkpoints: int = 0
    cosignatures: int = 0
    # By outside witnesses no longer in LOG_WITNESSES, whose keys are not known here.
    cosignatures_unchecked: int = 0
    entries: int = 0
    submissions: int = 0
    revocations: int = 0
    erasures: int = 0
    feedback: int = 0
    periods: int = 0
    access_events: int = 0
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        rate = self.size / self.seconds if self.seconds else 0.0
        return (
            f"log verified: {self.size} events ({rate:,.0f}/s), {self.tiles} tiles, "
            f"{self.checkpoints} checkpoints, {self.cosignatures} cosignatures"
            + (
                f" ({self.cosignatures_unchecked} more by witnesses no longer configured)"
                if self.cosignatures_unchecked
                else ""
            )
            + ", "
            f"{self.entries} entries, {self.submissions} submissions, "
            f"{self.revocations} revocations, {self.erasures} erasures, "
            f"{self.feedback} verdicts, "
            f"{self.periods} access periods ({self.access_events} access events)"
        )


class _Stream(Generic[T]):
    """An iterator with a look-ahead of one row: the merge-join's cursor."""

    def __init__(self, rows: Iterator[T]) -> None:
        self._rows = rows
        self.head: T | None = next(rows, None)

    def take(self) -> T:
        if self.head is None:
            raise IndexError("the stream is exhausted")
        row, self.head = self.head, next(self._rows, None)
        return row

    def close(self) -> None:
        """End the stream's server-side cursor now. Left to the garbage collector, a stream
        that a divergence stopped early closes its cursor at whatever moment the collector
        runs, possibly in the middle of another query on the same connection, which psycopg
        cannot interleave: the process then waits on itself for ever."""
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()


def _no_float(text: str) -> Any:
    raise ValueError("a number with a fraction or an exponent")


# The fast reading of a leaf. On leaves of printable ASCII without floats, msgspec's sorted,
# compact encoding is byte for byte the stdlib's `sort_keys`, `ensure_ascii` one (both escape
# the same characters the same way below 0x7f; 0x7f and above, and floats, they write
# differently): re-encoding with it and comparing bytes is the canonical check, at a tenth of
# the cost. Anything else takes the stdlib path, which decides and names what is wrong.
_leaf_decode = msgspec.json.Decoder(float_hook=_no_float).decode
_leaf_encode = msgspec.json.Encoder(order="sorted").encode


def _leaf_canonical(raw: bytes) -> Any:
    """The leaf's JSON value if `raw` is canonical JSON by the fast reading; else None."""
    if not raw.isascii() or b"\x7f" in raw:
        return None
    try:
        document = _leaf_decode(raw)
    except (msgspec.DecodeError, ValueError):
        return None
    if type(document) is not dict or _leaf_encode(document) != raw:
        return None
    return document


def _parse_leaf(index: int, raw: bytes) -> dict[str, Any]:
    """The fields of the leaf at `index`: canonical version 2 JSON naming that index and a
    known type, with a server nonce; otherwise a divergence of the log table."""

    def refuse(what: str) -> Divergence:
        return Divergence("audit_logevent", f"index {index}", what)

    document = _leaf_canonical(raw)
    if document is None:
        try:
            document = json.loads(raw, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise refuse(f"the leaf is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise refuse("the leaf is not a JSON object")
        # Re-encoding catches duplicate keys, white space, key order and non-ASCII at once.
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        if canonical.encode() != raw:
            raise refuse("the leaf is not canonical JSON")
    if document.get("v") != leaves.LEAF_VERSION:
        raise refuse(f"the leaf is version {document.get('v')!r}, not {leaves.LEAF_VERSION}")
    nonce = document.get("nonce")
    if not isinstance(nonce, str) or not leaves.NONCE_PATTERN.fullmatch(nonce):
        raise refuse("the leaf has no 32-hex-character nonce")
    if type(document.get("index")) is not int or document["index"] != index:
        raise refuse(f"the leaf names index {document.get('index')!r}")
    if document.get("type") not in leaves.EVENT_TYPES:
        raise refuse(f"unknown event type {document.get('type')!r}")
    return document


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@dataclass
class _Tiles:
    """The stored tiles of one tile level, read in index order as the tree closes them."""

    level: int
    rows: _Stream[tuple[int, Any]]
    current: tuple[int, bytes] | None = None
    read: int = 0

    def check(self, n: int, hashed: bytes, blame: Callable[[int, int], str]) -> None:
        """Compare hash `n` of this tile level (tree level 8 * level) with `hashed`."""
        index, position = n >> merkle.TILE_HEIGHT, n & (merkle.TILE_WIDTH - 1)
        current = self.current
        if current is None or current[0] != index:
            self._advance(index)
            current = self.current
            assert current is not None  # noqa: S101 - _advance set it or raised
        data = current[1]
        stored = data[position * merkle.HASH_SIZE : (position + 1) * merkle.HASH_SIZE]
        if stored == hashed:
            return
        where = f"{merkle.Tile(self.level, index).path} hash {position}"
        if len(stored) < merkle.HASH_SIZE:
            raise Divergence(
                "audit_logtile",
                where,
                "the tile is truncated",
                f"at least {position + 1} hashes",
                f"{len(data) // merkle.HASH_SIZE}",
            )
        if stored != hashed:
            table = blame(self.level, n)
            raise Divergence(
                table,
                where,
                "the stored tile and the hash recomputed from the leaves differ",
                hashed.hex(),
                stored.hex(),
            )

    def _advance(self, index: int) -> None:
        if self.current is not None:
            self._require_width(merkle.TILE_WIDTH)
        row = self.rows.head
        if row is None or row[0] != index:
            found = "none" if row is None else merkle.Tile(self.level, row[0]).path
            raise Divergence(
                "audit_logtile",
                merkle.Tile(self.level, index).path,
                "the tree has this tile, the table does not",
                "the tile",
                f"next stored tile {found}",
            )
        self.rows.take()
        self.current = (row[0], bytes(row[1]))
        self.read += 1

    def _require_width(self, width: int) -> None:
        assert self.current is not None  # noqa: S101
        index, data = self.current
        if len(data) != width * merkle.HASH_SIZE:
            raise Divergence(
                "audit_logtile",
                merkle.Tile(self.level, index).path,
                "the stored tile is not as wide as the tree has it",
                f"{width} hashes",
                f"{len(data) / merkle.HASH_SIZE:g} hashes",
            )

    def finish(self, size: int) -> None:
        """At the end of the log: the last tile is exactly as wide as the tree of `size`
        makes it, and no stored tile lies beyond it."""
        hashes = size >> (merkle.TILE_HEIGHT * self.level)
        if hashes:
            width = hashes % merkle.TILE_WIDTH or merkle.TILE_WIDTH
            if self.current is None:
                self._advance((hashes - 1) // merkle.TILE_WIDTH)
            self._require_width(width)
        extra = self.rows.head
        if extra is not None:
            raise Divergence(
                "audit_logtile",
                merkle.Tile(self.level, extra[0]).path,
                f"a stored tile beyond the tree of size {size}",
            )


@dataclass
class _SignedGroup:
    """A submission or revocation whose consecutive leaves are being checked: its row, what
    its envelope signed (verified once, on its first leaf), and how many leaves named it."""

    id: int
    row: dict[str, Any]
    signed: list[Any] | None = None
    names: set[int] = field(default_factory=set)
    leaves: int = 0


class _Verifier:
    def __init__(self, *, chunk: int, progress: bool) -> None:
        self.chunk = chunk
        self.progress = progress
        self.report = LogVerifyReport()
        self.size = log_size()
        signer = log_signer()
        self.log_vkey = signer.verifier.vkey
        self.origin = settings.LOG_ORIGIN
        self.lists = hashes_selectors.list_names()
        self.list_ids = {name: list_id for list_id, name in self.lists.items()}
        self.partners = dict(Partner.objects.values_list("id", "name"))
        # Signing keys as the log registered them: key id -> (partner name, raw public key).
        self.keys: dict[str, tuple[str, bytes]] = {}
        # The tree's right edge as a merkle.CompactRange keeps it (the hash of each complete
        # subtree of the leaves so far, largest first), kept here as bare hashes: the objects
        # of CompactRange cost more per leaf than hashing it.
        self.tree_size = 0
        self.peaks: list[bytes] = []
        self.tile_levels: list[_Tiles] = []
        level = 0
        while self.size >> (merkle.TILE_HEIGHT * level):
            rows = (
                LogTile.objects.filter(level=level)
                .order_by("index")
                .values_list("index", "hashes")
                .iterator(TILE_CHUNK)
            )
            self.tile_levels.append(_Tiles(level, _Stream(rows)))
            level += 1
        self.checkpoints = _Stream(
            Checkpoint.objects.order_by("size").values_list("size", "root", "note").iterator(chunk)
        )
        self.cosignatures = _Stream(
            Cosignature.objects.order_by("checkpoint__size", "id")
            .values_list(
                "id",
                "checkpoint__size",
                "partner__name",
                "signing_key__partner__name",
                "signing_key__public_key",
                "timestamp",
                "line",
                "witness",
            )
            .iterator(chunk)
        )
        # Outside witnesses' keys are configuration, not data: a cosignature by a witness
        # no longer configured cannot be checked here and is counted apart.
        self.witnesses = {witness.name: witness.verifier for witness in witnesses_configured()}
        self.entries = _Stream(hashes_selectors.entries_in_id_order_rows(chunk=chunk))
        self.variants = _Stream(hashes_selectors.entry_variants_in_order_rows(chunk=chunk))
        self.revoked = _Stream(hashes_selectors.entries_revoked_in_log_order(chunk=chunk))
        self.erased = _Stream(hashes_selectors.entries_erased_in_log_order(chunk=chunk))
        self.periods = _Stream(AccessPeriod.objects.order_by("number").iterator(chunk))
        self.feedback = _Stream(hashes_selectors.feedback_in_log_order(chunk=chunk))
        self.confirmed = _Stream(hashes_selectors.entries_confirmed_in_log_order(chunk=chunk))
        self.resolutions = _Stream(
            hashes_selectors.quarantine_resolutions_in_log_order(chunk=chunk)
        )
        self.submission: _SignedGroup | None = None
        self.revocation: _SignedGroup | None = None

    def close(self) -> None:
        """Close every stream, whether the walk finished or stopped at a divergence."""
        streams = [tiles.rows for tiles in self.tile_levels]
        streams += [value for value in vars(self).values() if isinstance(value, _Stream)]
        for stream in streams:
            stream.close()

    # The walk

    def run(self) -> LogVerifyReport:
        started = time.perf_counter()
        self._checkpoints_at(0)
        bar = _progress_bar(self.size) if self.progress else None
        try:
            for batch in self._event_chunks():
                self._chunk(batch)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        self._finish()
        self.report.size = self.size
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _event_chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The events below the log size, in index order, a page of `chunk` at a time, as
        (index, event_type, time in the leaf's format, hash_list_id, partner_id, leaf)."""
        if connection.vendor != "postgresql":
            yield from self._event_chunks_orm()
            return
        # Keyset pages of plain SQL in PostgreSQL's binary format: the ORM's per-row cost was
        # a third of the run, and the bytea leaves in hex text twice the bytes to send and
        # decode. PostgreSQL formats the time column as leaf_time does, cheaper than a
        # datetime per row in Python. Every page reads the run's snapshot.
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.format = psycopg.pq.Format.BINARY
            cursor.execute(EVENTS_FIRST_SQL, [self.size, self.chunk])
            while rows := cursor.fetchall():
                yield rows
                cursor.execute(EVENTS_AFTER_SQL, [rows[-1][0], self.size, self.chunk])

    def _event_chunks_orm(self) -> Iterator[list[tuple[Any, ...]]]:
        rows = (
            LogEvent.objects.filter(index__lt=self.size)
            .order_by("index")
            .values_list("index", "event_type", "time", "hash_list_id", "partner_id", "leaf")
            .iterator(self.chunk)
        )
        batch = []
        for index, event_type, moment, list_id, partner_id, leaf in rows:
            batch.append((index, event_type, leaf_time(moment), list_id, partner_id, leaf))
            if len(batch) == self.chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    def _chunk(self, rows: list[tuple[Any, ...]]) -> None:
        parsed = []
        submission_ids: set[int] = set()
        revocation_ids: set[int] = set()
        revoked_entries: set[int] = set()
        peaks = self.peaks
        tile_levels = self.tile_levels
        level0 = tile_levels[0] if tile_levels else None
        blame = self._tile_blame
        checkpoints = self.checkpoints
        list_ids, partners = self.list_ids, self.partners
        sha256 = hashlib.sha256
        for index, event_type, moment, list_id, partner_id, leaf in rows:
            if index != self.tree_size:
                raise Divergence(
                    "audit_logevent",
                    f"index {self.tree_size}",
                    f"the event is missing below the log size {self.size}",
                    f"index {self.tree_size}",
                    f"index {index}",
                )
            raw = bytes(leaf)
            document = _parse_leaf(index, raw)
            # The tree: the leaf, then each subtree it completes; the subtrees of tree levels
            # 0, 8, 16, ... against their stored tiles as they close.
            hashed = sha256(b"\x00" + raw).digest()
            if level0 is not None:
                level0.check(index, hashed, blame)
            n, level = index, 0
            while n & 1:
                hashed = sha256(b"\x01" + peaks.pop() + hashed).digest()
                n >>= 1
                level += 1
                if not level % merkle.TILE_HEIGHT and level // merkle.TILE_HEIGHT < len(
                    tile_levels
                ):
                    tile_levels[level // merkle.TILE_HEIGHT].check(n, hashed, blame)
            peaks.append(hashed)
            self.tree_size = index + 1
            if checkpoints.head is not None and checkpoints.head[0] == self.tree_size:
                self._checkpoints_at(self.tree_size)
            event = document["type"]
            if event == leaves.ENTRY_ADDED:
                # The common case in one comparison; _row_columns names what differs.
                if (
                    event_type != event
                    or moment != document.get("time")
                    or list_id is None
                    or list_id != list_ids.get(document.get("list"))  # type: ignore[arg-type]
                    or partner_id is None
                    or partners.get(partner_id) != document.get("partner")
                ):
                    self._row_columns(index, document, event_type, moment, list_id, partner_id)
                submission_ids.add(document.get("submission"))  # type: ignore[arg-type]
            else:
                self._row_columns(index, document, event_type, moment, list_id, partner_id)
                if event == leaves.ENTRY_REVOKED:
                    revocation_ids.add(document.get("revocation"))  # type: ignore[arg-type]
                    revoked_entries.add(document.get("entry"))  # type: ignore[arg-type]
            parsed.append((index, raw, document, partner_id))
        # One query each per chunk, not per leaf: a chunk names few submissions in practice
        # (a batch of 10,000 entries is one), and never more than it has leaves. The one
        # still open from the chunk before is not read again: its envelope may be large.
        open_submission = self.submission
        if open_submission is not None:
            submission_ids.discard(open_submission.id)
        submissions = hashes_selectors.submissions_by_id(
            ids=[i for i in submission_ids if type(i) is int]
        )
        if open_submission is not None:
            submissions[open_submission.id] = open_submission.row
        revocations = hashes_selectors.revocations_by_id(
            ids=[i for i in revocation_ids if type(i) is int]
        )
        revoked = hashes_selectors.entry_lists_and_partners(
            ids=[i for i in revoked_entries if type(i) is int]
        )
        for index, raw, document, partner_id in parsed:
            event_type = document["type"]
            revoked_head, erased_head = self.revoked.head, self.erased.head
            if (revoked_head is not None and revoked_head[0] < index) or (
                erased_head is not None and erased_head[0] < index
            ):
                self._side_streams_reach(index)
            if event_type == leaves.ENTRY_ADDED:
                if self.revocation is not None:
                    self._revocation_close()
                self._entry_added(index, raw, document, partner_id, submissions)
                continue
            self._submission_close()
            if event_type != leaves.ENTRY_REVOKED:
                self._revocation_close()
            if event_type == leaves.ENTRY_REVOKED:
                self._entry_revoked(index, raw, document, partner_id, revocations, revoked)
            elif event_type == leaves.ENTRY_ERASED:
                self._entry_erased(index, document)
            elif event_type == leaves.SIGNING_KEY_REGISTERED:
                self._key_registered(index, document)
            elif event_type == leaves.ACCESS_PERIOD_SEALED:
                self._period_sealed(index, document)
            elif event_type == leaves.ENTRY_FEEDBACK:
                self._feedback(index, raw, document)
            elif event_type == leaves.ENTRY_CONFIRMED:
                self._confirmed(index, document)
            elif event_type == leaves.ENTRY_QUARANTINE_RESOLVED:
                self._resolved(index, document)

    def _root(self) -> bytes:
        """The root of the tree of the leaves read so far."""
        if not self.peaks:
            return merkle.EMPTY_ROOT
        hashed = self.peaks[-1]
        for left in reversed(self.peaks[:-1]):
            hashed = merkle.node_hash(left, hashed)
        return hashed

    def _tile_blame(self, tile_level: int, n: int) -> str:
        """Which table to name when a recomputed tree hash differs from its stored tile.

        Above level 0 the recomputed hash comes from leaves that matched the level-0 tiles,
        so the tile is wrong. At level 0 either the leaf or the tile was changed: the stored
        tiles are right if they give the root the next checkpoint signed."""
        if tile_level > 0:
            return "audit_logtile"
        covering = self.checkpoints.head
        if covering is None:
            return "audit_logevent or audit_logtile (no checkpoint covers it yet)"
        size, root, _ = covering
        try:
            from_tiles = tree_root(size=size)
        except TreeError:
            return "audit_logtile"
        return "audit_logevent" if from_tiles == bytes(root) else "audit_logtile"

    def _row_columns(
        self,
        index: int,
        document: dict[str, Any],
        event_type: str,
        moment: str,
        list_id: int | None,
        partner_id: int | None,
    ) -> None:
        """The row's own columns say what its leaf says: the feed and visibility read them.

        `moment` is the time column in the leaf's format (`leaf_time`)."""
        where = f"index {index}"
        if event_type != document["type"]:
            raise Divergence(
                "audit_logevent", where, "event_type column", document["type"], event_type
            )
        if moment != document.get("time"):
            raise Divergence("audit_logevent", where, "time column", document.get("time"), moment)
        if document["type"] in LIST_SCOPED:
            expected_list = self.list_ids.get(document.get("list"))  # type: ignore[arg-type]
            if expected_list is None:
                raise Divergence(
                    "hashes_hashlist", where, f"no list named {document.get('list')!r}"
                )
        else:
            expected_list = None
        if list_id != expected_list:
            raise Divergence("audit_logevent", where, "hash_list_id column", expected_list, list_id)
        if document["type"] in (leaves.ENTRY_ERASED, leaves.ACCESS_PERIOD_SEALED):
            if partner_id is not None:
                raise Divergence("audit_logevent", where, "partner_id column", None, partner_id)
        elif document["type"] in (leaves.ENTRY_ADDED, *PARTNER_NAMED):
            found = self.partners.get(partner_id) if partner_id is not None else None
            if found != document.get("partner"):
                raise Divergence(
                    "audit_logevent",
                    where,
                    "partner_id column names another partner than the leaf",
                    document.get("partner"),
                    found,
                )

    def _checkpoints_at(self, size: int) -> None:
        while self.checkpoints.head is not None and self.checkpoints.head[0] == size:
            self._checkpoint(*self.checkpoints.take())

    def _checkpoint(self, size: int, root: Any, note: str) -> None:
        where = f"size {size}"
        try:
            verified = verify_checkpoint(note, self.log_vkey, self.origin)
        except VerificationError as exc:
            raise Divergence(
                "audit_checkpoint", where, f"the note does not verify: {exc}"
            ) from None
        if verified.size != size:
            raise Divergence("audit_checkpoint", where, "size column", verified.size, size)
        if verified.root != bytes(root):
            raise Divergence(
                "audit_checkpoint",
                where,
                "root column and signed note differ",
                verified.root.hex(),
                bytes(root).hex(),
            )
        recomputed = self._root()
        if recomputed != verified.root:
            raise Divergence(
                "audit_logevent",
                f"indexes 0-{size - 1}",
                f"the leaves do not hash to the root the log key signed at size {size}",
                verified.root.hex(),
                recomputed.hex(),
            )
        self.report.checkpoints += 1
        body = note[: note.rfind("\n\n") + 1]
        while self.cosignatures.head is not None and self.cosignatures.head[1] == size:
            self._cosignature(body, *self.cosignatures.take())

    def _cosignature(
        self,
        body: str,
        row_id: int,
        size: int,
        partner: str,
        key_partner: str,
        public_key: Any,
        timestamp: int,
        line: str,
        witness: str,
    ) -> None:
        where = f"id {row_id} (checkpoint size {size})"
        if key_partner != partner:
            raise Divergence(
                "audit_cosignature", where, "the signing key's partner", partner, key_partner
            )
        try:
            if witness:
                verifier = self.witnesses.get(witness)
                if verifier is None:
                    self.report.cosignatures_unchecked += 1
                    return
            else:
                verifier = note_verifier(
                    partner, Ed25519PublicKey.from_public_bytes(bytes(public_key)), COSIGNATURE_V1
                )
            signed_at = cosignature_verify(verifier, body, signature_parse(line))
        except (NoteError, ValueError) as exc:
            raise Divergence("audit_cosignature", where, f"does not verify: {exc}") from None
        if signed_at != timestamp:
            raise Divergence("audit_cosignature", where, "timestamp column", signed_at, timestamp)
        self.report.cosignatures += 1

    # Entries, submissions, revocations, erasures

    def _side_streams_reach(self, index: int) -> None:
        """A tombstone or erasure index that the log walked past without meeting the event
        there names an event that is not one."""
        for stream, table, what in (
            (self.revoked, "hashes_entry", "revoked_log_index"),
            (self.erased, "hashes_entry", "erased_log_index"),
        ):
            head = stream.head
            if head is not None and head[0] < index:
                raise Divergence(
                    table,
                    f"id {head[1]}",
                    f"{what} {head[0]} names no event about this entry",
                )

    def _entry_added(
        self,
        index: int,
        raw: bytes,
        leaf: dict[str, Any],
        partner_id: int | None,
        submissions: dict[int, dict[str, Any]],
    ) -> None:
        if self.entries.head is not None and self.entries.head.id < index:
            extra = self.entries.head
            raise Divergence(
                "hashes_entry",
                f"id {extra.id}",
                f"no entry_added leaf at log index {extra.id}",
            )
        if self.entries.head is None or self.entries.head.id != index:
            raise Divergence(
                "hashes_entry", f"id {index}", "the entry_added leaf at this index has no row"
            )
        entry = self.entries.take()
        get = leaf.get
        # Each check below is one comparison when all is well; only a difference takes the
        # slower path that names it.
        if (
            get("list"),
            get("algorithm"),
            get("commitment"),
            get("labels"),
            get("quality"),
            get("partner"),
            get("submission"),
        ) != (
            self.lists.get(entry.hash_list_id),
            entry.algorithm,
            entry.commitment,
            entry.labels,
            entry.quality,
            self.partners.get(entry.partner_id),
            entry.submission_id,
        ):
            self._entry_columns(index, leaf, entry)
        if not (
            entry.status == "active"
            and entry.revoked_log_index is None
            and entry.revocation_id is None
            and entry.erased_log_index is None
            and entry.value is not None
            and entry.salt is not None
            and commitment_opens(entry.algorithm, entry.value, entry.salt, entry.commitment)
        ):
            self._entry_state(index, entry)
        if self.variants.head is not None and self.variants.head[0] <= index:
            self._entry_variants(index, leaf, entry)
        elif get("variants") is not None:
            raise Divergence(
                "hashes_entryvariant", f"entry {index}", "the leaf's variants have no rows"
            )
        self._submission_leaf(index, raw, leaf, entry, submissions)
        self.report.entries += 1

    def _entry_variants(self, index: int, leaf: dict[str, Any], entry: EntryVerifyRow) -> None:
        """The entry's variant rows are its leaf's variants, in order, each opening its
        commitment (or holding nothing, once the entry is erased)."""
        head = self.variants.head
        if head is not None and head[0] < index:
            raise Divergence(
                "hashes_entryvariant", f"entry {head[0]}", "no entry_added leaf lists this variant"
            )
        rows = []
        while self.variants.head is not None and self.variants.head[0] == index:
            rows.append(self.variants.take())
        signed = leaf.get("variants") or []
        where = f"entry {index}"
        if [(v.get("name"), v.get("commitment")) for v in signed] != [
            (name, commitment) for _, _, name, _, _, commitment in rows
        ] or [row[1] for row in rows] != list(range(len(rows))):
            raise Divergence("hashes_entryvariant", where, "the rows are not the leaf's variants")
        for _, position, _, value, salt, commitment in rows:
            if entry.status == "erased":
                if value is not None or salt is not None:
                    raise Divergence(
                        "hashes_entryvariant",
                        where,
                        f"variant {position} of an erased entry still holds a value",
                    )
            elif (
                value is None
                or salt is None
                or not commitment_opens(entry.algorithm, value, salt, commitment)
            ):
                raise Divergence(
                    "hashes_entryvariant",
                    where,
                    f"variant {position}: value and salt do not open the leaf's commitment",
                )

    def _entry_columns(self, index: int, leaf: dict[str, Any], entry: EntryVerifyRow) -> None:
        """The entry's columns are its leaf's."""
        where = f"id {index}"
        for column, expected, found in (
            ("list", leaf.get("list"), self.lists.get(entry.hash_list_id)),
            ("algorithm", leaf.get("algorithm"), entry.algorithm),
            ("commitment", leaf.get("commitment"), entry.commitment),
            ("labels", leaf.get("labels"), entry.labels),
            ("quality", leaf.get("quality"), entry.quality),
            ("partner", leaf.get("partner"), self.partners.get(entry.partner_id)),
            ("submission", leaf.get("submission"), entry.submission_id),
        ):
            if expected != found:
                raise Divergence(
                    "hashes_entry", where, f"{column} differs from its leaf", expected, found
                )

    def _entry_state(self, index: int, entry: EntryVerifyRow) -> None:
        """Value and salt open the leaf's commitment, unless the entry is erased; the status
        agrees with the revocation and erasure columns."""
        where = f"id {index}"
        status = entry.status
        if status == "erased":
            if entry.value is not None or entry.salt is not None:
                raise Divergence("hashes_entry", where, "an erased entry still holds a value")
            if entry.erased_log_index is None:
                raise Divergence("hashes_entry", where, "erased without an erasure event")
        else:
            if entry.erased_log_index is not None:
                raise Divergence("hashes_entry", where, f"status {status} with an erasure event")
            value, salt = entry.value, entry.salt
            if value is None or salt is None:
                raise Divergence("hashes_entry", where, f"status {status} without value and salt")
            if not commitment_opens(entry.algorithm, value, salt, entry.commitment):
                raise Divergence(
                    "hashes_entry", where, "value and salt do not open the leaf's commitment"
                )
        revoked = entry.revoked_log_index is not None
        if (status == "revoked" and not revoked) or (status == "active" and revoked):
            raise Divergence("hashes_entry", where, f"status {status} and revoked_log_index")
        if revoked != (entry.revocation_id is not None):
            raise Divergence("hashes_entry", where, "revocation and revoked_log_index disagree")
        if status not in ("active", "revoked", "erased"):
            raise Divergence("hashes_entry", where, f"unknown status {status!r}")

    def _submission_leaf(
        self,
        index: int,
        raw: bytes,
        leaf: dict[str, Any],
        entry: EntryVerifyRow,
        submissions: dict[int, dict[str, Any]],
    ) -> None:
        submission_id = leaf["submission"]
        group = self.submission
        if group is None or group.id != submission_id:
            self._submission_close()
            row = submissions.get(submission_id)
            if row is None:
                raise Divergence(
                    "hashes_submission",
                    f"id {submission_id}",
                    f"named by the leaf at index {index}, but there is no such row",
                )
            group = self.submission = _SignedGroup(submission_id, row)
            group.signed = self._submission_open(index, raw, leaf, row)
            self.report.submissions += 1
        row = group.row
        position = group.leaves
        group.leaves += 1
        signed = group.signed
        get = leaf.get
        if (
            row["payload_version"] == 2
            and signed is not None
            and position < len(signed)
            and type(signed[position]) is dict
        ):
            # The common case in one comparison, as _submission_entry checks it.
            signed_entry = signed[position]
            labels = signed_entry.get("labels", [])
            if type(labels) is list and all(type(label) is str for label in labels):
                labels = sorted(set(labels))
                if (
                    entry.partner_id,
                    entry.hash_list_id,
                    get("envelope"),
                    get("key"),
                    signed_entry.get("note", ""),
                    signed_entry.get("algorithm"),
                    signed_entry.get("commitment"),
                    signed_entry.get("quality"),
                    labels,
                ) == (
                    row["partner_id"],
                    row["hash_list_id"],
                    row["envelope_sha256"],
                    row["signing_key__key_id"],
                    entry.note,
                    get("algorithm"),
                    get("commitment"),
                    get("quality"),
                    get("labels"),
                ):
                    return
        self._submission_entry(index, leaf, entry, group, position)

    def _submission_entry(
        self,
        index: int,
        leaf: dict[str, Any],
        entry: EntryVerifyRow,
        group: _SignedGroup,
        position: int,
    ) -> None:
        """Entry `position` of the submission `group`: its row and leaf are what was signed."""
        row = group.row
        where = f"id {group.id}"
        for column, expected, found in (
            ("partner", entry.partner_id, row["partner_id"]),
            ("list", entry.hash_list_id, row["hash_list_id"]),
            ("envelope_sha256", leaf.get("envelope"), row["envelope_sha256"]),
            ("signing key", leaf.get("key"), row["signing_key__key_id"]),
        ):
            if expected != found:
                raise Divergence(
                    "hashes_submission", where, f"{column} differs from the leaf at index {index}"
                )
        if group.signed is None:
            return  # a redacted legacy envelope: only its digest is left to compare
        if position >= len(group.signed):
            raise Divergence(
                "hashes_submission",
                where,
                f"its envelope signs {len(group.signed)} entries, the log has more",
            )
        signed = group.signed[position]
        if not isinstance(signed, dict):
            raise Divergence("hashes_submission", where, f"signed entry {position} is no object")
        if signed.get("note", "") != entry.note:
            # Not in the leaf, but signed: the row must hold what the partner signed.
            raise Divergence("hashes_entry", f"id {index}", "note is not the signed note")
        if row["payload_version"] == 1:
            self._legacy_entry(index, where, position, signed, entry)
            return
        labels = signed.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            labels = None
        found = {name: signed.get(name) for name in ("algorithm", "commitment", "quality")}
        # As the server read it (hashes.payloads): labels are a set, stored sorted.
        found["labels"] = None if labels is None else sorted(set(labels))
        # Variants are in a leaf only when signed (an empty list signs none).
        if (signed.get("variants") or None) != leaf.get("variants"):
            raise Divergence(
                "hashes_submission",
                where,
                f"signed entry {position} and the leaf at index {index} differ in variants",
            )
        for name, value in found.items():
            if value != leaf.get(name):
                raise Divergence(
                    "hashes_submission",
                    where,
                    f"signed entry {position} and the leaf at index {index} differ in {name}",
                )

    def _legacy_entry(
        self, index: int, where: str, position: int, signed: dict[str, Any], entry: EntryVerifyRow
    ) -> None:
        """A version 1 envelope signed the value itself: it must be the entry's value."""
        if signed.get("algorithm") != entry.algorithm:
            raise Divergence(
                "hashes_submission", where, f"signed entry {position} is of another algorithm"
            )
        labels = signed.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            labels = None
        if labels is None or sorted(set(labels)) != entry.labels:
            raise Divergence(
                "hashes_submission", where, f"signed entry {position} has other labels"
            )
        if entry.value is None:
            return
        try:
            value = hash_value_parse(entry.algorithm, signed.get("value"))
        except HashValueError:
            value = None
        if value != entry.value:
            raise Divergence(
                "hashes_entry",
                f"id {index}",
                f"the value is not the one signed in entry {position} of its legacy envelope",
            )

    def _signing_key(
        self, table: str, where: str, leaf: dict[str, Any], row: dict[str, Any]
    ) -> Any:
        """The public key the leaf names, as the log registered it; the row's key must be it."""
        registered = self.keys.get(leaf.get("key"))  # type: ignore[arg-type]
        if registered is None:
            raise Divergence(
                "audit_logevent",
                f"index {leaf['index']}",
                f"key {leaf.get('key')} was not registered earlier in the log",
            )
        if bytes(row["signing_key__public_key"] or b"") != registered[1]:
            raise Divergence(
                "partners_signingkey",
                f"key_id {leaf.get('key')}",
                "public key differs from its signing_key_registered leaf",
            )
        if self.partners.get(row["signing_key__partner_id"]) != registered[0]:
            raise Divergence(
                "partners_signingkey",
                f"key_id {leaf.get('key')}",
                "partner differs from its signing_key_registered leaf",
            )
        return Ed25519PublicKey.from_public_bytes(registered[1])

    def _envelope_bytes(self, table: str, where: str, row: dict[str, Any]) -> bytes:
        envelope = bytes(row["envelope"])
        digest = hashlib.sha256(envelope).hexdigest()
        if digest != row["envelope_sha256"]:
            raise Divergence(
                table,
                where,
                "the stored envelope does not hash to envelope_sha256",
                row["envelope_sha256"],
                digest,
            )
        return envelope

    def _submission_open(
        self, index: int, raw: bytes, leaf: dict[str, Any], row: dict[str, Any]
    ) -> list[Any] | None:
        """Verify the submission's envelope once and return the entries it signed (None for
        a redacted legacy envelope, whose bytes are gone)."""
        where = f"id {row['id']}"
        if leaf.get("key") != row["signing_key__key_id"]:
            raise Divergence(
                "hashes_submission",
                where,
                f"signing key differs from the leaf at index {index}",
                leaf.get("key"),
                row["signing_key__key_id"],
            )
        public_key = self._signing_key("hashes_submission", where, leaf, row)
        if row["payload_version"] == 1 and row["redacted_at"] is not None:
            if bytes(row["envelope"]):
                raise Divergence("hashes_submission", where, "redacted, yet holds an envelope")
            return None
        payload_type = PAYLOAD_TYPES.get(row["payload_version"])
        if payload_type is None:
            raise Divergence(
                "hashes_submission", where, f"unknown payload_version {row['payload_version']}"
            )
        envelope = self._envelope_bytes("hashes_submission", where, row)
        # Not verify_envelope: it would re-parse the whole payload for each of the batch's
        # entries. The same checks, once: signature by the leaf's key, type, strict JSON.
        try:
            parsed = envelope_parse(envelope)
            envelope_verify(parsed, [(key_id(public_key), public_key)])
            payload = strict_json_loads(parsed.payload)
        except (EnvelopeError, StrictJsonError) as exc:
            raise Divergence("hashes_submission", where, f"envelope: {exc}") from None
        if parsed.payload_type != payload_type:
            raise Divergence(
                "hashes_submission", where, "payload type", payload_type, parsed.payload_type
            )
        if not isinstance(payload, dict) or payload.get("list") != leaf.get("list"):
            raise Divergence("hashes_submission", where, "the signed list is not the leaf's")
        entries = payload.get("entries")
        if not isinstance(entries, list):
            raise Divergence("hashes_submission", where, "the signed payload has no entries")
        return entries

    def _submission_close(self) -> None:
        group, self.submission = self.submission, None
        if group is None:
            return
        where = f"id {group.id}"
        if group.leaves != group.row["entry_count"]:
            raise Divergence(
                "hashes_submission",
                where,
                "entry_count and the leaves naming it",
                group.leaves,
                group.row["entry_count"],
            )
        if group.signed is not None and len(group.signed) != group.leaves:
            raise Divergence(
                "hashes_submission",
                where,
                "its envelope signs other entries than the log holds",
                f"{len(group.signed)} entries",
                f"{group.leaves} leaves",
            )

    def _entry_revoked(
        self,
        index: int,
        raw: bytes,
        leaf: dict[str, Any],
        partner_id: int | None,
        revocations: dict[int, dict[str, Any]],
        entries: dict[int, tuple[int, int]],
    ) -> None:
        head = self.revoked.head
        if head is None or head[0] != index:
            raise Divergence(
                "hashes_entry",
                f"id {leaf.get('entry')}",
                f"no entry has revoked_log_index {index}, the entry_revoked leaf there names it",
            )
        _, entry_id, revocation_id = self.revoked.take()
        where = f"id {entry_id}"
        if leaf.get("entry") != entry_id or leaf.get("revocation") != revocation_id:
            raise Divergence(
                "hashes_entry",
                where,
                f"its tombstone at index {index} names another entry or revocation",
                f"entry {leaf.get('entry')} revocation {leaf.get('revocation')}",
                f"entry {entry_id} revocation {revocation_id}",
            )
        list_id, submitter = entries[entry_id]
        if leaf.get("list") != self.lists.get(list_id) or leaf.get("partner") != (
            self.partners.get(submitter)
        ):
            raise Divergence(
                "hashes_entry", where, f"list or partner differs from its tombstone at {index}"
            )
        group = self.revocation
        if group is None or group.id != revocation_id:
            self._revocation_close()
            row = revocations.get(revocation_id)  # type: ignore[arg-type]
            if row is None:
                raise Divergence(
                    "hashes_revocation", f"id {revocation_id}", f"named at {index}, no such row"
                )
            group = self.revocation = _SignedGroup(revocation_id, row)  # type: ignore[arg-type]
            group.names = self._revocation_open(index, raw, leaf, row)
            self.report.revocations += 1
        row = group.row
        where = f"id {group.id}"
        for column, expected, found in (
            ("reason", leaf.get("reason"), row["reason"]),
            ("envelope_sha256", leaf.get("envelope"), row["envelope_sha256"]),
            ("signing key", leaf.get("key"), row["signing_key__key_id"]),
            ("partner", row["partner_id"], partner_id),
        ):
            if expected != found:
                raise Divergence(
                    "hashes_revocation", where, f"{column} differs from the leaf at index {index}"
                )
        if row["partner_id"] is not None and entry_id not in group.names:
            raise Divergence(
                "hashes_revocation", where, f"its envelope does not name entry {entry_id}"
            )
        group.leaves += 1

    def _revocation_open(
        self, index: int, raw: bytes, leaf: dict[str, Any], row: dict[str, Any]
    ) -> set[int]:
        """Verify a partner's revocation envelope once and return the entries it names; an
        administrator's revocation has no envelope and names its author in the leaf."""
        where = f"id {row['id']}"
        if row["partner_id"] is None:
            if row["envelope"] is not None or row["envelope_sha256"] is not None:
                raise Divergence("hashes_revocation", where, "an administrator's has an envelope")
            revoked_by = f"admin:{row['administrator']}"
            if leaf.get("revoked_by") != revoked_by or leaf.get("key") is not None:
                raise Divergence(
                    "hashes_revocation",
                    where,
                    f"author differs from the leaf at index {index}",
                    leaf.get("revoked_by"),
                    revoked_by,
                )
            return set()
        if leaf.get("revoked_by") != self.partners.get(row["partner_id"]):
            raise Divergence(
                "hashes_revocation", where, f"partner differs from the leaf at index {index}"
            )
        public_key = self._signing_key("hashes_revocation", where, leaf, row)
        if row["envelope"] is None:
            raise Divergence("hashes_revocation", where, "a partner's revocation has no envelope")
        envelope = self._envelope_bytes("hashes_revocation", where, row)
        try:
            payload = verify_revocation(raw, envelope, public_key)
        except VerificationError as exc:
            raise Divergence("hashes_revocation", where, str(exc)) from None
        reason = payload.get("reason")
        if not isinstance(reason, str) or reason.strip() != row["reason"]:
            raise Divergence("hashes_revocation", where, "reason is not the signed reason")
        return {e for e in payload["entries"] if type(e) is int}

    def _revocation_close(self) -> None:
        group, self.revocation = self.revocation, None
        if group is not None and group.row["partner_id"] is not None:
            if group.leaves != len(group.names):
                raise Divergence(
                    "hashes_revocation",
                    f"id {group.id}",
                    "its envelope names other entries than the log revoked",
                    f"{len(group.names)} entries",
                    f"{group.leaves} tombstones",
                )

    def _entry_erased(self, index: int, leaf: dict[str, Any]) -> None:
        head = self.erased.head
        if head is None or head[0] != index:
            raise Divergence(
                "hashes_entry",
                f"id {leaf.get('entry')}",
                f"no entry has erased_log_index {index}, the entry_erased leaf there names it",
            )
        _, entry_id, reason = self.erased.take()
        if leaf.get("entry") != entry_id or leaf.get("reason") != reason:
            raise Divergence(
                "hashes_entry",
                f"id {entry_id}",
                f"the erasure at index {index} names another entry or reason",
            )
        self.report.erasures += 1

    def _key_registered(self, index: int, leaf: dict[str, Any]) -> None:
        key, partner, public = leaf.get("key"), leaf.get("partner"), leaf.get("public_key")
        try:
            raw = bytes.fromhex(public)  # type: ignore[arg-type]
            Ed25519PublicKey.from_public_bytes(raw)
        except (TypeError, ValueError):
            raise Divergence(
                "audit_logevent", f"index {index}", "the registered public key is not Ed25519"
            ) from None
        if not isinstance(key, str) or key in self.keys or not isinstance(partner, str):
            raise Divergence(
                "audit_logevent", f"index {index}", f"key {key!r} is registered twice or unnamed"
            )
        if key_id(Ed25519PublicKey.from_public_bytes(raw)) != key:
            raise Divergence("audit_logevent", f"index {index}", "key id is not its public key's")
        self.keys[key] = (partner, raw)

    # Feedback, review and quarantine

    def _feedback(self, index: int, raw: bytes, leaf: dict[str, Any]) -> None:
        row = self.feedback.head
        if row is None or row["log_index"] != index:
            found = "none" if row is None else f"feedback {row['id']} at {row['log_index']}"
            raise Divergence(
                "hashes_feedback", f"log_index {index}", "no verdict for this leaf", index, found
            )
        self.feedback.take()
        where = f"id {row['id']}"
        for column, expected, found_value in (
            ("entry", leaf.get("entry"), row["entry_id"]),
            ("partner", leaf.get("partner"), self.partners.get(row["partner_id"])),
            ("verdict", leaf.get("verdict"), row["verdict"]),
            ("reason", leaf.get("reason"), row["reason"]),
            ("grade", leaf.get("grade"), row["grade"] or None),
            ("envelope_sha256", leaf.get("envelope"), row["envelope_sha256"]),
            ("signing key", leaf.get("key"), row["signing_key__key_id"]),
        ):
            if expected != found_value:
                raise Divergence(
                    "hashes_feedback", where, f"{column} differs from the leaf at index {index}"
                )
        public_key = self._signing_key("hashes_feedback", where, leaf, row)
        envelope = self._envelope_bytes("hashes_feedback", where, row)
        try:
            verify_feedback(raw, envelope, public_key)
        except VerificationError as exc:
            raise Divergence("hashes_feedback", where, str(exc)) from None
        self.report.feedback += 1

    def _confirmed(self, index: int, leaf: dict[str, Any]) -> None:
        head = self.confirmed.head
        if head is None or head[0] != index:
            raise Divergence(
                "hashes_entry",
                f"id {leaf.get('entry')}",
                f"no entry has confirmed_log_index {index}, the entry_confirmed leaf there",
            )
        _, entry_id, grade = self.confirmed.take()
        if leaf.get("entry") != entry_id or leaf.get("grade") != (grade or None):
            raise Divergence(
                "hashes_entry", f"id {entry_id}", f"the confirmation at {index} differs"
            )

    def _resolved(self, index: int, leaf: dict[str, Any]) -> None:
        head = self.resolutions.head
        if head is None or head[0] != index:
            raise Divergence(
                "hashes_quarantineresolution",
                f"log_index {index}",
                "no resolution for the entry_quarantine_resolved leaf there",
            )
        _, entry_id, outcome, resolved_by, reason = self.resolutions.take()
        if (
            leaf.get("entry"),
            leaf.get("resolution"),
            leaf.get("resolved_by"),
            leaf.get("reason"),
        ) != (
            entry_id,
            outcome,
            resolved_by,
            reason,
        ):
            raise Divergence(
                "hashes_quarantineresolution",
                f"log_index {index}",
                "entry, resolution, author or reason differs from the leaf",
            )

    # Access periods

    def _period_sealed(self, index: int, leaf: dict[str, Any]) -> None:
        period = self.periods.head
        if period is None or period.number != leaf.get("period"):
            raise Divergence(
                "audit_accessperiod",
                f"number {leaf.get('period')}",
                f"sealed by the leaf at index {index}, but there is no such row",
            )
        self.periods.take()
        where = f"number {period.number}"
        for column, expected, found in (
            ("log_index", index, period.log_index),
            ("after_id", leaf.get("after_id"), period.after_id),
            ("last_id", leaf.get("last_id"), period.last_id),
            ("count", leaf.get("count"), period.count),
            ("root", leaf.get("root"), period.root),
        ):
            if expected != found:
                raise Divergence("audit_accessperiod", where, f"{column} column", expected, found)
        tree = merkle.CompactRange()
        try:
            for event in access_period_event_fields(
                after_id=period.after_id, last_id=period.last_id
            ):
                tree.append(merkle.leaf_hash(access_event_encode(event)))
        except AccessLogError as exc:
            raise Divergence(
                "audit_accessevent", f"ids ({period.after_id}, {period.last_id}]", str(exc)
            ) from None
        if (tree.size, tree.root().hex()) != (period.count, period.root):
            raise Divergence(
                "audit_accessevent",
                f"ids ({period.after_id}, {period.last_id}]",
                f"the events do not hash to the digest sealed as period {period.number}",
                f"{period.count} events, root {period.root}",
                f"{tree.size} events, root {tree.root().hex()}",
            )
        self.report.periods += 1
        self.report.access_events += tree.size

    # The end of the log

    def _finish(self) -> None:
        if self.tree_size != self.size:
            raise Divergence(
                "audit_logevent",
                f"index {self.tree_size}",
                f"the event is missing below the log size {self.size}",
            )
        self._submission_close()
        self._revocation_close()
        beyond = (
            LogEvent.objects.filter(index__gte=self.size)
            .order_by("index")
            .values_list("index", flat=True)
            .first()
        )
        if beyond is not None:
            raise Divergence(
                "audit_logevent", f"index {beyond}", f"an event beyond the log size {self.size}"
            )
        for tiles in self.tile_levels:
            tiles.finish(self.size)
            self.report.tiles += tiles.read
        extra_tile = (
            LogTile.objects.filter(level__gte=len(self.tile_levels))
            .order_by("level", "index")
            .values_list("level", "index")
            .first()
        )
        if extra_tile is not None:
            raise Divergence(
                "audit_logtile",
                merkle.Tile(*extra_tile).path,
                f"a stored tile beyond the tree of size {self.size}",
            )
        if self.checkpoints.head is not None:
            size = self.checkpoints.head[0]
            raise Divergence(
                "audit_logevent",
                f"indexes {self.size}-{size - 1}",
                f"a checkpoint of size {size} was signed, the log holds {self.size} events",
            )
        if self.cosignatures.head is not None:
            row = self.cosignatures.head
            raise Divergence("audit_cosignature", f"id {row[0]}", "of no verified checkpoint")
        for stream, what in (
            (self.revoked, "revoked_log_index"),
            (self.erased, "erased_log_index"),
        ):
            if stream.head is not None:
                index, entry_id, _ = stream.head
                raise Divergence("hashes_entry", f"id {entry_id}", f"{what} {index} names no event")
        if self.entries.head is not None:
            entry_id = self.entries.head.id
            raise Divergence("hashes_entry", f"id {entry_id}", "no entry_added leaf names it")
        if self.variants.head is not None:
            entry_id = self.variants.head[0]
            raise Divergence(
                "hashes_entryvariant", f"entry {entry_id}", "no entry_added leaf lists this variant"
            )
        if self.periods.head is not None:
            number = self.periods.head.number
            raise Divergence("audit_accessperiod", f"number {number}", "no leaf seals it")
        if self.feedback.head is not None:
            verdict = self.feedback.head
            raise Divergence(
                "hashes_feedback", f"id {verdict['id']}", "no entry_feedback leaf names it"
            )
        for stream, table in (
            (self.confirmed, "hashes_entry"),
            (self.resolutions, "hashes_quarantineresolution"),
        ):
            if stream.head is not None:
                raise Divergence(table, f"log index {stream.head[0]}", "names no event")
        orphan = hashes_selectors.submission_without_entries_first()
        if orphan is not None:
            raise Divergence("hashes_submission", f"id {orphan}", "no entry and no leaf names it")
        orphan = hashes_selectors.revocation_without_entries_first()
        if orphan is not None:
            raise Divergence("hashes_revocation", f"id {orphan}", "no entry and no leaf names it")


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in a pipe or a log file.
    return tqdm(total=total, unit="event", unit_scale=True, disable=None, desc="log_verify")


@contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent, read-only view of every table for the whole run.

    Inside an enclosing transaction (a test) the run uses that transaction's view instead.
    """
    if transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def log_verify(*, chunk: int = CHUNK, progress: bool = False) -> LogVerifyReport:
    """Recompute the tree from the leaves and check every table the log commits to.

    Raises `Divergence` (one line) at the first disagreement; returns what was covered
    otherwise. Reads only: it writes nothing, not even an access event (the command does).
    """
    with _snapshot():
        verifier = _Verifier(chunk=chunk, progress=progress)
        try:
            return verifier.run()
        finally:
            verifier.close()
