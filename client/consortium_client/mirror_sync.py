"""The verified local mirror: `sync()` pulls the feed into the SQLite mirror, verifying it.

The server is trusted for nothing but the bytes it sends. One sync:

1. Fetches the latest checkpoint and verifies it: the log key (trusted on first use and
   kept in the mirror, or given), the origin, and a quorum of witnesses' cosignatures when
   asked for. A checkpoint smaller than the last one the mirror accepted is a rollback,
   another root for an accepted size or a tree the consistency proof does not show to
   extend the accepted one is a fork: each is refused.
2. Reads the feed from the mirror's cursor up to that checkpoint's size. Each event's leaf
   must be the leaf hash at its index in the level-0 tiles, and the tiles must hash up to
   the checkpoint's root (each tile fetched and verified once, by its parent tile, up to
   the right edge of the tree, which must make the root). An index the page skips must be
   one the log withholds from this partner (`GET /log/entries`), so a page cannot drop an
   event this partner may see.
3. Checks every `entry_added` event: its value and salt open the leaf's commitment, and its
   submission's envelope (fetched once per submission) hashes to the leaf's `envelope`,
   is signed by the leaf's key as the log registered it for that partner, and signs the
   leaf's list, algorithm, commitment, labels and quality (a legacy version 1 envelope: the
   value itself).
4. Checks every `entry_revoked` event of an entry the mirror holds: the revocation's
   envelope (fetched once per revocation) hashes to the leaf's `envelope`, is signed by the
   leaf's `key`, registered to the entry's submitter and not revoked before the tombstone,
   and names the leaf's entry. A tombstone with neither key nor envelope must name an
   administrator (`revoked_by` `admin:<user>`): the administrator's act, taken as such.
5. Applies review and quarantine: an `entry_added` leaf with `"review": "pending"` adds a
   pending entry, `entry_confirmed` confirms it, `entry_quarantined` and
   `entry_quarantine_resolved` hold it back and restore it (or not, when it was revoked);
   `entry_feedback` sets the entry's feedback status. These leaves are verified as every
   leaf is (in the checkpoint's tree); a verdict's envelope is committed to by its SHA-256.
6. Applies the page (events, entries, keys, revocations, erasures, cursor) in ONE SQLite
   transaction, and with the last page of a sync the index snapshots `match` loads
   (`mirror_index.snapshot_refresh`), so a `match` right after a sync never rebuilds. A
   process killed at any point leaves the mirror as it was before the page or after it,
   and the next sync resumes from the cursor: nothing lost, nothing twice.

Any failed check raises `SyncError` (a `VerificationError`: one line naming the check and
the index) before the page's transaction commits, so the mirror stays exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium_client import leaves, merkle
from consortium_client.api import ApiError, ConsortiumApi
from consortium_client.commitments import CommitmentError, commitment_check
from consortium_client.dsse import (
    SUBMISSION_PAYLOAD_TYPE,
    SUBMISSION_V1_PAYLOAD_TYPE,
    EnvelopeError,
    envelope_parse,
    envelope_verify,
)
from consortium_client.hashvalues import HashValueError, hash_value_parse
from consortium_client.keys import key_id
from consortium_client.mirror_index import snapshot_refresh
from consortium_client.mirror_store import meta_get, meta_set, mirror_connect
from consortium_client.strictjson import StrictJsonError, strict_json_loads
from consortium_client.verify import (
    VerificationError,
    VerifiedCheckpoint,
    verify_checkpoint,
    verify_consistency_proof,
    verify_revocation,
)

DEFAULT_PAGE_SIZE = 1000
# Envelopes of the submissions whose entries are being read; a submission's entries are
# consecutive in the log, so a few suffice to verify each envelope once.
ENVELOPE_CACHE = 64
LOG_ENTRIES_MAX = 1000  # what GET /log/entries serves at most per request
HASH = merkle.HASH_SIZE


class SyncError(VerificationError):
    """The server sent something that does not verify; one line: which check, which index.
    The mirror is left as it was before the step that failed."""


@dataclass(frozen=True)
class SyncResult:
    """What one `sync()` did: the checkpoint it verified up to and what it applied."""

    checkpoint: VerifiedCheckpoint
    cursor: int
    pages: int = 0
    events: int = 0
    added: int = 0
    revoked: int = 0
    erased: int = 0


@dataclass(frozen=True)
class MirrorEntry:
    """One entry of the mirror, with why it stopped matching if it did."""

    id: int
    list: str
    algorithm: str
    value: str | None
    salt: str | None
    commitment: str
    labels: tuple[str, ...]
    partner: str
    key: str
    envelope: str
    submission: int
    quality: int | None
    status: str
    ended_index: int | None
    reason: str | None


@dataclass(frozen=True)
class MirrorCheckpoint:
    """A checkpoint the mirror verified and accepted, with its signed note as received."""

    size: int
    root: bytes
    note: str


_ENTRY_COLUMNS = (
    "id, list, algorithm, value, salt, commitment, labels, partner, key, envelope, "
    "submission, quality, status, ended_index, reason"
)


def _entry(row: tuple[Any, ...]) -> MirrorEntry:
    values = list(row)
    values[6] = tuple(json.loads(values[6]))
    return MirrorEntry(*values)


class Mirror:
    """Read access to a verified mirror (the file `sync()` writes).

    Everything it returns was verified when it was synced; `cursor` is the index of the
    last feed event applied and `tree_size` how much of the log the mirror has verified.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.connection = mirror_connect(self.path, create=False)

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    @property
    def cursor(self) -> int:
        return int(meta_get(self.connection, "cursor") or -1)

    @property
    def tree_size(self) -> int:
        return int(meta_get(self.connection, "tree_size") or 0)

    @property
    def vkey(self) -> str | None:
        return meta_get(self.connection, "vkey")

    @property
    def origin(self) -> str | None:
        return meta_get(self.connection, "origin")

    @property
    def checkpoint(self) -> MirrorCheckpoint | None:
        """The latest checkpoint the mirror accepted (None before the first sync)."""
        return _last_checkpoint(self.connection)

    def entry(self, entry_id: int) -> MirrorEntry | None:
        row = self.connection.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE id = ?",  # noqa: S608
            [entry_id],
        ).fetchone()
        return None if row is None else _entry(row)

    def entries(
        self, *, status: str | None = "active", algorithm: str | None = None
    ) -> Iterator[MirrorEntry]:
        """Entries by id; by default only the active ones (those that may match)."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if algorithm is not None:
            clauses.append("algorithm = ?")
            params.append(algorithm)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT {_ENTRY_COLUMNS} FROM entries{where} ORDER BY id"  # noqa: S608
        for row in self.connection.execute(query, params):
            yield _entry(row)

    def counts(self) -> dict[str, int]:
        """How many entries of each status the mirror holds."""
        rows = self.connection.execute("SELECT status, count(*) FROM entries GROUP BY status")
        return {status: count for status, count in rows}


def _last_checkpoint(connection: sqlite3.Connection) -> MirrorCheckpoint | None:
    row = connection.execute(
        "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    return None if row is None else MirrorCheckpoint(row[0], bytes(row[1]), row[2])


# Tiles: the level-0 hashes of the checkpoint's tree, verified up to its root


class TileVerifier:
    """The tree of one checkpoint, read from the server's tiles and verified once.

    The rightmost (partial) tile of each level is what the root is made of, so they are
    fetched first and must make the checkpoint's root; a full tile is verified by its hash
    being its entry in the tile above, itself verified the same way. Full tiles never change
    as the log grows, so those verified under an earlier checkpoint (of a tree the newer
    one was shown to extend) are kept.
    """

    def __init__(self, api: ConsortiumApi) -> None:
        self.api = api
        self.size = 0
        self.full: dict[tuple[int, int], bytes] = {}
        self.partial: dict[tuple[int, int], bytes] = {}
        # Level-0 tiles fetched ahead (beside the next feed page), not yet verified.
        self.fetched: dict[tuple[int, int], bytes] = {}

    def fetch_ahead(self, first: int, last: int) -> dict[tuple[int, int], bytes]:
        """The full level-0 tiles holding leaves `first`..`last` that are not held yet,
        fetched but NOT verified: `tile` verifies each when it is first used. Run in the
        look-ahead thread, so the tiles' round trips overlap the current page's checks."""
        edge = self.size // merkle.TILE_WIDTH  # the partial tile, held since checkpoint_set
        wanted = range(first // merkle.TILE_WIDTH, min(last // merkle.TILE_WIDTH + 1, edge))
        return {
            (0, index): self.fetch(merkle.Tile(0, index))
            for index in wanted
            if (0, index) not in self.full and (0, index) not in self.fetched
        }

    def fetch(self, tile: merkle.Tile) -> bytes:
        data = self.api.tile(tile.level, tile.index, tile.width)
        if len(data) != tile.width * HASH:
            raise SyncError(f"tile {tile.path} is {len(data)} bytes, not {tile.width * HASH}")
        return data

    def checkpoint_set(self, checkpoint: VerifiedCheckpoint) -> None:
        """Fetch the right edge of `checkpoint`'s tree and check it makes the root."""
        partial = {(t.level, t.index): self.fetch(t) for t in merkle.partial_tiles(checkpoint.size)}

        def read_tile(tile: merkle.Tile) -> bytes:
            data = partial.get((tile.level, tile.index))
            if data is None:  # the edge never needs a full tile; a server that claims so lies
                raise SyncError(f"the tree of size {checkpoint.size} needs no tile {tile.path}")
            return data

        try:
            root = merkle.tree_root_from(checkpoint.size, merkle.tile_subtree_hash(read_tile))
        except ValueError as exc:
            raise SyncError(f"tiles of size {checkpoint.size}: {exc}") from exc
        if root != checkpoint.root:
            raise SyncError(
                f"fork: the tiles of size {checkpoint.size} do not make the checkpoint's root"
            )
        self.size = checkpoint.size
        self.partial = partial

    def tile(self, level: int, index: int) -> bytes:
        """The verified bytes of tile `(level, index)` of the current checkpoint's tree."""
        found = self.partial.get((level, index)) or self.full.get((level, index))
        if found is not None:
            return found
        if index >= self.size >> (merkle.TILE_HEIGHT * (level + 1)):
            raise SyncError(f"tile {level}/{index} is beyond the tree of size {self.size}")
        tile = merkle.Tile(level, index)
        data = self.fetched.pop((level, index), None) or self.fetch(tile)
        parent = self.tile(level + 1, index >> merkle.TILE_HEIGHT)
        position = (index % merkle.TILE_WIDTH) * HASH
        if merkle._tile_range_hash(data) != parent[position : position + HASH]:
            raise SyncError(
                f"tile {tile.path} does not hash to its entry in the tile above "
                f"(tree of size {self.size})"
            )
        self.full[(level, index)] = data
        return data

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise SyncError(f"leaf {index} is beyond the checkpoint of size {self.size}")
        tile, position = divmod(index, merkle.TILE_WIDTH)
        return self.tile(0, tile)[position * HASH : (position + 1) * HASH]

    def forget_leaves_before(self, index: int) -> None:
        """Drop the full level-0 tiles left of `index`: a sync reads forward only."""
        first = index // merkle.TILE_WIDTH
        for held in (self.full, self.fetched):
            for key in [k for k in held if k[0] == 0 and k[1] < first]:
                del held[key]


