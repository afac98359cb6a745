"""Two partners end to end through HTTP: submit, sync, revoke, sync again, audit; and the
README's walk-through, run as it is written."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
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
    script = _readme_walk_through().replace("http://127.0.0.1:8000", live_server.url)

    done = subprocess.run(  # noqa: S603 - the README's own commands
        ["/bin/bash", "-e", "-o", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    printed = _json_objects(done.stdout)

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
