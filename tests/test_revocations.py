"""Revocations: only the submitter (or an administrator, with a reason) ends an entry; bad
revocations are refused whole and change nothing; good ones reach every partner."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User

from audit.actors import Actor
from audit.models import AccessEvent
from consortium_client.dsse import REVOCATION_PAYLOAD_TYPE, SUBMISSION_PAYLOAD_TYPE, envelope_sign
from consortium_client.keys import key_generate, public_key_pem
from consortium_client.verify import verify_revocation
from hashes.models import Entry, HashList, Revocation
from hashes.services import revocation_by_administrator
from partners import services
from tests.conftest import (
    ADMIN,
    PartnerClient,
    assert_refusal_audited,
    pdq,
    problem,
    store_counts,
)

_MISSING: Any = object()


def revocation(
    client: PartnerClient,
    entries: Any,
    reason: Any = "mistake",
    payload_type: str = REVOCATION_PAYLOAD_TYPE,
    **fields: Any,
) -> bytes:
    """A revocation envelope signed by `client`; a field given as _MISSING is left out."""
    document: dict[str, Any] = {
        "entries": entries,
        "reason": reason,
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": secrets.token_hex(8),
        **fields,
    }
    document = {key: value for key, value in document.items() if value is not _MISSING}
    return envelope_sign(payload_type, json.dumps(document).encode(), client.private_key)


def submit(client: PartnerClient, count: int = 1, list_name: str = "ncii") -> list[int]:
    response = client.submit(
        list_name, [{"algorithm": "pdq", "value": pdq()} for _ in range(count)]
    )
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def entry_status(client: PartnerClient, entry_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/entries/{entry_id}")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


@pytest.fixture
def own(alice: PartnerClient, shared_list: HashList) -> list[int]:
    """Two of alice's entries on the shared list."""
    return submit(alice, 2)


# Each case builds a body for alice (who owns `own`) and names the refusal.
Case = Callable[[PartnerClient, PartnerClient, list[int]], bytes]


def _unknown_id(alice, bob, own) -> bytes:
    return revocation(alice, [own[-1] + 10_000])


def _other_partners_entry(alice, bob, own) -> bytes:
    return revocation(alice, [submit(bob)[0]])


def _own_then_other_partners(alice, bob, own) -> bytes:
    return revocation(alice, [own[0], submit(bob)[0]])


def _already_revoked(alice, bob, own) -> bytes:
    assert alice.revoke([own[0]]).status_code == 201
    return revocation(alice, [own[1], own[0]])


def _duplicate_ids(alice, bob, own) -> bytes:
    return revocation(alice, [own[0], own[1], own[0]])


def _empty_list(alice, bob, own) -> bytes:
    return revocation(alice, [])


def _entries_not_a_list(alice, bob, own) -> bytes:
    return revocation(alice, own[0])


def _id_as_text(alice, bob, own) -> bytes:
    return revocation(alice, [str(own[0])])


def _negative_id(alice, bob, own) -> bytes:
    return revocation(alice, [-1])


def _boolean_id(alice, bob, own) -> bytes:
    return revocation(alice, [True])


def _missing_reason(alice, bob, own) -> bytes:
    return revocation(alice, own, reason=_MISSING)


def _blank_reason(alice, bob, own) -> bytes:
    return revocation(alice, own, reason="   ")


def _reason_too_long(alice, bob, own) -> bytes:
    return revocation(alice, own, reason="r" * 1001)


def _reason_not_text(alice, bob, own) -> bytes:
    return revocation(alice, own, reason=["mistake"])


def _missing_timestamp(alice, bob, own) -> bytes:
    return revocation(alice, own, timestamp=_MISSING)


def _missing_nonce(alice, bob, own) -> bytes:
    return revocation(alice, own, nonce=_MISSING)


def _submission_payload_type(alice, bob, own) -> bytes:
    return revocation(alice, own, payload_type=SUBMISSION_PAYLOAD_TYPE)


def _unregistered_key(alice, bob, own) -> bytes:
    document = {
        "entries": own,
        "reason": "x",
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": "n",
    }
    return envelope_sign(REVOCATION_PAYLOAD_TYPE, json.dumps(document).encode(), key_generate())


def _signed_by_the_other_partner(alice, bob, own) -> bytes:
    return revocation(bob, own)


def _revoked_signing_key(alice, bob, own) -> bytes:
    services.signing_key_revoke(signing_key=alice.signing_key, actor=ADMIN, reason="lost")
    return revocation(alice, own)


def _tampered(alice, bob, own) -> bytes:
    envelope = json.loads(revocation(alice, [own[0]]))
    other = json.loads(revocation(alice, [own[1]]))
    envelope["payload"] = other["payload"]
    return json.dumps(envelope).encode()


def _not_json(alice, bob, own) -> bytes:
    return b"revoke please"


def _over_the_limit(alice, bob, own) -> bytes:
    return revocation(alice, list(range(4)))


def _raw(alice: PartnerClient, text: str) -> bytes:
    """A revocation payload written by hand, properly signed, naming alice's entries."""
    document = {"timestamp": datetime.now(UTC).isoformat(), "nonce": secrets.token_hex(8)}
    raw = json.dumps(document)[:-1] + ", " + text + "}"
    return envelope_sign(REVOCATION_PAYLOAD_TYPE, raw.encode(), alice.private_key)


def _duplicate_entries_key(alice, bob, own) -> bytes:
    # A last-wins parser revokes the second list; a first-wins verifier reads the first.
    return _raw(alice, f'"entries": [{own[0]}], "entries": [{own[1]}], "reason": "mistake"')


def _duplicate_reason_key(alice, bob, own) -> bytes:
    return _raw(alice, f'"entries": [{own[0]}], "reason": "a", "reason": "b"')


def _nan_id(alice, bob, own) -> bytes:
    return _raw(alice, '"entries": [NaN], "reason": "mistake"')


def _id_beyond_safe_integers(alice, bob, own) -> bytes:
    return _raw(alice, f'"entries": [{2**63}], "reason": "mistake"')


def _reason_escape_surrogate(alice, bob, own) -> bytes:
    return _raw(alice, f'"entries": [{own[0]}], "reason": "\\udbff"')


def _utf16_payload(alice, bob, own) -> bytes:
    document = {
        "entries": own,
        "reason": "mistake",
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": secrets.token_hex(8),
    }
    raw = json.dumps(document).encode("utf-16")
    return envelope_sign(REVOCATION_PAYLOAD_TYPE, raw, alice.private_key)


REFUSALS: dict[str, tuple[Case, int, str]] = {
    "unknown id": (_unknown_id, 404, "unknown-entry"),
    "entry of another partner": (_other_partners_entry, 403, "not-entry-submitter"),
    "own entry then another's": (_own_then_other_partners, 403, "not-entry-submitter"),
    "already revoked": (_already_revoked, 409, "entry-already-revoked"),
    "duplicate ids": (_duplicate_ids, 400, "duplicate-in-batch"),
    "empty list": (_empty_list, 400, "empty-batch"),
    "entries not a list": (_entries_not_a_list, 400, "invalid-payload"),
    "id as text": (_id_as_text, 400, "invalid-payload"),
    "negative id": (_negative_id, 400, "invalid-payload"),
    "boolean id": (_boolean_id, 400, "invalid-payload"),
    "missing reason": (_missing_reason, 400, "invalid-payload"),
    "blank reason": (_blank_reason, 400, "invalid-payload"),
    "reason too long": (_reason_too_long, 400, "invalid-payload"),
    "reason not text": (_reason_not_text, 400, "invalid-payload"),
    "missing timestamp": (_missing_timestamp, 400, "invalid-payload"),
    "missing nonce": (_missing_nonce, 400, "invalid-payload"),
    "submission payload type": (_submission_payload_type, 400, "wrong-payload-type"),
    "unregistered key": (_unregistered_key, 400, "invalid-signature"),
    "signed by another partner": (_signed_by_the_other_partner, 400, "invalid-signature"),
    "revoked signing key": (_revoked_signing_key, 400, "invalid-signature"),
    "payload changed after signing": (_tampered, 400, "invalid-signature"),
    "body not JSON": (_not_json, 400, "malformed-envelope"),
    "more entries than the limit": (_over_the_limit, 413, "batch-too-large"),
    "NUL in reason": (
        lambda a, b, own: revocation(a, own, reason="x\x00y"),
        400,
        "invalid-payload",
    ),
    "lone surrogate in reason": (
        lambda a, b, own: revocation(a, own, reason="x\ud800"),
        400,
        "invalid-payload",
    ),
    "NUL in nonce": (lambda a, b, own: revocation(a, own, nonce="\x00"), 400, "invalid-payload"),
    "lone surrogate escape in reason": (_reason_escape_surrogate, 400, "invalid-payload"),
    "duplicate entries key": (_duplicate_entries_key, 400, "invalid-payload"),
    "duplicate reason key": (_duplicate_reason_key, 400, "invalid-payload"),
    "NaN as an id": (_nan_id, 400, "invalid-payload"),
    "id beyond 2**53": (_id_beyond_safe_integers, 400, "invalid-payload"),
    "payload in UTF-16": (_utf16_payload, 400, "invalid-payload"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=str)
def test_bad_revocation_is_refused_and_changes_nothing(
    alice, bob, own, settings, case: str
) -> None:
    settings.SUBMISSION_MAX_ENTRIES = 3
    build, status, slug = REFUSALS[case]
    body = build(alice, bob, own)
    before = store_counts()

    response = alice.post("/api/v1/revocations", body)

    assert response.status_code == status, response.content
    assert problem(response) == slug
    assert store_counts() == before
    assert_refusal_audited(
        action="revocation.create", status=status, slug=slug, partner=alice.partner
    )


def test_refusal_points_at_the_offending_entry(alice, bob, own) -> None:
    response = alice.post("/api/v1/revocations", _own_then_other_partners(alice, bob, own))

    assert json.loads(response.content)["pointer"] == "/entries/1"


def test_revocation_reaches_the_feed_and_the_entry(alice, bob, own) -> None:
    _, cursor = bob.feed_all()

    response = alice.revoke([own[1], own[0]], reason="consent withdrawn")

    assert response.status_code == 201, response.content
    body = json.loads(response.content)
    assert [t["entry"] for t in body["tombstones"]] == [own[1], own[0]]
    events, _ = bob.feed_all(after=cursor)
    assert [(e["type"], e["entry"], e["revoked_by"]) for e in events] == [
        ("entry_revoked", own[1], "alice"),
        ("entry_revoked", own[0], "alice"),
    ]
    assert [e["index"] for e in events] == [t["log_index"] for t in body["tombstones"]]
    entry = entry_status(bob, own[0])
    assert entry["status"] == "revoked"
    assert entry["revocation"]["reason"] == "consent withdrawn"
    assert entry["revocation"]["revoked_by"] == "alice"


def test_another_partner_verifies_a_tombstone_against_its_signed_envelope(alice, bob, own) -> None:
    _, cursor = bob.feed_all()
    body = json.loads(alice.revoke([own[0]], reason="consent withdrawn").content)
    (tombstone,) = bob.feed_all(after=cursor)[0]
    leaf = json.dumps(tombstone, sort_keys=True, separators=(",", ":")).encode()

    response = bob.get(f"/api/v1/revocations/{body['revocation']}/envelope")

    assert response.status_code == 200, response.content
    assert hashlib.sha256(response.content).hexdigest() == tombstone["envelope"]
    payload = verify_revocation(leaf, response.content, alice.private_key.public_key())
    assert payload["reason"] == "consent withdrawn"
    assert AccessEvent.objects.filter(
        partner=bob.partner, action="revocation.envelope.read", status=200
    ).exists()


def test_an_administrators_revocation_has_no_envelope(alice, bob, own) -> None:
    admin = User.objects.create_superuser("root", "root@example.org", None)
    revocation_by_administrator(
        actor=Actor.for_user(admin), entries=[Entry.objects.get(pk=own[0])], reason="court"
    )

    response = bob.get(f"/api/v1/revocations/{Revocation.objects.get().pk}/envelope")

    assert response.status_code == 404
    assert problem(response) == "unknown-revocation"


def test_same_revocation_twice_is_idempotent(alice, own) -> None:
    envelope = revocation(alice, list(reversed(own)))
    first = alice.post("/api/v1/revocations", envelope)
    assert first.status_code == 201, first.content
    after_first = store_counts()

    second = alice.post("/api/v1/revocations", envelope)

    assert second.status_code == 200
    assert second.content == first.content
    assert store_counts() == after_first


def test_revocation_signed_with_another_active_key_is_accepted(alice, bob, own) -> None:
    second_key = key_generate()
    second = services.signing_key_register(
        partner=alice.partner, public_key=public_key_pem(second_key.public_key()), actor=ADMIN
    )
    document = {
        "entries": [own[0]],
        "reason": "duplicate",
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": secrets.token_hex(8),
    }
    envelope = envelope_sign(REVOCATION_PAYLOAD_TYPE, json.dumps(document).encode(), second_key)
    _, cursor = bob.feed_all()

    response = alice.post("/api/v1/revocations", envelope)

    assert response.status_code == 201, response.content
    (tombstone,) = bob.feed_all(after=cursor)[0]
    assert tombstone["key"] == second.key_id
    assert Revocation.objects.get().signing_key == second


def test_entry_revoked_by_an_administrator_says_so(alice, bob, own) -> None:
    admin = User.objects.create_superuser("root", "root@example.org", None)
    _, cursor = bob.feed_all()

    revocation_by_administrator(
        actor=Actor.for_user(admin),
        entries=[Entry.objects.get(pk=own[0])],
        reason="court order 42",
    )

    (tombstone,) = bob.feed_all(after=cursor)[0]
    assert tombstone["type"] == "entry_revoked"
    assert tombstone["entry"] == own[0]
    assert tombstone["revoked_by"] == "admin:root"
    assert tombstone["reason"] == "court order 42"
    assert tombstone["partner"] == "alice"
    entry = entry_status(bob, own[0])
    assert entry["status"] == "revoked"
    assert entry["partner"] == "alice"
    assert entry["revocation"]["revoked_by"] == "admin:root"
    assert entry["revocation"]["reason"] == "court order 42"
    assert entry["revocation"]["log_index"] == tombstone["index"]
    assert AccessEvent.objects.filter(actor="admin:root", action="entry.revoke").exists()
    # The submitter cannot revoke it a second time.
    assert problem(alice.revoke([own[0]])) == "entry-already-revoked"


def test_administrator_revocation_needs_a_reason(alice, own) -> None:
    admin = User.objects.create_superuser("root", "root@example.org", None)
    before = store_counts()

    with pytest.raises(ValueError, match="reason"):
        revocation_by_administrator(
            actor=Actor.for_user(admin), entries=[Entry.objects.get(pk=own[0])], reason=" "
        )

    assert store_counts() == before


def test_revoked_entry_can_be_submitted_again_as_a_new_entry(alice, shared_list) -> None:
    value = pdq()
    first = alice.submit("ncii", [{"algorithm": "pdq", "value": value}])
    (old_id,) = [e["id"] for e in json.loads(first.content)["entries"]]
    assert alice.revoke([old_id]).status_code == 201

    again = alice.submit("ncii", [{"algorithm": "pdq", "value": value}])

    assert again.status_code == 201, again.content
    (new_id,) = [e["id"] for e in json.loads(again.content)["entries"]]
    assert new_id > old_id
    assert entry_status(alice, old_id)["status"] == "revoked"
    assert entry_status(alice, new_id)["status"] == "active"
    assert problem(alice.submit("ncii", [{"algorithm": "pdq", "value": value}])) == "entry-exists"


def test_revocation_by_a_suspended_partner_is_refused(alice, own) -> None:
    services.partner_suspend(partner=alice.partner, reason="review", actor=ADMIN)
    before = store_counts()

    response = alice.revoke(own)

    assert problem(response) == "invalid-api-key"
    assert store_counts() == before


def test_a_partner_that_left_a_group_can_still_revoke_its_own_entries(alice, bob) -> None:
    from partners.models import SharingGroup
    from tests.factories import HashListFactory

    group = SharingGroup.objects.create(name="hotlines")
    group.members.set([alice.partner, bob.partner])
    HashListFactory(name="grouped", owner=alice.partner, visibility="group", group=group)
    response = bob.submit("grouped", [{"algorithm": "md5", "value": "b" * 32}])
    assert response.status_code == 201, response.content
    entry_id = json.loads(response.content)["entries"][0]["id"]
    group.members.remove(bob.partner)

    response = bob.revoke([entry_id], reason="consent withdrawn")

    assert response.status_code == 201, response.content
    tombstones = [e for e in alice.feed_all()[0] if e["type"] == "entry_revoked"]
    assert [(e["entry"], e["revoked_by"]) for e in tombstones] == [(entry_id, "bob")]
