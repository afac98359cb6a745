"""A signed statement takes effect once (DESIGN.md, promise 8).

The attack this guards against: any partner may download another's envelope
(`GET /submissions/{id}/envelope`); re-posting it with the bytes around the signature changed
must never store a new, active copy of an entry its submitter revoked.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings

from audit.actors import Actor
from audit.models import AccessEvent
from consortium_client.dsse import REVOCATION_PAYLOAD_TYPE, pae
from consortium_client.keys import key_generate, key_id
from hashes import statements
from hashes.models import Entry, HashList, Submission
from partners import services
from tests.conftest import ADMIN, PartnerClient, partner_client, pdq, problem, store_counts
from tests.factories import HashListFactory
from tests.test_log import _in_thread
from tests.test_submission_refusals import body_of, payload, signed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _entries(response) -> list[int]:
    assert response.status_code in (200, 201), response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def _matches(client: PartnerClient, md5: str) -> list[int]:
    response = client.http.post(
        "/api/v1/match",
        {"hashes": [{"algorithm": "md5", "value": md5}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {client.api_key}",
    )
    assert response.status_code == 200, response.content
    return [match["entry"] for match in json.loads(response.content)["results"][0]["matches"]]


# Ways to send the same signed payload in other bytes: none of them changes what was signed.
def _trailing_space(document: dict[str, Any], raw: bytes, client: PartnerClient) -> bytes:
    return raw + b" "


def _reserialised(document: dict[str, Any], raw: bytes, client: PartnerClient) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode()


def _url_safe_unpadded(document: dict[str, Any], raw: bytes, client: PartnerClient) -> bytes:
    def url_safe(text: str) -> str:
        return base64.urlsafe_b64encode(base64.b64decode(text)).decode().rstrip("=")

    document["payload"] = url_safe(document["payload"])
    for signature in document["signatures"]:
        signature["sig"] = url_safe(signature["sig"])
    return json.dumps(document).encode()


def _reordered_signatures(document: dict[str, Any], raw: bytes, client: PartnerClient) -> bytes:
    stranger = key_generate()
    message = pae(document["payloadType"], base64.b64decode(document["payload"]))
    document["signatures"].insert(
        0, {"keyid": key_id(stranger.public_key()), "sig": _b64(stranger.sign(message))}
    )
    return json.dumps(document).encode()


def _other_keyid_hint(document: dict[str, Any], raw: bytes, client: PartnerClient) -> bytes:
    document["signatures"][0]["keyid"] = "not-the-key"
    return json.dumps(document).encode()


REENCODINGS: dict[str, Callable[[dict[str, Any], bytes, PartnerClient], bytes]] = {
    "trailing space": _trailing_space,
    "re-serialised json": _reserialised,
    "url-safe unpadded base64": _url_safe_unpadded,
    "signatures re-ordered, a stranger's added": _reordered_signatures,
    "another keyid hint": _other_keyid_hint,
}


@pytest.mark.parametrize("reencode", REENCODINGS.values(), ids=REENCODINGS.keys())
def test_revoked_entry_cannot_be_brought_back_by_a_reencoded_envelope(
    alice, bob, shared_list, reencode
) -> None:
    md5 = secrets.token_hex(16)
    first = alice.submit("ncii", [{"algorithm": "md5", "value": md5}])
    (entry_id,) = _entries(first)
    submission_id = json.loads(first.content)["submission"]
    assert alice.revoke([entry_id], reason="consent withdrawn").status_code == 201
    # Another partner with read access downloads the envelope...
    stored = bob.get(f"/api/v1/submissions/{submission_id}/envelope").content
    # ...and someone holding any of alice's submit keys posts it again, re-encoded.
    _, other_key = services.apikey_create(partner=alice.partner, scopes=["submit"], actor=ADMIN)
    before = store_counts()

    # The values are not needed to replay: the stored entries opened the commitments.
    again = alice.post(
        "/api/v1/submissions",
        body_of(reencode(json.loads(stored), stored, alice), []),
        key=other_key,
    )

    assert again.status_code == 200, again.content
    assert json.loads(again.content)["submission"] == submission_id
    assert _entries(again) == [entry_id]
    assert store_counts() == before
    replay = AccessEvent.objects.order_by("-id").first()
    assert replay is not None
    assert replay.detail.get("replayed") is True
    assert Entry.objects.get(pk=entry_id).status == Entry.Status.REVOKED
    assert _matches(bob, md5) == []


@pytest.mark.parametrize("reencode", REENCODINGS.values(), ids=REENCODINGS.keys())
def test_reencoded_revocation_is_the_same_revocation(alice, shared_list, reencode) -> None:
    entry_ids = _entries(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}]))
    raw = _revocation(alice, entry_ids)
    first = alice.post("/api/v1/revocations", raw)
    assert first.status_code == 201, first.content
    before = store_counts()

    again = alice.post("/api/v1/revocations", reencode(json.loads(raw), raw, alice))

    assert again.status_code == 200, again.content
    assert json.loads(again.content) == json.loads(first.content)
    assert store_counts() == before


def _revocation(client: PartnerClient, entry_ids: list[int], **fields: Any) -> bytes:
    document = {
        "entries": entry_ids,
        "reason": "mistake",
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": secrets.token_hex(16),
        **fields,
    }
    return signed(document, client.private_key, REVOCATION_PAYLOAD_TYPE)


@pytest.mark.parametrize("kind", ["submission", "revocation"])
@pytest.mark.parametrize(
    "age", [timedelta(hours=25), timedelta(days=3650), -timedelta(minutes=10)], ids=str
)
def test_envelope_signed_outside_the_window_is_stale(alice, shared_list, kind, age) -> None:
    signed_at = (datetime.now(UTC) - age).isoformat()
    if kind == "submission":
        path, body = "/api/v1/submissions", signed(payload(timestamp=signed_at), alice.private_key)
    else:
        entry_ids = _entries(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}]))
        path, body = "/api/v1/revocations", _revocation(alice, entry_ids, timestamp=signed_at)
    before = store_counts()

    response = alice.post(path, body)

    assert response.status_code == 400
    assert problem(response) == "stale-envelope"
    assert json.loads(response.content)["pointer"] == "/timestamp"
    assert store_counts() == before


def test_window_is_configurable(alice, shared_list) -> None:
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = signed(payload(timestamp=an_hour_ago), alice.private_key)

    with override_settings(ENVELOPE_MAX_AGE=1800):
        assert problem(alice.post("/api/v1/submissions", body)) == "stale-envelope"
    assert alice.post("/api/v1/submissions", body).status_code == 201


def test_a_stored_statement_replays_after_the_window(alice, shared_list) -> None:
    """A client retrying a request whose answer it lost still gets it, however late."""
    body = signed(payload(), alice.private_key)
    first = alice.post("/api/v1/submissions", body)
    assert first.status_code == 201

    with override_settings(ENVELOPE_MAX_AGE=0, ENVELOPE_MAX_SKEW=0):
        exact = alice.post("/api/v1/submissions", body)
        reencoded = alice.post("/api/v1/submissions", body + b"\n")

    assert (exact.status_code, reencoded.status_code) == (200, 200)
    assert exact.content == reencoded.content == first.content


@pytest.mark.parametrize("kind", ["submission", "revocation"])
def test_nonce_reused_for_another_payload_is_refused(alice, shared_list, kind) -> None:
    nonce = secrets.token_hex(16)
    if kind == "submission":
        path = "/api/v1/submissions"
        assert alice.post(path, signed(payload(nonce=nonce), alice.private_key)).status_code == 201
        second = signed(payload(nonce=nonce), alice.private_key)
    else:
        path = "/api/v1/revocations"
        first, other = (
            _entries(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])) for _ in range(2)
        )
        assert alice.post(path, _revocation(alice, first, nonce=nonce)).status_code == 201
        second = _revocation(alice, other, nonce=nonce)
    before = store_counts()

    response = alice.post(path, second)

    assert response.status_code == 409
    assert problem(response) == "nonce-reused"
    assert store_counts() == before


def test_nonces_are_per_partner(alice, bob, shared_list) -> None:
    nonce = secrets.token_hex(16)

    first = alice.post("/api/v1/submissions", signed(payload(nonce=nonce), alice.private_key))
    second = bob.post("/api/v1/submissions", signed(payload(nonce=nonce), bob.private_key))

    assert (first.status_code, second.status_code) == (201, 201)


def test_envelope_signed_before_the_revocation_cannot_readd_the_hash(alice, bob, shared_list):
    """Alice signs two envelopes of one hash; she sends the first and revokes its entry. The
    second, signed before the revocation, never re-adds it; a newer signature does."""
    md5 = secrets.token_hex(16)
    entry = {"algorithm": "md5", "value": md5}
    early_second = signed(payload(entries=[entry]), alice.private_key)
    (entry_id,) = _entries(alice.submit("ncii", [entry]))
    assert alice.revoke([entry_id], reason="consent withdrawn").status_code == 201
    before = store_counts()

    old = alice.post("/api/v1/submissions", early_second)

    assert old.status_code == 409
    assert problem(old) == "signed-before-revocation"
    body = json.loads(old.content)
    assert (body["pointer"], body["entry"]) == ("/entries/0", entry_id)
    assert store_counts() == before
    assert _matches(bob, md5) == []

    (new_id,) = _entries(alice.submit("ncii", [entry]))
    assert _matches(bob, md5) == [new_id]


def test_another_partner_may_still_add_a_hash_someone_revoked(alice, bob, shared_list) -> None:
    md5 = secrets.token_hex(16)
    early = signed(payload(entries=[{"algorithm": "md5", "value": md5}]), bob.private_key)
    (entry_id,) = _entries(alice.submit("ncii", [{"algorithm": "md5", "value": md5}]))
    assert alice.revoke([entry_id]).status_code == 201

    assert bob.post("/api/v1/submissions", early).status_code == 201


def test_statement_whose_key_is_revoked_while_it_is_processed_is_refused(
    alice, shared_list, monkeypatch
) -> None:
    """Verification reads the keys before the log head is taken; a key revoked in between
    must not sign an entry that the log would show after the key's revocation."""
    real_open = statements.envelope_open

    def open_then_revoke(**kwargs: Any) -> Any:
        opened = real_open(**kwargs)
        services.signing_key_revoke(signing_key=opened.signing_key, actor=ADMIN, reason="lost")
        return opened

    monkeypatch.setattr(statements, "envelope_open", open_then_revoke)
    before = store_counts()

    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])

    assert response.status_code == 400
    assert problem(response) == "invalid-signature"
    after = store_counts()
    # Only the key's own revocation was logged.
    assert after == {
        **before,
        "log events": before["log events"] + 1,
        "log size": before["log size"] + 1,
    }
    assert not Submission.objects.exists()


