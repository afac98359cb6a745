"""Feedback through HTTP as partners: signed verdicts, the aggregate status, review before
sharing, and quarantine by policy, each a log event that the feed, the match index and
log_verify follow."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.log_verify import Divergence, log_verify
from audit.models import AccessEvent, LogEvent
from audit.services import checkpoint_sign
from consortium_client.dsse import FEEDBACK_PAYLOAD_TYPE, envelope_sign
from hashes.models import Entry, Feedback, HashList, QuarantineResolution
from tests.conftest import PartnerClient, partner_client, pdq, problem, store_counts
from tests.factories import HashListFactory


def feedback_counts() -> dict[str, int]:
    return {
        **store_counts(),
        "feedback": Feedback.objects.count(),
        "resolutions": QuarantineResolution.objects.count(),
    }


def verdict_body(
    client: PartnerClient,
    entry: int,
    verdict: str = "agree",
    reason: str | None = None,
    **fields: Any,
) -> bytes:
    """A feedback envelope signed by `client`; `fields` override or add payload fields."""
    reason = (
        reason
        or {
            "agree": "confirmed_abusive",
            "disagree": "wrong_label",
            "false_positive": "matched_benign_content",
        }[verdict]
    )
    document: dict[str, Any] = {
        "entry": entry,
        "verdict": verdict,
        "reason": reason,
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": secrets.token_hex(8),
        **fields,
    }
    return envelope_sign(FEEDBACK_PAYLOAD_TYPE, json.dumps(document).encode(), client.private_key)


def give(client: PartnerClient, entry: int, verdict: str = "agree", **fields: Any) -> Any:
    return client.post(
        f"/api/v1/entries/{entry}/feedback", verdict_body(client, entry, verdict, **fields)
    )


def given(client: PartnerClient, entry: int, verdict: str = "agree", **fields: Any) -> dict:
    response = give(client, entry, verdict, **fields)
    assert response.status_code == 201, response.content
    return json.loads(response.content)


def submit_one(client: PartnerClient, list_name: str, value: str | None = None) -> int:
    response = client.submit(list_name, [{"algorithm": "pdq", "value": value or pdq()}])
    assert response.status_code == 201, response.content
    return json.loads(response.content)["entries"][0]["id"]


def detail(client: PartnerClient, entry: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/entries/{entry}")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def matches(client: PartnerClient, value: str, **options: Any) -> list[dict[str, Any]]:
    body = json.dumps({"hashes": [{"algorithm": "pdq", "value": value}], **options}).encode()
    response = client.post("/api/v1/match", body)
    assert response.status_code == 200, response.content
    return json.loads(response.content)["results"][0]["matches"]


@pytest.fixture
def trio(db: None) -> tuple[PartnerClient, PartnerClient, PartnerClient]:
    """alice submits; bob and carol judge. All three see alice's list `ncii`."""
    alice, bob, carol = (partner_client(name) for name in ("alice", "bob", "carol"))
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    return alice, bob, carol


