"""`consortium sync` through a live server: the verified mirror, as a partner builds it.

Everything here talks HTTP to a real server (pytest-django's live_server on PostgreSQL);
nothing reads the server's tables to decide what the mirror should hold but the scenario's
own record of what it did."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from django.conf import settings

from audit.actors import Actor
from audit.services import checkpoint_sign, log_signer
from audit.tree import tree_root
from consortium_client import merkle
from consortium_client.api import ConsortiumApi
from consortium_client.cli_sync import sync_command
from consortium_client.config import Config
from consortium_client.mirror_sync import Mirror, Syncer, SyncError, SyncResult, sync, sync_watch
from consortium_client.notes import checkpoint_format, note_sign
from consortium_client.payloads import revocation_envelope, submission_envelope
from hashes.models import HashList
from hashes.services import entry_erase
from tests.conftest import PartnerClient, partner_client, pdq
from tests.factories import HashListFactory
from tests.videos import vpdq_synthetic

pytestmark = pytest.mark.django_db(transaction=True)

TABLES = ("meta", "checkpoints", "events", "entries", "signing_keys", "index_snapshots")


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
from consortium_client.mirror_sync import sync
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


# A tampering server: a proxy in front of the live server that alters what it forwards.

Alter = Callable[[str, bytes], bytes]


class TamperingProxy:
    """Forwards every GET to the real server, passing each answer through `alter(path, body)`
    (the identity until a test sets it)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.alter: Alter = lambda path, body: body
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                request = urllib.request.Request(  # noqa: S310 - the live server's http URL
                    proxy.upstream + self.path,
                    headers={"Authorization": self.headers["Authorization"]},
                )
                try:
                    with urllib.request.urlopen(request) as response:  # noqa: S310
                        status, body = response.status, response.read()
                        content_type = response.headers["Content-Type"]
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                    content_type = error.headers["Content-Type"]
                if status == 200:
                    body = proxy.alter(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(world: World) -> Iterator[TamperingProxy]:
    proxy = TamperingProxy(world.url)
    yield proxy
    proxy.close()


def _feed_alter(change: Callable[[dict[str, Any]], None]) -> Alter:
    def alter(path: str, body: bytes) -> bytes:
        if not path.startswith("/api/v1/feed"):
            return body
        page = json.loads(body)
        change(page)
        return json.dumps(page).encode()

    return alter


def _signed_checkpoint(size: int, root: bytes | None = None) -> str:
    """A checkpoint signed with the log's own key: what a compromised server can serve."""
    return note_sign(
        checkpoint_format(
            settings.LOG_ORIGIN, size, tree_root(size=size) if root is None else root
        ),
        [log_signer()],
    )


def _checkpoint_alter(note: str) -> Alter:
    def alter(path: str, body: bytes) -> bytes:
        return note.encode() if path.startswith("/api/v1/log/checkpoint") else body

    return alter


def _refused(world: World, proxy: TamperingProxy, path: Path, message: str) -> None:
    """A sync through the proxy is refused with one line saying `message`; the mirror is
    exactly as it was (what the server added since fits one page, one transaction: none of
    it is applied); the honest server's sync then succeeds from there."""
    before = mirror_rows(path)
    with pytest.raises(SyncError, match=message) as refusal:
        sync(ConsortiumApi(proxy.url, world.bob.api_key), path)
    assert "\n" not in str(refusal.value)
    assert mirror_rows(path) == before
    proxy.alter = lambda path, body: body
    assert sync(ConsortiumApi(proxy.url, world.bob.api_key), path).events > 0


def _new_entries(world: World) -> None:
    world.grow(submissions=2, size=3)


def test_sync_refuses_a_changed_value(world: World, proxy: TamperingProxy, tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    sync(world.b, path)
    _new_entries(world)
    target = world.shared[-2]

    def change(page: dict[str, Any]) -> None:
        for opening in page["values"]:
            if opening["index"] == target:
                opening["value"] = pdq()

    proxy.alter = _feed_alter(change)
    _refused(world, proxy, path, f"event {target}: the value and salt do not open")


def test_sync_refuses_a_changed_leaf(world: World, proxy: TamperingProxy, tmp_path: Path) -> None:
    path = tmp_path / "mirror.db"
    sync(world.b, path)
    _new_entries(world)
    target = world.shared[-1]

    def change(page: dict[str, Any]) -> None:
        for event in page["events"]:
            if event["index"] == target:
                event["labels"] = ["terrorism"]

    proxy.alter = _feed_alter(change)
    _refused(world, proxy, path, f"event {target}: the leaf is not the one in the checkpoint")


def test_sync_refuses_a_rewritten_old_checkpoint(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    path = tmp_path / "mirror.db"
    accepted = sync(world.b, path).checkpoint
    _new_entries(world)
    checkpoint_sign()
    # The same size as the one the mirror accepted, another root: a rewritten history.
    proxy.alter = _checkpoint_alter(_signed_checkpoint(accepted.size, b"\x07" * 32))
    _refused(world, proxy, path, f"fork: another root for size {accepted.size}")


def test_sync_refuses_a_rolled_back_checkpoint(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    path = tmp_path / "mirror.db"
    accepted = sync(world.b, path).checkpoint
    _new_entries(world)
    # A genuine, older checkpoint of the same log: the server hides what came since.
    proxy.alter = _checkpoint_alter(_signed_checkpoint(accepted.size - 5))
    _refused(world, proxy, path, f"rollback: the checkpoint is of size {accepted.size - 5}")


def test_sync_refuses_a_fork_served_to_one_partner(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    path, alices = tmp_path / "mirror.db", tmp_path / "alice.db"
    sync(world.b, path)
    _new_entries(world)
    honest = checkpoint_sign()
    # Bob is shown a tree of the same new size in which one leaf differs; alice, the
    # honest one. Each checkpoint is signed by the log key.
    hashes = [bytes(32)] * honest.size
    forked_root = merkle.root([*hashes[:-1], b"\x01" * 32])
    proxy.alter = _checkpoint_alter(_signed_checkpoint(honest.size, forked_root))
    assert sync(world.a, alices).checkpoint.size == honest.size
    _refused(world, proxy, path, f"fork: the checkpoint of size {honest.size} does not extend")


def test_sync_refuses_a_page_that_drops_a_revocation(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    path = tmp_path / "mirror.db"
    sync(world.b, path)
    revoke(world.a, world.alice, [world.shared[0]], "false positive")
    checkpoint_sign()

    def change(page: dict[str, Any]) -> None:
        page["events"] = [e for e in page["events"] if e["type"] != "entry_revoked"]

    proxy.alter = _feed_alter(change)
    _refused(world, proxy, path, "the feed left it out, yet the log serves it")
    with Mirror(path) as mirror:
        revoked = mirror.entry(world.shared[0])
        assert revoked is not None
        assert revoked.status == "revoked"


def test_sync_refuses_an_altered_revocation_envelope(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    path = tmp_path / "mirror.db"
    sync(world.b, path)
    revoke(world.a, world.alice, world.shared[:2], "false positive")
    checkpoint_sign()

    def alter(path: str, body: bytes) -> bytes:
        if not path.startswith("/api/v1/revocations/"):
            return body
        # The same signed statement, spelt otherwise: the signature still verifies, the
        # bytes are not the ones the tombstone commits to.
        return json.dumps(json.loads(body), indent=1).encode()

    proxy.alter = alter
    _refused(world, proxy, path, r"event \d+: revocation \d+: the envelope's SHA-256 is")
    # Refused, then synced honestly: the entries are revoked as the signed statement says.
    with Mirror(path) as mirror:
        ended = [mirror.entry(i) for i in world.shared[:2]]
        assert [(e.status, e.reason) for e in ended if e] == [("revoked", "false positive")] * 2


def test_sync_refuses_a_revocation_envelope_signed_for_other_entries(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    path = tmp_path / "mirror.db"
    sync(world.b, path)
    revoke(world.a, world.alice, [world.shared[0]], "false positive")
    checkpoint_sign()
    # Alice's own valid signature, over a revocation of another entry: what a server holding
    # her old envelopes could serve behind a tombstone it made up.
    other = revocation_envelope([world.shared[1]], "false positive", world.alice.private_key)

    def alter(path: str, body: bytes) -> bytes:
        return other if path.startswith("/api/v1/revocations/") else body

    proxy.alter = alter
    _refused(world, proxy, path, "revocation .*: the envelope's SHA-256 is")


def test_sync_accepts_an_administrators_revocation_as_theirs(world: World, tmp_path: Path) -> None:
    from django.contrib.auth import get_user_model

    from hashes.models import Entry
    from hashes.services import revocation_by_administrator

    path = tmp_path / "mirror.db"
    sync(world.b, path)
    admin = get_user_model().objects.create_superuser("root", "root@example.org", None)
    revocation_by_administrator(
        actor=Actor.for_user(admin),
        entries=[Entry.objects.get(pk=world.shared[0])],
        reason="court order 42",
    )
    checkpoint_sign()
    assert sync(world.b, path).revoked == 1
    with Mirror(path) as mirror:
        revoked = mirror.entry(world.shared[0])
        assert revoked is not None
        assert (revoked.status, revoked.reason) == ("revoked", "court order 42")


def test_sync_leaves_index_snapshots_as_of_its_cursor(world: World, tmp_path: Path) -> None:
    from consortium_client.mirror_index import snapshots_stale
    from consortium_client.mirror_store import mirror_connect

    path = tmp_path / "mirror.db"
    sync(world.b, path, page_size=5)
    revoke(world.a, world.alice, world.shared[:1], "duplicate")
    checkpoint_sign()
    sync(world.b, path, page_size=5)
    connection = mirror_connect(path, create=False)
    try:
        assert snapshots_stale(connection) == []
    finally:
        connection.close()


def test_sync_command_refusal_is_one_line_and_exit_status_1(
    world: World, proxy: TamperingProxy, tmp_path: Path
) -> None:
    config = Config(
        url=proxy.url,
        api_key=world.bob.api_key,
        signing_key=None,
        mirror=tmp_path / "mirror.db",
        state=tmp_path / "state.json",
        timeout=10,
    )
    sync(world.b, config.mirror)
    accepted = Mirror(config.mirror).tree_size
    proxy.alter = _checkpoint_alter(_signed_checkpoint(accepted - 1))
    result = CliRunner().invoke(sync_command, [], obj=config)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("consortium: rollback: the checkpoint is of size")


def test_sync_watch_follows_new_checkpoints(world: World, tmp_path: Path) -> None:
    syncer = Syncer(world.b, tmp_path / "mirror.db", page_size=10)
    results: list[SyncResult] = []

    def report(result: SyncResult) -> None:
        results.append(result)
        if len(results) == 1:
            world.grow(submissions=1, size=3)

    sync_watch(syncer, interval=0.01, report=report, rounds=2)
    assert [r.added for r in results] == [len(world.shared) - 3, 3]
    assert results[1].checkpoint.size > results[0].checkpoint.size
    with Mirror(tmp_path / "mirror.db") as mirror:
        assert [e.id for e in mirror.entries()] == world.shared


def test_sync_goes_through_pages_cut_short_by_the_byte_cap(
    world: World, tmp_path: Path, settings: Any
) -> None:
    videos = [vpdq_synthetic(seed, 50) for seed in range(1, 7)]
    entries = [{"algorithm": "vpdq", "value": value} for value in videos]
    result = world.a.submit(submission_envelope("ncii", entries, world.alice.private_key))
    added = [entry["id"] for entry in result["entries"]]
    checkpoint_sign()
    # Two videos a page: the server ends each page early, and the mirror follows `next`.
    settings.FEED_PAGE_MAX_BYTES = len(videos[0]) * 2
    path = tmp_path / "mirror.db"

    synced = sync(world.b, path, page_size=1000)

    assert synced.pages >= 3
    with Mirror(path) as mirror:
        entries_now = {entry.id: entry for entry in mirror.entries(status=None)}
        assert sorted(entries_now) == sorted([*world.shared, *added])
        assert [entries_now[i].value for i in added] == videos
        assert mirror.tree_size == synced.checkpoint.size