def test_nonces_are_per_kind_of_statement(alice, shared_list) -> None:
    """A revocation may use the nonce of a submission: each kind is its own statement."""
    nonce = secrets.token_hex(16)
    entry_ids = _entries(
        alice.post("/api/v1/submissions", signed(payload(nonce=nonce), alice.private_key))
    )

    response = alice.post("/api/v1/revocations", _revocation(alice, entry_ids, nonce=nonce))

    assert response.status_code == 201, response.content


@pytest.mark.django_db(transaction=True)
def test_the_same_statement_sent_twice_at_once_takes_effect_once() -> None:
    """Two re-encodings of one signed submission raced against each other: one is stored,
    the other answers as its replay, whichever commits first."""
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    raw = alice.submission("ncii", [{"algorithm": "pdq", "value": pdq()} for _ in range(50)])
    bodies = [raw, json.dumps(json.loads(raw), indent=1).encode()]
    barrier = threading.Barrier(len(bodies))
    answers: list[Any] = []
    errors: list[BaseException] = []

    def send(body: bytes) -> Callable[[], None]:
        def work() -> None:
            client = PartnerClient(
                alice.partner, alice.api_key, alice.private_key, alice.signing_key
            )
            barrier.wait(timeout=10)
            answers.append(client.post("/api/v1/submissions", body))

        return work

    threads = [_in_thread(send(body), errors) for body in bodies]
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert sorted(answer.status_code for answer in answers) == [200, 201]
    assert len({json.loads(answer.content)["submission"] for answer in answers}) == 1
    assert Submission.objects.count() == 1
    assert Entry.objects.count() == 50