def test_three_partners_verdicts_make_the_documented_status(trio) -> None:
    alice, bob, carol = trio
    dave = partner_client("dave")
    entry = submit_one(alice, "ncii")
    assert detail(bob, entry)["feedback"] == {
        "agree": 0,
        "disagree": 0,
        "false_positive": 0,
        "status": None,
        "review": None,
        "grade": None,
        "quarantined": False,
    }

    first = given(bob, entry, "agree", note="seen it, it is abusive")
    assert (first["summary"]["agree"], first["summary"]["status"]) == (1, "confirmed")
    second = given(carol, entry, "false_positive")
    assert second["summary"]["status"] == "disputed"
    # bob changes his mind: only negative verdicts are left, which is no status.
    third = given(bob, entry, "disagree")
    assert third["summary"] == {
        "agree": 0,
        "disagree": 1,
        "false_positive": 1,
        "status": None,
        "review": None,
        "grade": None,
        "quarantined": False,
    }
    # Back to agree: disputed again. One current verdict per partner, every one kept.
    assert given(bob, entry, "agree")["summary"]["status"] == "disputed"
    assert Feedback.objects.filter(entry_id=entry).count() == 4
    assert Feedback.objects.filter(entry_id=entry, current=True).count() == 2

    shown = detail(dave, entry)
    assert shown["feedback"]["status"] == "disputed"
    assert [(v["partner"], v["verdict"]) for v in shown["verdicts"]] == [
        ("carol", "false_positive"),
        ("bob", "agree"),
    ]
    # Notes go to the entry's submitter and the verdict's author, not to other partners.
    assert all(v["note"] is None for v in shown["verdicts"])
    assert detail(alice, entry)["verdicts"][1]["note"] == ""
    history = Feedback.objects.filter(entry_id=entry, partner=bob.partner).order_by("log_index")
    assert history[0].note == "seen it, it is abusive"

    # Each verdict is an entry_feedback event in the feed of every partner who sees the list.
    events, _ = dave.feed_all()
    verdicts = [e for e in events if e["type"] == "entry_feedback"]
    assert [(e["partner"], e["verdict"], e["status"]) for e in verdicts] == [
        ("bob", "agree", "confirmed"),
        ("carol", "false_positive", "disputed"),
        ("bob", "disagree", None),
        ("bob", "agree", "disputed"),
    ]
    leaf = verdicts[0]
    assert leaf["entry"] == entry
    assert leaf["list"] == "ncii"
    assert leaf["submitter"] == "alice"
    assert leaf["reason"] == "confirmed_abusive"
    assert leaf["key"] == bob.signing_key.key_id
    stored = history[0]
    assert leaf["envelope"] == stored.envelope_sha256
    assert "note" not in leaf
    assert "seen it" not in json.dumps(verdicts)
    assert leaf["counts"] == {"agree": 1, "disagree": 0, "false_positive": 0}
    # The match answer shows the same summary.
    value = Entry.objects.get(pk=entry).value
    assert matches(dave, value)[0]["feedback"]["status"] == "disputed"


def test_feedback_on_a_hidden_entry_is_answered_like_a_missing_one(trio) -> None:
    alice, bob, _ = trio
    HashListFactory(name="mine", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    hidden = submit_one(alice, "mine")
    missing = hidden + 1000
    before = feedback_counts()

    answers = [give(bob, entry) for entry in (hidden, missing)]

    assert [a.status_code for a in answers] == [404, 404]
    assert [problem(a) for a in answers] == ["unknown-entry", "unknown-entry"]
    bodies = [json.loads(a.content) for a in answers]
    assert bodies[0]["detail"].replace(str(hidden), "N") == bodies[1]["detail"].replace(
        str(missing), "N"
    )
    assert feedback_counts() == before


@pytest.mark.parametrize(
    ("case", "slug", "status"),
    [
        ("own entry", "feedback-on-own-entry", 403),
        ("revoked", "entry-already-revoked", 409),
        ("erased", "entry-erased", 409),
        ("other entry in the envelope", "invalid-payload", 400),
        ("reason of another verdict", "invalid-payload", 400),
        ("unknown verdict", "invalid-payload", 400),
        ("grade off the scale", "unknown-grade", 400),
        ("grade on a disagree", "invalid-payload", 400),
        ("note too long", "invalid-payload", 400),
        ("unknown field", "invalid-payload", 400),
    ],
)
def test_bad_feedback_is_refused_and_stores_nothing(
    trio, case: str, slug: str, status: int
) -> None:
    alice, bob, _ = trio
    HashList.objects.filter(name="ncii").update(grades=["a", "b"])
    entry = submit_one(alice, "ncii")
    other = submit_one(alice, "ncii")
    client, body = bob, verdict_body(bob, entry)
    if case == "own entry":
        client, body = alice, verdict_body(alice, entry)
    elif case == "revoked":
        assert alice.revoke([entry]).status_code == 201
    elif case == "erased":
        call_command("erase_entry", str(entry), "--reason", "court order")
    elif case == "other entry in the envelope":
        body = verdict_body(bob, other)
    elif case == "reason of another verdict":
        body = verdict_body(bob, entry, "agree", reason="matched_benign_content")
    elif case == "unknown verdict":
        body = verdict_body(bob, entry, "maybe", reason="not_abusive")
    elif case == "grade off the scale":
        body = verdict_body(bob, entry, "agree", grade="z")
    elif case == "grade on a disagree":
        body = verdict_body(bob, entry, "disagree", grade="a")
    elif case == "note too long":
        body = verdict_body(bob, entry, note="x" * 2001)
    elif case == "unknown field":
        body = verdict_body(bob, entry, verdicts=["agree"])
    before = feedback_counts()

    response = client.post(f"/api/v1/entries/{entry}/feedback", body)

    assert (response.status_code, problem(response)) == (status, slug)
    assert feedback_counts() == before
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.action, event.status, event.detail["problem"]) == (
        "feedback.create",
        status,
        slug,
    )