# Submissions: each envelope fetched and verified once, for all of its entries


@dataclass
class _Submission:
    version: int  # 2, 1 (legacy: signs values) or 0 (legacy, redacted: nothing left to check)
    by_commitment: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_value: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Revocation:
    """A revocation envelope verified once: its SHA-256, its signer and the entries it names."""

    digest: str
    key: str
    entries: frozenset[int]


def _signed_labels(entry: dict[str, Any]) -> list[str] | None:
    # As the server reads them: a set, stored sorted, none when absent.
    labels = entry.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        return None
    return sorted(set(labels))


class _Applier:
    """Verifies a page's events against the mirror and writes them, inside the caller's
    transaction."""

    def __init__(self, api: ConsortiumApi, connection: sqlite3.Connection) -> None:
        self.api = api
        self.db = connection
        self.submissions: OrderedDict[int, _Submission] = OrderedDict()
        self.revocations: OrderedDict[int, _Revocation] = OrderedDict()

    def key(self, key: str, index: int) -> tuple[str, Ed25519PublicKey]:
        row = self.db.execute(
            "SELECT partner, public_key, registered_index, revoked_index "
            "FROM signing_keys WHERE key_id = ?",
            [key],
        ).fetchone()
        if row is None or row[2] >= index:
            raise SyncError(f"event {index}: key {key} was not registered earlier in the log")
        if row[3] is not None and row[3] < index:
            raise SyncError(f"event {index}: key {key} was revoked at index {row[3]}")
        return row[0], Ed25519PublicKey.from_public_bytes(bytes.fromhex(row[1]))

    def submission(
        self, document: dict[str, Any], erased_in_page: set[int]
    ) -> tuple[int, _Submission]:
        submission_id = document.get("submission")
        index = document["index"]
        if type(submission_id) is not int:
            raise SyncError(f"event {index}: the leaf names no submission")
        cached = self.submissions.get(submission_id)
        if cached is not None:
            self.submissions.move_to_end(submission_id)
            return submission_id, cached
        partner, public_key = self.key(document.get("key", ""), index)
        if partner != document.get("partner"):
            raise SyncError(
                f"event {index}: key {document.get('key')} is {partner}'s, "
                f"not {document.get('partner')}'s"
            )
        try:
            envelope = self.api.envelope(submission_id)
        except ApiError as exc:
            raise SyncError(
                f"event {index}: envelope of submission {submission_id}: {exc}"
            ) from exc
        digest = hashlib.sha256(envelope).hexdigest()
        if not envelope and submission_id in erased_in_page:
            # A legacy envelope signed values, so erasing one of its values removed its bytes
            # (its SHA-256 stays in the leaves); nothing is left to check but the digest.
            checked = _Submission(version=0)
        elif digest != document.get("envelope"):
            raise SyncError(
                f"event {index}: the envelope of submission {submission_id} hashes to "
                f"{digest}, not the leaf's {document.get('envelope')}"
            )
        else:
            checked = self._envelope_open(index, submission_id, envelope, public_key, document)
        self.submissions[submission_id] = checked
        if len(self.submissions) > ENVELOPE_CACHE:
            self.submissions.popitem(last=False)
        return submission_id, checked

    def _envelope_open(
        self,
        index: int,
        submission_id: int,
        envelope: bytes,
        public_key: Ed25519PublicKey,
        document: dict[str, Any],
    ) -> _Submission:
        where = f"event {index}: submission {submission_id}"
        try:
            parsed = envelope_parse(envelope)
            envelope_verify(parsed, [(key_id(public_key), public_key)])
            payload = strict_json_loads(parsed.payload)
        except (EnvelopeError, StrictJsonError) as exc:
            raise SyncError(f"{where}: envelope: {exc}") from exc
        versions = {SUBMISSION_PAYLOAD_TYPE: 2, SUBMISSION_V1_PAYLOAD_TYPE: 1}
        version = versions.get(parsed.payload_type)
        if version is None:
            raise SyncError(f"{where}: payload type {parsed.payload_type!r}")
        if not isinstance(payload, dict) or payload.get("list") != document.get("list"):
            raise SyncError(f"{where}: the signed list is not the leaf's")
        signed = payload.get("entries")
        if not isinstance(signed, list):
            raise SyncError(f"{where}: the signed payload has no entries")
        checked = _Submission(version=version)
        for position, entry in enumerate(signed):
            if not isinstance(entry, dict):
                continue
            item = {**entry, "position": position}
            if version == 2 and isinstance(entry.get("commitment"), str):
                checked.by_commitment.setdefault(entry["commitment"], item)
            elif version == 1 and isinstance(entry.get("algorithm"), str):
                try:
                    value = hash_value_parse(entry["algorithm"], entry.get("value"))
                except (HashValueError, KeyError, TypeError):
                    continue
                checked.by_value.setdefault((entry["algorithm"], value), item)
        return checked

    def entry_check(
        self, document: dict[str, Any], value: str | None, erased_in_page: set[int]
    ) -> None:
        """The leaf's entry as its submitter signed it (once per signed entry)."""
        index = document["index"]
        submission_id, checked = self.submission(document, erased_in_page)
        if checked.version == 0:
            return
        if checked.version == 2:
            signed = checked.by_commitment.get(document.get("commitment", ""))
            names: tuple[str, ...] = ("algorithm", "commitment", "quality")
        else:
            # A legacy entry is found by its value; an erased one has nothing left to match.
            if value is None:
                return
            signed = checked.by_value.get((document.get("algorithm", ""), value))
            names = ("algorithm",)
        if signed is None:
            raise SyncError(
                f"event {index}: no entry signed in submission {submission_id} has the "
                f"leaf's commitment and value"
            )
        for name in names:
            if signed.get(name) != document.get(name):
                raise SyncError(
                    f"event {index}: the leaf's {name} is not the one signed in "
                    f"submission {submission_id}"
                )
        if checked.version == 2 and (signed.get("variants") or None) != (
            document.get("variants") or None
        ):
            raise SyncError(
                f"event {index}: the leaf's variants are not those signed in "
                f"submission {submission_id}"
            )
        if _signed_labels(signed) != document.get("labels"):
            raise SyncError(
                f"event {index}: the leaf's labels are not those signed in "
                f"submission {submission_id}"
            )
        if signed["position"] in checked.used:
            raise SyncError(
                f"event {index}: a second leaf for entry {signed['position']} signed in "
                f"submission {submission_id}"
            )
        checked.used.add(signed["position"])

    def revocation_check(
        self, index: int, leaf: bytes, document: dict[str, Any], submitter: str
    ) -> None:
        """The tombstone as its revoker signed it, or an administrator's act."""
        entry_id = document.get("entry")
        key, digest = document.get("key"), document.get("envelope")
        revoked_by = document.get("revoked_by")
        if key is None and digest is None:
            # An administrator revokes without a signature; the leaf names who did it.
            if not (isinstance(revoked_by, str) and revoked_by.startswith("admin:")):
                raise SyncError(
                    f"event {index}: the revocation of entry {entry_id} is signed by no key "
                    f"and names no administrator"
                )
            return
        revocation_id = document.get("revocation")
        if type(revocation_id) is not int or not isinstance(key, str):
            raise SyncError(f"event {index}: the tombstone names no revocation and key")
        if revoked_by != submitter:
            raise SyncError(
                f"event {index}: entry {entry_id} of {submitter} is revoked by {revoked_by!r}"
            )
        partner, public_key = self.key(key, index)
        if partner != submitter:
            raise SyncError(f"event {index}: key {key} is {partner}'s, not {submitter}'s")
        checked = self.revocations.get(revocation_id)
        if checked is None:
            try:
                envelope = self.api.revocation_envelope(revocation_id)
            except ApiError as exc:
                raise SyncError(
                    f"event {index}: envelope of revocation {revocation_id}: {exc}"
                ) from exc
            try:
                payload = verify_revocation(leaf, envelope, public_key)
            except VerificationError as exc:
                raise SyncError(f"event {index}: revocation {revocation_id}: {exc}") from exc
            named = payload.get("entries") or []
            checked = _Revocation(
                hashlib.sha256(envelope).hexdigest(),
                key,
                frozenset(e for e in named if type(e) is int),
            )
            self.revocations[revocation_id] = checked
            if len(self.revocations) > ENVELOPE_CACHE:
                self.revocations.popitem(last=False)
            return
        self.revocations.move_to_end(revocation_id)
        if digest != checked.digest or key != checked.key:
            raise SyncError(
                f"event {index}: the tombstone's envelope or key is not revocation "
                f"{revocation_id}'s"
            )
        if entry_id not in checked.entries:
            raise SyncError(
                f"event {index}: revocation {revocation_id} does not name entry {entry_id}"
            )


