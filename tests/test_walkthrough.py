"""Two partners end to end through HTTP: submit, sync, revoke, sync again, audit."""

from __future__ import annotations

import json

from audit.models import AccessEvent
from tests.conftest import PartnerClient, partner_client, pdq


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