def test_feedback_envelopes_are_verified_like_submissions(trio) -> None:
    alice, bob, carol = trio
    entry = submit_one(alice, "ncii")
    path = f"/api/v1/entries/{entry}/feedback"
    before = feedback_counts()

    # Signed by carol's key, sent with bob's API key.
    forged = bob.post(path, verdict_body(carol, entry))
    assert (forged.status_code, problem(forged)) == (400, "invalid-signature")
    stale = bob.post(
        path,
        verdict_body(bob, entry, timestamp=(datetime.now(UTC) - timedelta(days=2)).isoformat()),
    )
    assert (stale.status_code, problem(stale)) == (400, "stale-envelope")
    wrong_type = bob.post(
        path,
        envelope_sign(
            "application/vnd.consortium.revocation.v1+json",
            json.dumps({"entry": entry}).encode(),
            bob.private_key,
        ),
    )
    assert problem(wrong_type) == "wrong-payload-type"
    assert feedback_counts() == before

    body = verdict_body(bob, entry, "false_positive")
    first = bob.post(path, body)
    assert first.status_code == 201
    after_first = feedback_counts()
    # The same envelope again, and re-encoded (other white space, base64 without padding
    # made standard again by the parser, signatures reordered): the same statement.
    envelope = json.loads(body)
    reencoded = json.dumps(envelope, indent=2).encode()
    for again in (body, reencoded):
        replay = bob.post(path, again)
        assert replay.status_code == 200, replay.content
        assert json.loads(replay.content)["feedback"] == json.loads(first.content)["feedback"]
    assert feedback_counts() == after_first
    # Its nonce with another payload is refused.
    payload = json.loads(base64.b64decode(envelope["payload"]))
    reused = verdict_body(bob, entry, "agree", nonce=payload["nonce"])
    assert problem(bob.post(path, reused)) == "nonce-reused"
    assert feedback_counts() == after_first
    actions = list(
        AccessEvent.objects.filter(action="feedback.create").values_list("status", flat=True)
    )
    assert actions.count(201) == 1
    assert actions.count(200) == 2


def test_nth_false_positive_quarantines_and_resolving_restores(trio) -> None:
    alice, bob, carol = trio
    HashList.objects.filter(name="ncii").update(quarantine_after=2)
    value = pdq()
    entry = submit_one(alice, "ncii", value)
    assert [m["entry"] for m in matches(bob, value)] == [entry]

    given(bob, entry, "false_positive")
    assert [m["entry"] for m in matches(bob, value)] == [entry]
    answer = given(carol, entry, "false_positive", reason="not_abusive")

    assert answer["summary"]["quarantined"] is True
    assert len(answer["log_indexes"]) == 2
    quarantine = LogEvent.objects.get(index=answer["log_indexes"][1])
    leaf = json.loads(bytes(quarantine.leaf))
    assert (leaf["type"], leaf["entry"], leaf["reason"], leaf["false_positives"]) == (
        "entry_quarantined",
        entry,
        "false_positive_threshold",
        2,
    )
    assert matches(bob, value) == []
    assert matches(alice, value, include_pending=True) == []
    # Changing a verdict never lifts a quarantine.
    given(carol, entry, "agree")
    assert detail(bob, entry)["feedback"]["quarantined"] is True
    assert matches(bob, value) == []

    # Only the submitter (or an administrator) resolves it, with a reason.
    path = f"/api/v1/entries/{entry}/quarantine/resolution"
    refused = bob.post(path, json.dumps({"reason": "fine"}).encode())
    assert (refused.status_code, problem(refused)) == (403, "not-entry-submitter")
    restored = alice.post(path, json.dumps({"reason": "checked again: it is abusive"}).encode())
    assert restored.status_code == 201, restored.content
    body = json.loads(restored.content)
    assert (body["resolution"], body["resolved_by"]) == ("restored", "alice")
    assert [m["entry"] for m in matches(bob, value)] == [entry]
    again = alice.post(path, json.dumps({"reason": "twice"}).encode())
    assert (again.status_code, problem(again)) == (409, "entry-not-quarantined")

    # A restored entry counts false positives afresh: two new ones quarantine it again.
    given(bob, entry, "false_positive", reason="low_quality_hash")
    assert matches(bob, value)
    given(carol, entry, "false_positive")
    assert matches(bob, value) == []
    # Revoking a quarantined entry resolves its quarantine as revoked.
    assert alice.revoke([entry]).status_code == 201
    resolution = QuarantineResolution.objects.order_by("-log_index").first()
    assert resolution is not None
    assert (resolution.outcome, resolution.resolved_by) == ("revoked", "alice")
    events, _ = bob.feed_all()
    kinds = [e["type"] for e in events if e.get("entry") == entry]
    assert kinds == [
        "entry_feedback",
        "entry_feedback",
        "entry_quarantined",
        "entry_feedback",
        "entry_quarantine_resolved",
        "entry_feedback",
        "entry_feedback",
        "entry_quarantined",
        "entry_revoked",
        "entry_quarantine_resolved",
    ]
    checkpoint_sign()
    # log_verify raises at the first divergence; every verdict was checked against its row.
    report = log_verify()
    assert report.size == LogEvent.objects.count()
    assert report.feedback == Feedback.objects.count()