@dataclass
class _PageCounts:
    events: int = 0
    added: int = 0
    revoked: int = 0
    erased: int = 0


def _apply_page(
    applier: _Applier,
    tiles: TileVerifier,
    events: list[tuple[int, bytes, dict[str, Any]]],
    openings: dict[int, dict[str, Any]],
) -> _PageCounts:
    """Verify and write one page's events (inside the caller's transaction)."""
    db = applier.db
    counts = _PageCounts()
    erased_in_page = {
        document["submission"]
        for index, _, document in events
        if document.get("type") == leaves.ENTRY_ADDED and openings.get(index, {}).get("erased")
    }
    event_rows = []
    for index, leaf, document in events:
        if merkle.leaf_hash(leaf) != tiles.leaf_hash(index):
            raise SyncError(f"event {index}: the leaf is not the one in the checkpoint's tree")
        kind = document.get("type")
        event_rows.append((index, kind, leaf))
        counts.events += 1
        if kind == leaves.ENTRY_ADDED:
            _entry_add(applier, index, document, openings.get(index), erased_in_page)
            counts.added += 1
        elif kind in (leaves.ENTRY_REVOKED, leaves.ENTRY_ERASED):
            if _entry_end(applier, index, leaf, document):
                if kind == leaves.ENTRY_REVOKED:
                    counts.revoked += 1
                else:
                    counts.erased += 1
        elif kind in leaves.ENTRY_HOLD_TYPES or kind == leaves.ENTRY_FEEDBACK:
            _entry_hold(db, index, document)
        elif kind == leaves.SIGNING_KEY_REGISTERED:
            _key_register(db, index, document)
        elif kind == leaves.SIGNING_KEY_REVOKED:
            db.execute(
                "UPDATE signing_keys SET revoked_index = ? "
                "WHERE key_id = ? AND partner = ? AND revoked_index IS NULL",
                [index, document.get("key"), document.get("partner")],
            )
    db.executemany("INSERT INTO events (idx, type, leaf) VALUES (?, ?, ?)", event_rows)
    return counts


def _entry_add(
    applier: _Applier,
    index: int,
    document: dict[str, Any],
    opening: dict[str, Any] | None,
    erased_in_page: set[int],
) -> None:
    algorithm, commitment = document.get("algorithm"), document.get("commitment")
    if not isinstance(algorithm, str) or not isinstance(commitment, str):
        raise SyncError(f"event {index}: the leaf has no algorithm and commitment")
    if opening is None:
        raise SyncError(f"event {index}: the page holds no value or erasure for the entry")
    value = salt = None
    if not opening.get("erased"):
        value, salt = opening.get("value"), opening.get("salt")
        try:
            commitment_check(algorithm, value, salt, commitment)  # type: ignore[arg-type]
            value = hash_value_parse(algorithm, value)
        except (CommitmentError, HashValueError, TypeError, ValueError) as exc:
            raise SyncError(
                f"event {index}: the value and salt do not open the leaf's commitment ({exc})"
            ) from exc
    variants = _variants_open(index, algorithm, document, opening) if value is not None else []
    applier.entry_check(document, value, erased_in_page)
    labels = document.get("labels")
    applier.db.execute(
        "INSERT INTO entries (id, list, algorithm, value, salt, commitment, labels, partner, "
        "key, envelope, submission, quality, status, review) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            index,
            document.get("list"),
            algorithm,
            value,
            salt,
            commitment,
            json.dumps(labels if isinstance(labels, list) else []),
            document.get("partner"),
            document.get("key"),
            document.get("envelope"),
            document.get("submission"),
            document.get("quality"),
            "active" if value is not None else "erased",
            "pending" if document.get("review") == "pending" else None,
        ],
    )
    if variants:
        applier.db.executemany(
            "INSERT INTO variants (entry, position, name, value, salt, commitment) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(index, position, *variant) for position, variant in enumerate(variants)],
        )


