"""`consortium sync` through a live server: the verified mirror, as a partner builds it.

Everything here talks HTTP to a real server (pytest-django's live_server on PostgreSQL);
nothing reads the server's tables to decide what the mirror should hold but the scenario's
own record of what it did."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audit.actors import Actor
from audit.services import checkpoint_sign
from consortium_client.api import ConsortiumApi
from consortium_client.cli_sync import sync_command
from consortium_client.config import Config
from consortium_client.payloads import revocation_envelope, submission_envelope
from consortium_client.sync import Mirror, SyncError, sync
from hashes.models import HashList
from hashes.services import entry_erase
from tests.conftest import PartnerClient, partner_client, pdq
from tests.factories import HashListFactory

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = ("meta", "checkpoints", "events", "entries", "signing_keys")


def mirror_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the sync writes, in a stable order."""
    connection = sqlite3.connect(path)
    try:
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608
            for table in TABLES
        }
    finally:
        connection.close()


def submit(api: ConsortiumApi, partner: PartnerClient, list_name: str, count: int) -> list[int]:
    entries = [{"algorithm": "pdq", "value": pdq(), "labels": ["ncii"]} for _ in range(count)]
    result = api.submit(submission_envelope(list_name, entries, partner.private_key))
    return [entry["id"] for entry in result["entries"]]


def revoke(api: ConsortiumApi, partner: PartnerClient, ids: list[int], reason: str) -> None:
    api.post_envelope("revocations", revocation_envelope(ids, reason, partner.private_key))