def test_administrator_resolves_a_quarantine_by_command(trio) -> None:
    alice, bob, carol = trio
    HashList.objects.filter(name="ncii").update(quarantine_after=1)
    value = pdq()
    entry = submit_one(alice, "ncii", value)
    given(bob, entry, "false_positive")
    assert matches(carol, value) == []

    call_command("quarantine_resolve", str(entry), "--reason", "reviewed by the secretariat")

    assert [m["entry"] for m in matches(carol, value)] == [entry]
    events, _ = carol.feed_all()
    resolved = [e for e in events if e["type"] == "entry_quarantine_resolved"]
    assert [(e["resolution"], e["resolved_by"], e["reason"]) for e in resolved] == [
        ("restored", "command:quarantine_resolve", "reviewed by the secretariat")
    ]


def test_pending_entries_match_only_when_asked_until_the_policy_confirms(trio) -> None:
    alice, bob, carol = trio
    dave = partner_client("dave")
    hash_list = HashList.objects.get(name="ncii")
    hash_list.review_required = True
    hash_list.reviews_needed = 2
    hash_list.grades = ["a", "b", "c"]
    hash_list.save()
    hash_list.reviewers.set([bob.partner, carol.partner])
    value = pdq()
    entry = submit_one(alice, "ncii", value)

    added = [e for e in dave.feed_all()[0] if e["type"] == "entry_added"]
    assert added[0]["review"] == "pending"
    assert detail(dave, entry)["feedback"]["status"] == "pending"
    assert matches(dave, value) == []
    pending = matches(dave, value, include_pending=True)
    assert [(m["entry"], m["pending"]) for m in pending] == [(entry, True)]

    # dave is no designated reviewer: his agree is counted but confirms nothing.
    assert len(given(dave, entry, "agree")["log_indexes"]) == 1
    assert given(bob, entry, "agree", grade="b")["summary"]["status"] == "pending"
    assert matches(dave, value) == []
    confirming = given(carol, entry, "agree", grade="a", reason="confirmed_label")

    assert confirming["summary"]["review"] == "confirmed"
    assert confirming["summary"]["grade"] == "a"
    confirmed = json.loads(bytes(LogEvent.objects.get(index=confirming["log_indexes"][1]).leaf))
    assert (confirmed["type"], confirmed["confirmed_by"], confirmed["grade"]) == (
        "entry_confirmed",
        ["bob", "carol"],
        "a",
    )
    assert [(m["entry"], m["pending"]) for m in matches(dave, value)] == [(entry, False)]
    # The index of a fresh process, loaded from the log, agrees.
    from hashes.match_index import match_indexes

    match_indexes.reset()
    assert [m["entry"] for m in matches(dave, value)] == [entry]
    # An entry still pending stays out after a reload too.
    other = pdq()
    submit_one(alice, "ncii", other)
    match_indexes.reset()
    assert matches(dave, other) == []
    assert len(matches(dave, other, include_pending=True)) == 1


