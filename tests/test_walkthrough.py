"""Two partners end to end through HTTP: submit, sync, revoke, sync again, audit; and the
README's walk-through, run as it is written."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.core.management import call_command

from audit.models import AccessEvent
from hashes.models import Entry
from tests.conftest import PartnerClient, partner_client, pdq

ROOT = Path(__file__).resolve().parent.parent


def test_two_partners_submit_sync_revoke_and_audit(alice, bob, shared_list) -> None:
    entries = [{"algorithm": "pdq", "value": pdq(), "labels": ["ncii"]} for _ in range(3)]
    response = alice.submit("ncii", entries)
    assert response.status_code == 201, response.content
    created = json.loads(response.content)["entries"]
    assert [e["value"] for e in created] == [e["value"] for e in entries]

    events, cursor = bob.feed_all()
    added = [e for e in events if e["type"] == "entry_added"]
    # An entry's id is the index of the event that added it.
    assert [(e["index"], e["value"], e["partner"]) for e in added] == [
        (e["id"], e["value"], "alice") for e in created
    ]

    revoked_id = created[1]["id"]
    response = alice.revoke([revoked_id], reason="consent withdrawn")
    assert response.status_code == 201, response.content

    events, _ = bob.feed_all(after=cursor)
    assert len(events) == 1
    (tombstone,) = events
    assert tombstone["type"] == "entry_revoked"
    assert tombstone["entry"] == revoked_id
    assert tombstone["reason"] == "consent withdrawn"
    assert tombstone["revoked_by"] == "alice"

    auditor: PartnerClient = partner_client("auditor", scopes=["audit"])
    response = auditor.get("/api/v1/audit/events", action="feed.read")
    assert response.status_code == 200
    readers = {event["actor"] for event in json.loads(response.content)["events"]}
    assert readers == {"partner:bob"}
    assert AccessEvent.objects.filter(action="submission.create", partner=alice.partner).exists()
    assert AccessEvent.objects.filter(action="revocation.create", partner=alice.partner).exists()


def _readme_walk_through() -> str:
    section = (ROOT / "README.md").read_text().split("## Walk-through", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _walk_through_run(url: str, directory: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Run the README's walk-through against the server at `url`; what it printed."""
    script = _readme_walk_through().replace("http://127.0.0.1:8000", url)
    done = subprocess.run(  # noqa: S603 - the README's own commands
        ["/bin/bash", "-e", "-o", "pipefail", "-c", script],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return _json_objects(done.stdout)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object printed, whether or not a newline follows it (curl adds none)."""
    decoder, found, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            end = at + 1
        else:
            found.append(value)
        at = text.find("{", end)
    return found


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_readme_walk_through_runs_as_written(
    live_server, settings, tmp_path: Path, eager_tasks: None
) -> None:
    # What `make run` leaves behind: the demo partner, its list, its signing key in .demo/;
    # and, as there, tasks run when queued (each write to the log signs a checkpoint).
    settings.QUICK_START = True
    call_command("demo_setup", "--directory", str(tmp_path / ".demo"), stdout=io.StringIO())
    (tmp_path / "manage.py").symlink_to(ROOT / "manage.py")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    database = settings.DATABASES["default"]  # the test database, which the live server uses
    credentials = quote(database["USER"]) + (
        f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{credentials}@{database['HOST']}:{database['PORT'] or 5432}"
        f"/{database['NAME']}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), str(ROOT / "client"), os.environ.get("PYTHONPATH")])
        ),
    }
    printed = _walk_through_run(live_server.url, tmp_path, env)

    acme = Entry.objects.filter(partner__name="acme")
    assert sorted(acme.values_list("algorithm", flat=True)) == sorted(
        ["pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256"]
    )
    assert set(acme.values_list("status", flat=True)) == {Entry.Status.REVOKED}
    ids = {entry.pk for entry in acme}
    tombstones = [o for o in printed if o.get("type") == "entry_revoked"]
    assert {t["entry"] for t in tombstones} == ids

    server_copy_before, server_copy_after, server_hash = [o for o in printed if "results" in o]
    found = [
        (r["query"]["algorithm"], m["entry"])
        for r in server_copy_before["results"]
        for m in r["matches"]
    ]
    assert "pdq" in {algorithm for algorithm, _ in found}
    assert {entry for _, entry in found} <= ids
    assert all(r["matches"] == [] for r in server_copy_after["results"])
    assert [len(r["matches"]) for r in server_hash["results"]] == [1]

    local_before, local_after = [o for o in printed if o.get("input") == "copy.jpg"]
    assert "pdq" in {m["algorithm"] for m in local_before["matches"]}
    assert {m["entry"] for m in local_before["matches"]} <= ids
    assert local_after["matches"] == []

    (audit,) = [o for o in printed if "events" in o]
    assert audit["events"]
    assert {event["action"] for event in audit["events"]} == {"feed.read"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quick_start_environment(data: Path) -> dict[str, str]:
    """The environment of `make run`: no database, broker or secret named (so SQLite in
    DATA_DIR, tasks run eagerly, rate limits counted in memory)."""
    unset = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE"}
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env["DATA_DIR"] = str(data)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), str(ROOT / "client"), os.environ.get("PYTHONPATH")])
    )
    return env


@pytest.fixture
def quick_start(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """What `make run` does, in a directory of the test's own: migrate, the demo partner,
    and the development server, on the embedded default (SQLite, Celery eager)."""
    env = _quick_start_environment(tmp_path / ".data")
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput"], ["demo_setup", "--directory", ".demo"]):
        done = subprocess.run(  # noqa: S603 - our own manage.py
            [*manage, *command], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:  # noqa: S310
                    assert answer.status == 200
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the quick-start server did not answer"
                time.sleep(0.2)
        yield url, env
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_readme_walk_through_runs_on_the_quick_start(
    quick_start: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    # The suite runs on PostgreSQL; `make run` runs on SQLite, whose SQL differs (the feed's
    # openings once used an aggregate ordering SQLite 3.40 does not parse).
    url, env = quick_start
    (tmp_path / "manage.py").symlink_to(ROOT / "manage.py")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))

    printed = _walk_through_run(url, tmp_path, env)

    with sqlite3.connect(tmp_path / ".data" / "db.sqlite3") as database:
        rows = database.execute(
            "SELECT e.id, e.status FROM hashes_entry e JOIN partners_partner p "
            "ON p.id = e.partner_id WHERE p.name = 'acme'"
        ).fetchall()
    assert len(rows) == 7
    assert {status for _, status in rows} == {"revoked"}
    ids = {entry_id for entry_id, _ in rows}
    local_before, local_after = [o for o in printed if o.get("input") == "copy.jpg"]
    assert "pdq" in {m["algorithm"] for m in local_before["matches"]}
    assert {m["entry"] for m in local_before["matches"]} <= ids
    assert local_after["matches"] == []
