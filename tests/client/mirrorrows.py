"""A mirror written row by row through `mirror_store`, as sync leaves one, so that matching is
tested without a server and without depending on how sync fills it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from consortium_client.commitments import commitment_of, salt_new
from consortium_client.mirror_store import meta_set, mirror_connect

ENVELOPE_SHA256 = "ab" * 32


class MirrorRows:
    """A mirror under construction. Ids are log indexes and only grow, as in the log; every
    call is one transaction that also moves the cursor to the event it applies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection: sqlite3.Connection = mirror_connect(path)
        self.cursor = -1
        with self._step():
            meta_set(self.connection, "origin", "consortium.example/log")

    def _step(self) -> _Transaction:
        return _Transaction(self.connection)

    def add(
        self,
        algorithm: str,
        value: str,
        *,
        hash_list: str = "ncii",
        labels: tuple[str, ...] = ("victim-report",),
        partner: str = "hotline",
        quality: int | None = None,
    ) -> int:
        """Add one active entry at the next log index; returns its id."""
        self.cursor += 1
        salt = salt_new()
        with self._step():
            self.connection.execute(
                "INSERT INTO entries (id, list, algorithm, value, salt, commitment, labels, "
                "partner, key, envelope, submission, quality, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active')",
                [
                    self.cursor,
                    hash_list,
                    algorithm,
                    value,
                    salt,
                    commitment_of(algorithm, value, salt),
                    json.dumps(list(labels)),
                    partner,
                    "key-" + partner,
                    ENVELOPE_SHA256,
                    1000 + self.cursor,
                    quality,
                ],
            )
            meta_set(self.connection, "cursor", str(self.cursor))
        return self.cursor

    def revoke(self, entry: int, reason: str = "submitted in error") -> int:
        return self._end(entry, "revoked", reason)

    def erase(self, entry: int, reason: str = "court order") -> int:
        return self._end(entry, "erased", reason)

    def _end(self, entry: int, status: str, reason: str) -> int:
        self.cursor += 1
        with self._step():
            self.connection.execute(
                "UPDATE entries SET status = ?, ended_index = ?, reason = ?, "
                "value = CASE WHEN ? = 'erased' THEN NULL ELSE value END, "
                "salt = CASE WHEN ? = 'erased' THEN NULL ELSE salt END WHERE id = ?",
                [status, self.cursor, reason, status, status, entry],
            )
            meta_set(self.connection, "cursor", str(self.cursor))
        return self.cursor

    def hold(self, entry: int, *, review: str | None = None, quarantined: bool = False) -> int:
        """The entry's review or quarantine changed (its entry_confirmed, _quarantined or
        _quarantine_resolved event)."""
        self.cursor += 1
        with self._step():
            self.connection.execute(
                "UPDATE entries SET review = ?, quarantined = ?, held_index = ? WHERE id = ?",
                [review, int(quarantined), self.cursor, entry],
            )
            meta_set(self.connection, "cursor", str(self.cursor))
        return self.cursor

    def other_event(self) -> int:
        """An event that changes no entry (a signing key registered, say): the cursor moves."""
        self.cursor += 1
        with self._step():
            meta_set(self.connection, "cursor", str(self.cursor))
        return self.cursor


class _Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind: object, *_: object) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")