def test_every_feedback_read_and_write_is_an_access_event(trio) -> None:
    alice, bob, _ = trio
    entry = submit_one(alice, "ncii")
    first = AccessEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    given(bob, entry, "agree")
    detail(bob, entry)
    give(bob, entry + 999)

    rows = list(
        AccessEvent.objects.filter(id__gt=first)
        .order_by("id")
        .values_list("action", "status", "partner__name", "target")
    )
    assert rows == [
        ("feedback.create", 201, "bob", f"entry:{entry}"),
        ("entry.read", 200, "bob", f"entry:{entry}"),
        ("feedback.create", 404, "bob", ""),
    ]


def test_list_policy_is_validated_and_set_by_command(trio) -> None:
    _, bob, _ = trio
    with pytest.raises(CommandError, match="grade code"):
        call_command("list_policy", "ncii", "--grades", "A grade")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("list_policy", "ncii", "--quarantine-after", "0")
    with pytest.raises(CommandError, match="no partner"):
        call_command("list_policy", "ncii", "--reviewers", "nobody")
    hash_list = HashList.objects.get(name="ncii")
    assert (hash_list.review_required, hash_list.quarantine_after, hash_list.grades) == (
        False,
        None,
        [],
    )

    call_command(
        "list_policy",
        "ncii",
        "--review-required",
        "--reviews-needed",
        "2",
        "--reviewers",
        "bob",
        "--grades",
        "a,b",
        "--quarantine-after",
        "3",
    )

    hash_list.refresh_from_db()
    assert (hash_list.review_required, hash_list.reviews_needed, hash_list.quarantine_after) == (
        True,
        2,
        3,
    )
    assert list(hash_list.reviewers.all()) == [bob.partner]
    assert AccessEvent.objects.filter(action="list.policy", target="list:ncii").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_false_positives_quarantine_exactly_once() -> None:
    alice = partner_client("alice")
    judges = [partner_client(f"judge{i}") for i in range(4)]
    HashListFactory(
        name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL, quarantine_after=3
    )
    entry = submit_one(alice, "ncii")
    bodies = [verdict_body(judge, entry, "false_positive") for judge in judges]
    barrier = threading.Barrier(len(judges))
    answers: list[int] = []

    def send(judge: PartnerClient, body: bytes) -> None:
        barrier.wait()
        try:
            answers.append(judge.post(f"/api/v1/entries/{entry}/feedback", body).status_code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=send, args=(judge, body))
        for judge, body in zip(judges, bodies, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [201] * 4
    stored = Entry.objects.get(pk=entry)
    assert stored.false_positive_count == 4
    assert stored.quarantined
    assert LogEvent.objects.filter(event_type="entry_quarantined").count() == 1
    leaf = json.loads(bytes(LogEvent.objects.get(event_type="entry_quarantined").leaf))
    assert leaf["false_positives"] == 3


def test_log_verify_finds_a_verdict_changed_in_the_database(trio) -> None:
    alice, bob, _ = trio
    entry = submit_one(alice, "ncii")
    given(bob, entry, "false_positive")
    checkpoint_sign()
    assert log_verify().feedback == 1

    Feedback.objects.filter(entry_id=entry).update(verdict="agree", reason="confirmed_abusive")

    with pytest.raises(Divergence, match=r"hashes_feedback .*verdict differs"):
        log_verify()


def test_administrator_restores_a_quarantine_in_the_admin_after_giving_a_reason(trio) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.conftest import staff_login

    alice, bob, carol = trio
    HashList.objects.filter(name="ncii").update(quarantine_after=1)
    value = pdq()
    entry = submit_one(alice, "ncii", value)
    given(bob, entry, "false_positive")
    browser = Client()
    staff_login(browser, User.objects.create_superuser("admin", "admin@example.org", None))
    data = {"action": "restore", "_selected_action": [str(entry)], "index": "0"}

    asked = browser.post("/admin/hashes/entry/", data, follow=True)

    assert b"Restore quarantined entries" in asked.content
    assert matches(carol, value) == []
    browser.post("/admin/hashes/entry/", {**data, "reason": "reviewed again"}, follow=True)
    assert [m["entry"] for m in matches(carol, value)] == [entry]
    events, _ = carol.feed_all()
    resolved = [e for e in events if e["type"] == "entry_quarantine_resolved"]
    assert [(e["resolution"], e["resolved_by"], e["reason"]) for e in resolved] == [
        ("restored", "admin:admin", "reviewed again")
    ]