def _variants_open(
    index: int, algorithm: str, document: dict[str, Any], opening: dict[str, Any]
) -> list[tuple[str, str, str, str]]:
    """(name, value, salt, commitment) of each variant the leaf lists, each opened by the
    page's `variants[j]`; a leaf without variants has none, and its opening must have none."""
    signed = document.get("variants") or []
    opened = opening.get("variants") or []
    if not isinstance(signed, list) or not isinstance(opened, list) or len(signed) != len(opened):
        raise SyncError(f"event {index}: the page does not open each of the leaf's variants")
    found = []
    for position, (variant, item) in enumerate(zip(signed, opened, strict=True)):
        try:
            name, commitment = variant["name"], variant["commitment"]
            commitment_check(algorithm, item["value"], item["salt"], commitment)
            value = hash_value_parse(algorithm, item["value"])
        except (CommitmentError, HashValueError, KeyError, TypeError, ValueError) as exc:
            raise SyncError(
                f"event {index}: variant {position} does not open the leaf's commitment ({exc})"
            ) from exc
        found.append((str(name), value, str(item["salt"]), str(commitment)))
    return found


def _entry_end(applier: _Applier, index: int, leaf: bytes, document: dict[str, Any]) -> bool:
    """Stop an entry matching; keep why. False when the mirror does not hold the entry
    (added while its list was hidden from this partner): the event alone is kept."""
    db = applier.db
    entry_id = document.get("entry")
    row = db.execute(
        "SELECT list, partner, status FROM entries WHERE id = ?", [entry_id]
    ).fetchone()
    if row is None:
        return False
    if row[0] != document.get("list"):
        raise SyncError(f"event {index}: it ends entry {entry_id} of another list")
    reason = document.get("reason")
    if document["type"] == leaves.ENTRY_REVOKED:
        if row[1] != document.get("partner"):
            raise SyncError(f"event {index}: it revokes entry {entry_id} of another partner")
        applier.revocation_check(index, leaf, document, row[1])
        if row[2] != "active":
            return False  # ended already; its first end stays
        db.execute(
            "UPDATE entries SET status = 'revoked', ended_index = ?, reason = ? WHERE id = ?",
            [index, reason, entry_id],
        )
    else:
        db.execute(
            "UPDATE entries SET status = 'erased', value = NULL, salt = NULL, "
            "ended_index = ?, reason = ? WHERE id = ?",
            [index, reason, entry_id],
        )
        db.execute("UPDATE variants SET value = NULL, salt = NULL WHERE entry = ?", [entry_id])
    return True


def _entry_hold(db: sqlite3.Connection, index: int, document: dict[str, Any]) -> None:
    """Apply a verdict, confirmation, quarantine or resolution to the entry it names, if the
    mirror holds it (an entry added while its list was hidden has no row: the event is kept)."""
    entry_id, kind = document.get("entry"), document["type"]
    row = db.execute("SELECT list, review FROM entries WHERE id = ?", [entry_id]).fetchone()
    if row is None:
        return
    if row[0] != document.get("list"):
        raise SyncError(f"event {index}: it names entry {entry_id} of another list")
    if kind == leaves.ENTRY_FEEDBACK:
        status = document.get("status")
        if status is not None and not isinstance(status, str):
            raise SyncError(f"event {index}: the feedback status is not text")
        db.execute("UPDATE entries SET feedback_status = ? WHERE id = ?", [status, entry_id])
        return
    if kind == leaves.ENTRY_CONFIRMED:
        change = "review = 'confirmed'"
    elif kind == leaves.ENTRY_QUARANTINED:
        change = "quarantined = 1"
    else:
        change = "quarantined = 0"
    db.execute(
        f"UPDATE entries SET {change}, held_index = ? WHERE id = ?",  # noqa: S608 - fixed text
        [index, entry_id],
    )


def _key_register(db: sqlite3.Connection, index: int, document: dict[str, Any]) -> None:
    public_hex, key = document.get("public_key"), document.get("key")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(public_hex)))
    except ValueError as exc:
        raise SyncError(f"event {index}: the registered public key is not Ed25519") from exc
    if key_id(public_key) != key:
        raise SyncError(f"event {index}: the registered key's id is not {key}")
    db.execute(
        "INSERT INTO signing_keys (key_id, partner, public_key, registered_index) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (key_id) DO NOTHING",
        [key, document.get("partner"), public_hex, index],
    )


_NEXT = re.compile(rb'"next":"([0-9]{1,19})"')


def _page_next(raw: bytes) -> int | None:
    """The `next` cursor of a feed page, read from its end without parsing it (the page is
    parsed, and checked, when it is applied)."""
    found = _NEXT.search(raw, max(0, len(raw) - 200))
    return None if found is None else int(found.group(1))


def _canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _page_read(
    raw: bytes, after: int
) -> tuple[list[tuple[int, bytes, dict[str, Any]]], Any, int, bool]:
    """The events of a feed page as (index, leaf bytes, fields), its openings by index, its
    next cursor and has_more. A leaf is canonical JSON served verbatim, so re-encoding what
    was parsed gives its exact bytes (any other spelling fails the tile check)."""
    try:
        page = json.loads(raw)
        events, values = page["events"], page["values"]
        next_cursor, has_more = int(page["next"]), page["has_more"]
        if not isinstance(events, list) or not isinstance(values, list):
            raise TypeError("events and values must be lists")
        openings = {int(item["index"]): item for item in values}
        parsed = []
        previous = after
        for document in events:
            index = document["index"]
            if type(index) is not int or index <= previous:
                raise ValueError(f"event {index!r} is out of order after {previous}")
            previous = index
            parsed.append((index, _canonical(document), document))
    except (ValueError, TypeError, KeyError) as exc:
        raise SyncError(f"the feed page after cursor {after} is malformed: {exc}") from exc
    return parsed, openings, next_cursor, bool(has_more)