class World:
    """Alice shares a list with everyone; carol keeps one to herself; bob mirrors."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.alice, self.bob, self.carol = (partner_client(n) for n in ("alice", "bob", "carol"))
        HashListFactory(name="ncii", owner=self.alice.partner, visibility=HashList.Visibility.ALL)
        HashListFactory(
            name="private", owner=self.carol.partner, visibility=HashList.Visibility.OWNER
        )
        self.a = ConsortiumApi(url, self.alice.api_key)
        self.b = ConsortiumApi(url, self.bob.api_key)
        self.c = ConsortiumApi(url, self.carol.api_key)
        self.shared: list[int] = []
        self.private: list[int] = []

    def grow(self, submissions: int = 4, size: int = 6) -> None:
        for _ in range(submissions):
            self.shared += submit(self.a, self.alice, "ncii", size)
            self.private += submit(self.c, self.carol, "private", 2)
        checkpoint_sign()


@pytest.fixture
def world(live_server: Any) -> World:
    world = World(live_server.url)
    world.grow()
    return world


def test_sync_mirrors_what_the_partner_may_see_verified(world: World, tmp_path: Path) -> None:
    revoke(world.a, world.alice, world.shared[:2], "false positive")
    erased = entry_erase(actor=Actor.command("tests"), entry_id=world.shared[5], reason="court")
    checkpoint_sign()
    path = tmp_path / "mirror.db"

    result = sync(world.b, path, page_size=7)

    assert result.pages > 3
    with Mirror(path) as mirror:
        assert mirror.tree_size == result.checkpoint.size
        assert mirror.checkpoint is not None
        assert mirror.checkpoint.root == result.checkpoint.root
        entries = {entry.id: entry for entry in mirror.entries(status=None)}
        assert sorted(entries) == world.shared
        assert not set(world.private) & set(entries)
        assert mirror.counts() == {"active": len(world.shared) - 3, "revoked": 2, "erased": 1}
        for entry_id in world.shared[:2]:
            assert (entries[entry_id].status, entries[entry_id].reason) == (
                "revoked",
                "false positive",
            )
            assert entries[entry_id].value is not None
        gone = entries[world.shared[5]]
        assert (gone.status, gone.value, gone.salt, gone.reason) == ("erased", None, None, "court")
        assert gone.ended_index == erased.log_index
        assert all(e.value and e.salt for e in mirror.entries())
    # Nothing of carol's owner-only list is in the mirror, not even its events.
    connection = sqlite3.connect(path)
    indexes = {row[0] for row in connection.execute("SELECT idx FROM events")}
    assert not set(world.private) & indexes
    keys = {row[0] for row in connection.execute("SELECT partner FROM signing_keys")}
    assert {"alice", "bob", "carol"} <= keys


def test_sync_resumes_from_its_cursor_and_follows_a_new_checkpoint(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "mirror.db"
    first = sync(world.b, path, page_size=5)
    assert sync(world.b, path).events == 0  # nothing new: nothing fetched twice

    world.grow(submissions=2)
    revoke(world.a, world.alice, world.shared[-1:], "duplicate")
    checkpoint_sign()
    second = sync(world.b, path, page_size=5)

    assert second.checkpoint.size > first.checkpoint.size
    assert (second.added, second.revoked) == (12, 1)
    fresh = tmp_path / "fresh.db"
    sync(world.b, fresh, page_size=1000)
    rows, fresh_rows = mirror_rows(path), mirror_rows(fresh)
    # The resumed mirror accepted two checkpoints on its way; the fresh one only the last.
    assert rows.pop("checkpoints")[-1] == fresh_rows.pop("checkpoints")[-1]
    assert rows == fresh_rows


def test_sync_refuses_another_log_key(world: World, tmp_path: Path) -> None:
    from consortium_client.keys import key_generate
    from consortium_client.notes import note_verifier

    path = tmp_path / "mirror.db"
    sync(world.b, path)
    before = mirror_rows(path)
    other = note_verifier("consortium.example/log", key_generate().public_key()).vkey
    with pytest.raises(SyncError, match="the mirror trusts the log key"):
        sync(world.b, path, vkey=other)
    assert mirror_rows(path) == before


def test_sync_command_reports_in_one_line(world: World, tmp_path: Path) -> None:
    config = Config(
        url=world.url,
        api_key=world.bob.api_key,
        signing_key=None,
        mirror=tmp_path / "mirror.db",
        state=tmp_path / "state.json",
        timeout=10,
    )
    result = CliRunner().invoke(sync_command, ["--page-size", "9"], obj=config)
    assert result.exit_code == 0, result.output
    assert f"{len(world.shared)} added" in result.output
    assert "verified up to size" in result.output


RUNNER = """
import sys
from consortium_client.api import ConsortiumApi
from consortium_client.sync import sync
url, key, path = sys.argv[1:4]
sync(ConsortiumApi(url, key), path, page_size=3)
"""


def _sync_process(world: World, path: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "client")}
    return subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", RUNNER, world.url, world.bob.api_key, str(path)],
        env=environment,
        stderr=subprocess.PIPE,
    )


def _mirror_consistent(path: Path) -> int:
    """The mirror after a kill: intact, and holding exactly the events up to its cursor."""
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        cursor = connection.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
        last = connection.execute("SELECT max(idx) FROM events").fetchone()[0]
        if cursor is None:
            assert last is None
            return -1
        assert last is None or last <= int(cursor[0])
        return int(cursor[0])
    finally:
        connection.close()


def test_sync_killed_at_random_points_resumes_to_a_fresh_mirror(
    world: World, tmp_path: Path
) -> None:
    world.grow(submissions=6, size=5)
    revoke(world.a, world.alice, world.shared[3:9], "withdrawn")
    entry_erase(actor=Actor.command("tests"), entry_id=world.shared[10], reason="court")
    checkpoint_sign()
    fresh = tmp_path / "fresh.db"
    started = time.monotonic()
    process = _sync_process(world, fresh)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    duration = time.monotonic() - started
    expected = mirror_rows(fresh)
    final_cursor = _mirror_consistent(fresh)

    generator = random.Random(8)  # kill times, not secrets: reproducible
    interrupted = 0
    partial: list[int] = []
    for run in range(3):
        path = tmp_path / f"killed-{run}.db"
        for _ in range(40):
            process = _sync_process(world, path)
            try:
                process.wait(timeout=generator.uniform(0.1, duration))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                interrupted += 1
            if process.returncode == 0:
                break
            assert process.returncode == -signal.SIGKILL, process.stderr
            if path.exists():
                partial.append(_mirror_consistent(path))
        else:
            pytest.fail("the sync never finished between kills")
        assert mirror_rows(path) == expected
        assert _mirror_consistent(path) == final_cursor
    # Kills landed mid-sync: mirrors holding some pages and not others were resumed.
    assert interrupted >= 3
    assert len({cursor for cursor in partial if -1 < cursor < final_cursor}) >= 2, partial
