"""The on-disk form of a partner's verified mirror: one SQLite file.

`consortium sync` writes it (consortium_client.mirror_sync), `consortium match` and `serve-match`
read it (consortium_client.mirror_index). Every sync step commits in one SQLite transaction,
so a process killed at any point leaves the mirror as it was before that step or after it.

Tables:
- `meta`: key/value text: `schema` (SCHEMA_VERSION), `server` (base URL), `origin`, `vkey`
  (the log key trusted on first sync), `cursor` (the index of the last feed event applied,
  -1 before the first), `tree_size` (how much of the log the mirror has verified).
- `checkpoints`: every checkpoint the mirror verified and accepted, in size order, so a later
  fork or rollback is shown against the exact note that was accepted before.
- `events`: every log event the partner may see, its leaf verbatim, by log index.
- `entries`: one row per entry_added event, with what opens its commitment (`value`, `salt`,
  NULL once erased) and its state: `active`, `revoked` or `erased`, with the index and the
  reason of the event that ended it. Ended entries stay: the mirror keeps why they stopped.
  An entry whose value was erased before the mirror first read it is `erased` with no
  `ended_index` until the sync reaches its `entry_erased` event. `review` is `pending` for an
  entry of a list that requires review until its `entry_confirmed` event (then `confirmed`;
  NULL when no review applied), `quarantined` is 1 from its `entry_quarantined` event to its
  `entry_quarantine_resolved` event, and `held_index` is the index of the last of those
  events: an entry matches only while `active`, not `pending` and not quarantined.
  `feedback_status` is the status the entry's latest `entry_feedback` event gave it.
- `variants`: the variants of a pdq entry (PDQ hashes of named edits of the submitter's
  image), by the entry and their position in its leaf, each with what opens its commitment
  (NULL once the entry is erased). They match while their entry is `active`.
- `signing_keys`: partners' signing keys as the log registered and revoked them, to verify
  envelopes without asking the server.
- `index_snapshots`: per algorithm (and `pdq-variants` for the variants of active entries, as
  rows `entry * 64 + position`), the active entries' ids and packed hashes as of `cursor`,
  so a process started per upload loads its index without replaying anything
  (consortium_client.mirror_index: `ids` int64 little-endian, `hashes` each value's bytes as
  its hex decodes, both in id order). `entries_ended` finds what ended after a snapshot's
  cursor, so a stale snapshot is brought forward without reading every entry.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    idx INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    leaf BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    list TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    value TEXT,
    salt TEXT,
    commitment TEXT NOT NULL,
    labels TEXT NOT NULL,
    partner TEXT NOT NULL,
    key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    submission INTEGER NOT NULL,
    quality INTEGER,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'erased')),
    ended_index INTEGER,
    reason TEXT,
    CHECK ((status = 'erased') = (value IS NULL)),
    CHECK (status != 'active' OR ended_index IS NULL),
    CHECK (status != 'revoked' OR ended_index IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS entries_active ON entries (algorithm, id) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS entries_ended ON entries (ended_index) WHERE ended_index IS NOT NULL;
CREATE TABLE IF NOT EXISTS variants (
    entry INTEGER NOT NULL REFERENCES entries (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT,
    salt TEXT,
    commitment TEXT NOT NULL,
    PRIMARY KEY (entry, position)
);
CREATE TABLE IF NOT EXISTS signing_keys (
    key_id TEXT PRIMARY KEY,
    partner TEXT NOT NULL,
    public_key TEXT NOT NULL,
    registered_index INTEGER NOT NULL,
    revoked_index INTEGER
);
CREATE TABLE IF NOT EXISTS index_snapshots (
    algorithm TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL,
    ids BLOB NOT NULL,
    hashes BLOB NOT NULL
);
"""


# Columns added to `entries` for review and quarantine; a mirror made before them gains them
# on open (its synced events predate both, so the defaults are right for every row).
HOLD_COLUMNS = (
    ("review", "TEXT"),
    ("quarantined", "INTEGER NOT NULL DEFAULT 0"),
    ("held_index", "INTEGER"),
    ("feedback_status", "TEXT"),
)


def _hold_columns_add(connection: sqlite3.Connection) -> None:
    present = {row[1] for row in connection.execute("PRAGMA table_info(entries)")}
    for name, declaration in HOLD_COLUMNS:
        if name not in present:
            connection.execute(f"ALTER TABLE entries ADD COLUMN {name} {declaration}")
    connection.execute(
        "CREATE INDEX IF NOT EXISTS entries_held ON entries (held_index) "
        "WHERE held_index IS NOT NULL"
    )


class MirrorStoreError(Exception):
    """A file that is not a mirror this version can use."""


def _mirror_create(path: Path) -> None:
    """Make a new, empty mirror at `path` whole or not at all.

    The file is built under a temporary name beside `path` and linked into place only once its
    tables and schema version are in it: a process killed while making it leaves no file at `path`
    that looks like a mirror but lacks its tables. The temporary file is the owner's alone
    (mkstemp's 0600), as the mirror then is.
    """
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".new", dir=path.parent
    )
    os.close(descriptor)
    try:
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)
            _hold_columns_add(connection)
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", [str(SCHEMA_VERSION)]
            )
        finally:
            # The last connection to close checkpoints the WAL into the file and removes it.
            connection.close()
        # link, not rename: a mirror another process made meanwhile is never replaced.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def mirror_connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and, if `create`, make) the mirror at `path`.

    Autocommit mode: callers open their own transactions (`BEGIN IMMEDIATE`), so that one
    sync step is one transaction. WAL lets `match` read while `sync` writes.
    """
    path = Path(path)
    if not path.exists():
        if not create:
            raise MirrorStoreError(f"no mirror at {path}: run 'consortium sync' first")
        _mirror_create(path)
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        # An erased value must leave the partner's disk too, not linger in a freed page.
        connection.execute("PRAGMA secure_delete=ON")
        connection.executescript(SCHEMA)
        _hold_columns_add(connection)
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", [str(SCHEMA_VERSION)]
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise MirrorStoreError(
                f"{path} is a mirror of schema {row[0]}; this client reads {SCHEMA_VERSION}"
            )
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise MirrorStoreError(f"{path} is not a mirror: {exc}") from exc
    except MirrorStoreError:
        connection.close()
        raise
    return connection


def meta_get(connection: sqlite3.Connection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def meta_set(connection: sqlite3.Connection, key: str, value: str) -> None:
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )
