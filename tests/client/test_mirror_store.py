import sqlite3
import stat

import pytest

from consortium_client import mirror_store
from consortium_client.mirror_store import (
    SCHEMA,
    SCHEMA_VERSION,
    MirrorStoreError,
    meta_get,
    meta_set,
    mirror_connect,
)


def test_a_new_mirror_has_the_schema_and_keeps_meta(tmp_path):
    path = tmp_path / "mirror.db"
    connection = mirror_connect(path)
    assert meta_get(connection, "schema") == str(SCHEMA_VERSION)
    meta_set(connection, "cursor", "41")
    meta_set(connection, "cursor", "42")
    connection.close()
    assert meta_get(mirror_connect(path), "cursor") == "42"


def test_a_new_mirror_is_the_owners_alone_and_leaves_nothing_beside_it(tmp_path):
    mirror_connect(tmp_path / "mirror.db").close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mirror.db"]
    assert stat.S_IMODE((tmp_path / "mirror.db").stat().st_mode) == 0o600


def test_a_mirror_whose_making_fails_midway_is_not_there_at_all(tmp_path, monkeypatch):
    # As if the process died after the tables and before the schema version: no file at the
    # mirror's path may look like a mirror without being one.
    def fail(connection):
        raise KeyboardInterrupt

    monkeypatch.setattr(mirror_store, "_hold_columns_add", fail)
    with pytest.raises(KeyboardInterrupt):
        mirror_connect(tmp_path / "mirror.db")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    connection = mirror_connect(tmp_path / "mirror.db")
    assert meta_get(connection, "schema") == str(SCHEMA_VERSION)


def test_an_erased_entry_holds_no_value_and_an_active_one_no_end(tmp_path):
    connection = mirror_connect(tmp_path / "mirror.db")
    row = (
        "INSERT INTO entries (id, list, algorithm, value, salt, commitment, labels, partner, "
        "key, envelope, submission, quality, status, ended_index, reason) VALUES "
        "(1, 'l', 'md5', ?, ?, 'c', '[]', 'p', 'k', 'e', 1, NULL, ?, ?, NULL)"
    )
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(row, ["ab", "s", "erased", 5])
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(row, ["ab", "s", "active", 5])
    connection.execute(row, [None, None, "erased", 5])


def test_a_mirror_made_before_review_and_quarantine_gains_their_columns(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute("INSERT INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)])
    old.execute(
        "INSERT INTO entries (id, list, algorithm, value, salt, commitment, labels, partner, "
        "key, envelope, submission, status) "
        "VALUES (1, 'l', 'md5', 'ab', 's', 'c', '[]', 'p', 'k', 'e', 1, 'active')"
    )
    old.commit()
    assert "review" not in {row[1] for row in old.execute("PRAGMA table_info(entries)")}
    old.close()

    connection = mirror_connect(path)

    row = connection.execute(
        "SELECT review, quarantined, held_index, feedback_status FROM entries"
    ).fetchone()
    assert row == (None, 0, None, None)


def test_a_missing_or_foreign_file_is_refused(tmp_path):
    with pytest.raises(MirrorStoreError, match="run 'consortium sync'"):
        mirror_connect(tmp_path / "none.db", create=False)
    other = tmp_path / "other.db"
    other.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MirrorStoreError, match="not a mirror"):
        mirror_connect(other)
    newer = tmp_path / "newer.db"
    meta_set(mirror_connect(newer), "schema", "999")
    with pytest.raises(MirrorStoreError, match="schema 999"):
        mirror_connect(newer)