def _gaps_check(
    api: ConsortiumApi, tiles: TileVerifier, after: int, end: int, served: set[int]
) -> None:
    """Every index in (after, end] that the page left out must be one the log withholds
    from this partner: a page that drops an event this partner may see is refused."""
    missing = [i for i in range(after + 1, end + 1) if i not in served]
    start = 0
    while start < len(missing):
        # One request per run of consecutive indexes, at most LOG_ENTRIES_MAX long.
        stop = start + 1
        while (
            stop < len(missing)
            and missing[stop] == missing[stop - 1] + 1
            and stop - start < LOG_ENTRIES_MAX
        ):
            stop += 1
        first, last = missing[start], missing[stop - 1]
        try:
            found = api.log_entries(first, last + 1)
        except (ApiError, VerificationError) as exc:
            raise SyncError(f"log entries {first} to {last}: {exc}") from exc
        if [entry.index for entry in found] != list(range(first, last + 1)):
            raise SyncError(f"log entries {first} to {last}: the server sent other indexes")
        for entry in found:
            if entry.leaf is not None:
                raise SyncError(
                    f"event {entry.index}: the feed left it out, yet the log serves it to "
                    f"this partner (a dropped event)"
                )
            if entry.leaf_hash != tiles.leaf_hash(entry.index):
                raise SyncError(f"event {entry.index}: its withheld hash is not the tree's")
        start = stop


def _checkpoint_accept(
    api: ConsortiumApi,
    connection: sqlite3.Connection,
    note: str,
    *,
    vkey: str,
    origin: str | None,
    witnesses: tuple[str, ...],
    quorum: int,
) -> tuple[VerifiedCheckpoint, bool]:
    """The server's checkpoint, verified and shown to extend the mirror's last one; True if
    it is new to the mirror (to be stored with the first page)."""
    checkpoint = verify_checkpoint(note, vkey, origin, witnesses=witnesses, quorum=quorum)
    last = _last_checkpoint(connection)
    if last is None:
        return checkpoint, True
    if checkpoint.size < last.size:
        same = connection.execute(
            "SELECT root FROM checkpoints WHERE size = ?", [checkpoint.size]
        ).fetchone()
        if same is not None and bytes(same[0]) != checkpoint.root:
            raise SyncError(
                f"fork: another root for size {checkpoint.size} than the mirror accepted"
            )
        raise SyncError(
            f"rollback: the checkpoint is of size {checkpoint.size}, smaller than the "
            f"size {last.size} the mirror accepted"
        )
    if checkpoint.size == last.size:
        if checkpoint.root != last.root:
            raise SyncError(
                f"fork: another root for size {checkpoint.size} than the mirror accepted"
            )
        return checkpoint, False
    accepted = VerifiedCheckpoint(checkpoint.origin, last.size, last.root, last.note)
    if last.size > 0:
        try:
            proof = api.consistency_proof(last.size, checkpoint.size)
            verify_consistency_proof(proof, accepted, checkpoint)
        except VerificationError as exc:
            raise SyncError(
                f"fork: the checkpoint of size {checkpoint.size} does not extend the one of "
                f"size {last.size} the mirror accepted ({exc})"
            ) from exc
    return checkpoint, True


