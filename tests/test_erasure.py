"""Erasure (DESIGN.md, promise 10): an erased hash value is gone from every table, response
and log line, the entry stops matching, and every leaf written before is unchanged."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from audit.models import AccessEvent, LogEvent
from audit.services import checkpoint_sign
from consortium_client.api import ConsortiumApi
from consortium_client.dsse import SUBMISSION_V1_PAYLOAD_TYPE, envelope_sign
from consortium_client.mirror_index import MirrorMatcher
from consortium_client.mirror_sync import Mirror, sync
from hashes.models import Entry, Submission
from tests.conftest import PartnerClient, problem, staff_login, store_counts


def _submit_md5(client: PartnerClient, *values: str) -> list[int]:
    response = client.submit("ncii", [{"algorithm": "md5", "value": value} for value in values])
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def _matches(client: PartnerClient, md5: str) -> list[int]:
    body = json.dumps({"hashes": [{"algorithm": "md5", "value": md5}]}).encode()
    response = client.post("/api/v1/match", body)
    assert response.status_code == 200, response.content
    return [match["entry"] for match in json.loads(response.content)["results"][0]["matches"]]


def _texts(cell: Any) -> list[bytes]:
    """Every form in which a stored cell could hold a value: its text, and for bytes also
    the base64-decoded `payload` of a JSON envelope (where a version 1 value hides)."""
    if cell is None:
        return []
    if isinstance(cell, memoryview | bytes):
        raw = bytes(cell)
        found = [raw]
        try:
            found.append(base64.b64decode(json.loads(raw)["payload"]))
        except (ValueError, KeyError, TypeError):
            pass
        return found
    if isinstance(cell, dict | list):
        return [json.dumps(cell).encode()]
    return [str(cell).encode()]


def _tables_holding(value: str) -> list[str]:
    """Every table (all of them, whoever owns it) with a row holding `value` anywhere."""
    needle = value.encode()
    holding = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the catalogue
            if any(needle in text for row in cursor.fetchall() for c in row for text in _texts(c)):
                holding.append(table)
    return holding


def test_erased_value_is_gone_from_every_table_response_and_log_line(
    alice, bob, shared_list, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    erased, kept = secrets.token_hex(16), secrets.token_hex(16)
    entry_id, kept_id = _submit_md5(alice, erased, kept)
    assert _matches(bob, erased) == [entry_id]
    assert bob.get(f"/api/v1/entries/{entry_id}").status_code == 200
    leaves_before = {e.index: bytes(e.leaf) for e in LogEvent.objects.all()}
    assert _tables_holding(erased) == ["hashes_entry"]

    out = io.StringIO()
    call_command("erase_entry", str(entry_id), "--reason", "court order 12/3", stdout=out)

    assert f"entry {entry_id} erased" in out.getvalue()
    # Every leaf written before is byte for byte as it was: proofs made before still hold.
    assert {e.index: bytes(e.leaf) for e in LogEvent.objects.filter(index__in=leaves_before)} == (
        leaves_before
    )
    assert _tables_holding(erased) == []
    assert _tables_holding(kept) == ["hashes_entry"]
    # Not matched, and no response shows the value.
    assert _matches(bob, erased) == []
    assert _matches(bob, kept) == [kept_id]
    detail = bob.get(f"/api/v1/entries/{entry_id}")
    assert erased.encode() not in detail.content
    shown = json.loads(detail.content)
    assert (shown["value"], shown["salt"], shown["erased"], shown["status"]) == (
        None,
        None,
        True,
        "erased",
    )
    page = bob.get("/api/v1/feed", limit=1000)
    assert erased.encode() not in page.content
    values = json.loads(page.content)["values"]
    assert {"index": entry_id, "erased": True} in values
    assert any(item.get("value") == kept for item in values)
    events, _ = bob.feed_all()
    (erasure,) = [event for event in events if event["type"] == "entry_erased"]
    assert (erasure["entry"], erasure["by"], erasure["reason"]) == (
        entry_id,
        "command",
        "court order 12/3",
    )
    auditor = bob.get("/api/v1/audit/events")
    assert erased.encode() not in auditor.content
    assert AccessEvent.objects.filter(action="entry.erase", target=f"entry:{entry_id}").exists()
    assert erased not in caplog.text


def _mirror_matches(path: Path, md5: str) -> list[int]:
    [result] = MirrorMatcher.load(path).search([("md5", md5)])
    return [found.entry for found in result.matches]


@pytest.mark.django_db(transaction=True)
def test_erased_entry_stops_matching_on_a_partners_mirror(
    live_server, alice, bob, shared_list, tmp_path: Path
) -> None:
    value = secrets.token_hex(16)
    (entry_id,) = _submit_md5(alice, value)
    checkpoint_sign()
    api = ConsortiumApi(live_server.url, bob.api_key)
    path = tmp_path / "mirror.db"
    sync(api, path)
    assert _mirror_matches(path, value) == [entry_id]
    # The scan below reads the right bytes: before the erasure, the mirror file holds the value.
    assert any(value.encode() in file.read_bytes() for file in tmp_path.glob("mirror.db*"))

    call_command("erase_entry", str(entry_id), "--reason", "victim's request", stdout=io.StringIO())
    checkpoint_sign()

    # The mirror that held the entry, and one synced afresh: neither matches it, both keep
    # why, neither keeps the value.
    assert sync(api, path).erased == 1
    fresh = tmp_path / "fresh.db"
    sync(api, fresh)
    for mirror_path in (path, fresh):
        assert _mirror_matches(mirror_path, value) == []
        with Mirror(mirror_path) as mirror:
            erased = mirror.entry(entry_id)
            assert erased is not None
            assert (erased.status, erased.value, erased.salt, erased.reason) == (
                "erased",
                None,
                None,
                "victim's request",
            )
        # Nor in the file's bytes: not in a freed page, a write-ahead log frame or a packed
        # index snapshot.
        for file in mirror_path.parent.glob(mirror_path.name + "*"):
            raw = file.read_bytes()
            assert value.encode() not in raw, file.name
            assert bytes.fromhex(value) not in raw, file.name


@pytest.mark.django_db(transaction=True)
def test_an_erased_entrys_variants_are_gone_from_every_table_response_and_mirror(
    live_server, alice, bob, shared_list, tmp_path: Path
) -> None:
    value = secrets.token_hex(32)
    variants = {"canonical": secrets.token_hex(32), "rotate-3": secrets.token_hex(32)}
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": value, "variants": variants}])
    assert response.status_code == 201, response.content
    entry_id = response.json()["entries"][0]["id"]
    checkpoint_sign()
    api = ConsortiumApi(live_server.url, bob.api_key)
    path = tmp_path / "mirror.db"
    sync(api, path)
    [result] = MirrorMatcher.load(path).search([("pdq", variants["rotate-3"])])
    assert [(m.entry, m.variant, m.rule) for m in result.matches] == [
        (entry_id, "rotate-3", "pdq-variant")
    ]
    assert _tables_holding(variants["rotate-3"]) == ["hashes_entryvariant"]

    call_command("erase_entry", str(entry_id), "--reason", "victim's request", stdout=io.StringIO())
    checkpoint_sign()

    assert sync(api, path).erased == 1
    fresh = tmp_path / "fresh.db"
    sync(api, fresh)
    served = [
        bob.get(f"/api/v1/entries/{entry_id}").content,
        bob.get("/api/v1/feed", limit=1000).content,
    ]
    # Asked for by value, the server finds nothing (the answer echoes only the query).
    asked = json.dumps({"hashes": [{"algorithm": "pdq", "value": v} for v in variants.values()]})
    results = json.loads(bob.post("/api/v1/match", asked.encode()).content)["results"]
    assert [result["matches"] for result in results] == [[], []]
    for variant in variants.values():
        assert _tables_holding(variant) == []
        assert all(variant.encode() not in content for content in served)
        for mirror_path in (path, fresh):
            [result] = MirrorMatcher.load(mirror_path).search([("pdq", variant)])
            assert result.matches == []
            for file in mirror_path.parent.glob(mirror_path.name + "*"):
                raw = file.read_bytes()
                assert variant.encode() not in raw, file.name
                assert bytes.fromhex(variant) not in raw, file.name


def test_erasing_a_legacy_entry_redacts_its_envelope(alice, shared_list) -> None:
    value = secrets.token_hex(16)
    (entry_id,) = _submit_md5(alice, value)
    # A version 1 envelope, as stored before payload version 2: it signs the value itself.
    payload = json.dumps({"list": "ncii", "entries": [{"algorithm": "md5", "value": value}]})
    legacy = envelope_sign(SUBMISSION_V1_PAYLOAD_TYPE, payload.encode(), alice.private_key)
    submission = Entry.objects.get(pk=entry_id).submission
    Submission.objects.filter(pk=submission.pk).update(envelope=legacy, payload_version=1)
    digest = submission.envelope_sha256

    call_command("erase_entry", str(entry_id), "--reason", "court order", stdout=io.StringIO())

    redacted = Submission.objects.get(pk=submission.pk)
    assert bytes(redacted.envelope) == b""
    assert redacted.envelope_sha256 == digest
    assert redacted.redacted_at is not None
    assert redacted.redaction_reason == f"entry {entry_id} erased: court order"
    assert _tables_holding(value) == []
    assert alice.get(f"/api/v1/submissions/{submission.pk}/envelope").content == b""


def test_an_erased_entry_cannot_be_erased_again_or_revoked(alice, shared_list) -> None:
    (entry_id,) = _submit_md5(alice, secrets.token_hex(16))
    call_command("erase_entry", str(entry_id), "--reason", "court order", stdout=io.StringIO())
    before = store_counts()

    with pytest.raises(CommandError, match="was erased"):
        call_command("erase_entry", str(entry_id), "--reason", "again", stdout=io.StringIO())
    response = alice.revoke([entry_id])

    assert response.status_code == 409
    assert problem(response) == "entry-erased"
    assert store_counts() == before


def test_erase_needs_a_reason(alice, shared_list) -> None:
    (entry_id,) = _submit_md5(alice, secrets.token_hex(16))
    before = store_counts()

    with pytest.raises(CommandError, match="reason"):
        call_command("erase_entry", str(entry_id), "--reason", "  ", stdout=io.StringIO())

    assert store_counts() == before
    assert Entry.objects.get(pk=entry_id).value is not None


def test_admin_erase_action_asks_for_a_reason_then_erases(client: Client, alice, shared_list):
    admin_user = User.objects.create_superuser("admin", "admin@example.org", None)
    staff_login(client, admin_user)
    value = secrets.token_hex(16)
    (entry_id,) = _submit_md5(alice, value)
    data = {"action": "erase", "_selected_action": [str(entry_id)], "index": "0"}

    asked = client.post("/admin/hashes/entry/", data, follow=True)

    assert b"Erase entries" in asked.content
    assert value.encode() not in asked.content
    assert Entry.objects.get(pk=entry_id).status == Entry.Status.ACTIVE

    client.post("/admin/hashes/entry/", {**data, "reason": "court order"}, follow=True)

    entry = Entry.objects.get(pk=entry_id)
    assert (entry.status, entry.value, entry.salt) == (Entry.Status.ERASED, None, None)
    (event,) = LogEvent.objects.filter(event_type="entry_erased")
    leaf = json.loads(bytes(event.leaf))
    assert (leaf["entry"], leaf["by"], leaf["reason"]) == (entry_id, "admin:admin", "court order")
    audit = AccessEvent.objects.get(action="entry.erase")
    assert (audit.actor, audit.user) == ("admin:admin", admin_user)