@pytest.mark.django_db(transaction=True)
def test_an_old_signature_racing_the_revocation_is_refused() -> None:
    """The revocation has appended its tombstone but not committed when an envelope signed
    before it arrives: the envelope waits for the log head, then sees the revocation."""
    from django.contrib.auth.models import User
    from django.db import transaction

    from hashes.services import revocation_by_administrator

    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    entry = {"algorithm": "md5", "value": secrets.token_hex(16)}
    early = signed(payload(entries=[entry]), alice.private_key)
    time.sleep(0.01)  # the revocation comes strictly after the signature
    (entry_id,) = _entries(alice.submit("ncii", [entry]))
    admin = User.objects.create_superuser("root", "root@example.org", None)
    revoked, release = threading.Event(), threading.Event()
    answers: list[Any] = []
    errors: list[BaseException] = []

    def revoke_and_hold() -> None:
        with transaction.atomic():
            revocation_by_administrator(
                actor=Actor.for_user(admin),
                entries=[Entry.objects.get(pk=entry_id)],
                reason="consent withdrawn",
            )
            revoked.set()
            release.wait(timeout=10)

    def resubmit() -> None:
        answers.append(alice.post("/api/v1/submissions", early))

    holder = _in_thread(revoke_and_hold, errors)
    assert revoked.wait(timeout=10)
    sender = _in_thread(resubmit, errors)
    sender.join(timeout=1)
    assert sender.is_alive(), "the resubmission waits for the revocation's log head"
    release.set()
    holder.join()
    sender.join()

    assert not errors, errors
    (answer,) = answers
    assert answer.status_code == 409, answer.content
    assert problem(answer) == "signed-before-revocation"
    assert not Entry.objects.filter(status=Entry.Status.ACTIVE).exists()