@dataclass
class Syncer:
    """A sync session: keeps the tiles it verified between syncs (`--watch`)."""

    api: ConsortiumApi
    path: Path
    vkey: str | None = None
    origin: str | None = None
    witnesses: tuple[str, ...] = ()
    quorum: int = 0
    page_size: int = DEFAULT_PAGE_SIZE
    progress: bool = False
    tiles: TileVerifier | None = None

    def sync(self) -> SyncResult:
        connection = mirror_connect(self.path)
        try:
            return self._sync(connection)
        finally:
            connection.close()

    def _sync(self, connection: sqlite3.Connection) -> SyncResult:
        api = self.api
        known = meta_get(connection, "vkey")
        vkey = self.vkey or known or api.log_key()
        vkey = vkey.strip()
        if known is not None and known != vkey:
            raise SyncError(f"the mirror trusts the log key {known.split('+')[0]}, not this one")
        origin = self.origin or meta_get(connection, "origin")
        checkpoint, new = _checkpoint_accept(
            api,
            connection,
            api.checkpoint(),
            vkey=vkey,
            origin=origin,
            witnesses=self.witnesses,
            quorum=self.quorum,
        )
        if self.tiles is None or self.tiles.api is not api:
            self.tiles = TileVerifier(api)
        tiles = self.tiles
        if tiles.size != checkpoint.size:
            tiles.checkpoint_set(checkpoint)
        cursor = int(meta_get(connection, "cursor") or -1)
        first_meta = {
            "vkey": vkey,
            "origin": checkpoint.origin,
            "server": meta_get(connection, "server") or api.base_url,
        }
        pending = new  # the checkpoint (and trust on first use) commit with the first page
        applier = _Applier(api, connection)
        totals = _PageCounts()
        pages = 0
        bar = _progress_bar(self.progress, checkpoint.size - cursor - 1)
        # The next page is fetched while this one is verified and written: the server's
        # time and the client's overlap. A page fetched ahead of a refusal is dropped.
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed")
        fetched: tuple[int, Future[tuple[bytes, dict[tuple[int, int], bytes]]]] | None = None

        def page_and_tiles(after: int) -> tuple[bytes, dict[tuple[int, int], bytes]]:
            """A feed page and the level-0 tiles of its leaves, fetched in the look-ahead
            thread; the tiles are verified only when used."""
            raw = api.feed_page(after, self.page_size)
            last = _page_next(raw)
            if last is None or last <= after:
                return raw, {}
            return raw, tiles.fetch_ahead(after + 1, min(last, checkpoint.size - 1))

        try:
            while cursor < checkpoint.size - 1 or pending:
                events: list[tuple[int, bytes, dict[str, Any]]] = []
                openings: dict[int, dict[str, Any]] = {}
                end = cursor
                if cursor < checkpoint.size - 1:
                    if fetched is not None and fetched[0] == cursor:
                        raw, ahead_tiles = fetched[1].result()
                        tiles.fetched.update(ahead_tiles)
                    else:
                        raw = api.feed_page(cursor, self.page_size)
                    events, openings, next_cursor, _ = _page_read(raw, cursor)
                    events = [e for e in events if e[0] < checkpoint.size]
                    end = min(next_cursor, checkpoint.size - 1)
                    if end < checkpoint.size - 1 and (not events or events[-1][0] <= end):
                        fetched = (end, ahead.submit(page_and_tiles, end))
                    if end <= cursor and not events:
                        raise SyncError(
                            f"the feed after cursor {cursor} ends before the checkpoint's "
                            f"size {checkpoint.size}"
                        )
                    if events:
                        end = max(end, events[-1][0])
                    _gaps_check(api, tiles, cursor, end, {e[0] for e in events})
                connection.execute("BEGIN IMMEDIATE")
                try:
                    if meta_get(connection, "cursor") != (None if cursor == -1 else str(cursor)):
                        raise SyncError("another sync wrote the mirror meanwhile; run sync again")
                    if pending:
                        for key, value in first_meta.items():
                            meta_set(connection, key, value)
                        connection.execute(
                            "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)",
                            [checkpoint.size, checkpoint.root, checkpoint.note],
                        )
                    counts = _apply_page(applier, tiles, events, openings)
                    meta_set(connection, "cursor", str(end))
                    if end >= checkpoint.size - 1:
                        meta_set(connection, "tree_size", str(checkpoint.size))
                        # With the last page, in its transaction: a `match` started right
                        # after the sync loads the snapshots as they are, never rebuilds.
                        snapshot_refresh(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                pending = False
                pages += 1
                bar.update(end - cursor)
                cursor = end
                tiles.forget_leaves_before(cursor + 1)
                for name in ("events", "added", "revoked", "erased"):
                    setattr(totals, name, getattr(totals, name) + getattr(counts, name))
        finally:
            ahead.shutdown(wait=True, cancel_futures=True)
            bar.close()
        if totals.erased:
            # secure_delete zeroes the erased values in the database's pages, but the write-
            # ahead log still holds the pages as they were: write it back and empty it.
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return SyncResult(
            checkpoint,
            cursor,
            pages,
            totals.events,
            totals.added,
            totals.revoked,
            totals.erased,
        )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    # disable=None: a bar on a terminal, none when stderr is a pipe or a file.
    return tqdm(total=max(total, 0), unit="event", disable=None, leave=False)


def sync(
    api: ConsortiumApi,
    mirror: str | Path,
    *,
    vkey: str | None = None,
    origin: str | None = None,
    witnesses: tuple[str, ...] = (),
    quorum: int = 0,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: bool = False,
) -> SyncResult:
    """Bring the mirror at `mirror` up to the server's latest checkpoint, verifying it all.

    `vkey` is the log's verifier key: the one the mirror trusts already, else this one, else
    the server's, trusted on first use. `witnesses` (cosignature/v1 vkeys) and `quorum` ask
    that many of them to have cosigned the checkpoint. SyncError (one line) on anything that
    does not verify, with the mirror left as it was after the last page that did.
    """
    return Syncer(
        api,
        Path(mirror),
        vkey=vkey,
        origin=origin,
        witnesses=tuple(witnesses),
        quorum=quorum,
        page_size=page_size,
        progress=progress,
    ).sync()


def sync_watch(
    syncer: Syncer,
    *,
    interval: float,
    report: Callable[[SyncResult], None],
    rounds: int | None = None,
) -> None:
    """Sync, then again every `interval` seconds (`rounds` times, or until interrupted)."""
    done = 0
    while rounds is None or done < rounds:
        started = time.monotonic()
        report(syncer.sync())
        done += 1
        if rounds is not None and done >= rounds:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
