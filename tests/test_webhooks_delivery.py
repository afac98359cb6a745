"""The follower of the log, run in this process against a real HTTP receiver: what it
delivers (what the feed shows the partner, of the subscribed types, in log order), how it
fails (retries, auto-disable, refused targets, redirects), and its lock."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from standardwebhooks import Webhook

from hashes.models import HashList
from tests.conftest import PartnerClient, partner_client, pdq, problem
from tests.factories import HashListFactory, SharingGroupFactory
from tests.videos import vpdq_synthetic
from tests.webhook_receiver import Receiver, webhook_receiver
from webhooks import selectors
from webhooks.events import Subscriber, webhook_types_of
from webhooks.models import Cursor, Delivery, Subscription
from webhooks.services import FOLLOWER_LOCK_CLASS, subscription_follow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with webhook_receiver() as running:
        yield running


def _subscribe(client: PartnerClient, url: str, types: list[str] | None = None) -> tuple[int, str]:
    body = {"url": url, "event_types": types or ["entry.added", "entry.revoked"]}
    response = client.post("/api/v1/webhooks", json.dumps(body).encode())
    assert response.status_code == 201, response.content
    created = json.loads(response.content)
    return created["id"], created["secret"]


def _added(client: PartnerClient, list_name: str) -> int:
    response = client.submit(list_name, [{"algorithm": "pdq", "value": pdq()}])
    assert response.status_code == 201, response.content
    return int(json.loads(response.content)["entries"][0]["id"])


def test_a_partner_receives_what_its_feed_shows_of_its_types_in_log_order_signed(
    receiver: Receiver,
) -> None:
    alice, bob = partner_client("alice"), partner_client("bob")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    HashListFactory(name="private", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    bobs, secret = _subscribe(bob, receiver.url)
    shared = _added(alice, "ncii")
    _added(alice, "private")
    revoked = alice.revoke([shared])
    assert revoked.status_code == 201, revoked.content
    second = _added(alice, "ncii")

    outcome = subscription_follow(subscription_id=bobs)

    assert (outcome.state, outcome.delivered) == ("caught-up", 3)
    got = receiver.acknowledged()
    verifier = Webhook(secret)
    bodies = [verifier.verify(item.body, item.headers) for item in got]
    feed, _ = bob.feed_all()
    wanted = [e for e in feed if e["type"] in ("entry_added", "entry_revoked")]
    assert [body["data"]["event"] for body in bodies] == [
        {k: v for k, v in e.items() if k not in ("value", "salt")} for e in wanted
    ]
    assert [body["type"] for body in bodies] == ["entry.added", "entry.revoked", "entry.added"]
    assert [item.message_id for item in got] == [
        f"msg_{bobs}_{index}" for index in (shared, bodies[1]["data"]["log_index"], second)
    ]
    assert bodies[0]["data"]["values"][0]["value"] == wanted[0]["value"]
    assert all(body["data"]["event"]["list"] == "ncii" for body in bodies)
    cursor = Cursor.objects.get(pk=bobs)
    assert cursor.position >= second
    deliveries = Delivery.objects.filter(subscription_id=bobs).order_by("id")
    assert [(d.succeeded, d.status_code, d.attempt) for d in deliveries] == [(True, 200, 1)] * 3


def test_a_receiver_failing_then_recovering_gets_each_message_once_in_order(
    receiver: Receiver, settings: Any
) -> None:
    settings.WEBHOOK_RETRY_BASE = 0.0
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    subscription_id, _ = _subscribe(alice, receiver.url, ["entry.added"])
    added = [_added(alice, "ncii") for _ in range(3)]
    receiver.answer = lambda n: 500 if n < 2 or n == 3 else 200

    states = [subscription_follow(subscription_id=subscription_id).state for _ in range(5)]

    assert states[:2] == ["failing", "failing"]
    assert states[-1] == "caught-up"
    ids = [item.message_id for item in receiver.acknowledged()]
    assert ids == [f"msg_{subscription_id}_{index}" for index in added]
    # Every attempt of a message carries the same id.
    assert [item.message_id for item in receiver.requests[:3]] == [ids[0]] * 3
    attempts = list(
        Delivery.objects.filter(subscription_id=subscription_id)
        .order_by("id")
        .values_list("log_index", "attempt", "status_code")
    )
    assert attempts == [
        (added[0], 1, 500),
        (added[0], 2, 500),
        (added[0], 3, 200),
        (added[1], 1, 500),
        (added[1], 2, 200),
        (added[2], 1, 200),
    ]


def test_persistent_failure_disables_with_a_notice_and_enabling_delivers_the_backlog(
    receiver: Receiver, settings: Any
) -> None:
    settings.WEBHOOK_RETRY_BASE = 0.0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    subscription_id, _ = _subscribe(alice, receiver.url, ["entry.added"])
    first = _added(alice, "ncii")
    receiver.answer = lambda n: 503

    states = [subscription_follow(subscription_id=subscription_id).state for _ in range(4)]

    assert states == ["failing", "failing", "disabled", "paused"]
    assert len(receiver.requests) == 3
    detail = json.loads(alice.get(f"/api/v1/webhooks/{subscription_id}").content)
    assert detail["enabled"] is False
    assert (
        f"disabled after 3 failed attempts to deliver msg_{subscription_id}_{first}"
        in (detail["disabled_reason"])
    )
    assert "HTTP 503" in detail["disabled_reason"]

    second = _added(alice, "ncii")
    receiver.answer = lambda n: 200
    response = alice.http.patch(
        f"/api/v1/webhooks/{subscription_id}",
        '{"enabled": true}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {alice.api_key}",
    )
    assert response.status_code == 200, response.content
    assert subscription_follow(subscription_id=subscription_id).state == "caught-up"

    assert [item.message_id for item in receiver.acknowledged()] == [
        f"msg_{subscription_id}_{first}",
        f"msg_{subscription_id}_{second}",
    ]


def test_a_name_that_now_resolves_to_an_internal_address_is_never_requested(
    receiver: Receiver, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS under the partner's control: public when subscribed, 127.0.0.1 or 10.0.0.1 later."""
    settings.WEBHOOK_ALLOWED_HOSTS = []
    port = receiver.url.split(":")[2].split("/")[0]
    answer = {"address": "93.184.215.14"}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.net":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer["address"], int(port)))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    subscription_id, _ = _subscribe(alice, f"https://hooks.example.net:{port}/hooks")
    _added(alice, "ncii")

    for address in ("127.0.0.1", "10.0.0.1"):
        answer["address"] = address
        Cursor.objects.filter(pk=subscription_id).update(retry_at=None)
        assert subscription_follow(subscription_id=subscription_id).state == "failing"

    assert receiver.requests == []
    errors = list(
        Delivery.objects.filter(subscription_id=subscription_id)
        .order_by("id")
        .values_list("status_code", "error")
    )
    assert errors == [
        (None, "refused: hooks.example.net resolves to 127.0.0.1 is a loopback address"),
        (None, "refused: hooks.example.net resolves to 10.0.0.1 is a private address"),
    ]

    # Allowed by the administrator, the same name is requested (at the address checked).
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.example.net"]
    answer["address"] = "127.0.0.1"
    Subscription.objects.filter(pk=subscription_id).update(
        url=f"http://hooks.example.net:{port}/hooks"
    )
    Cursor.objects.filter(pk=subscription_id).update(retry_at=None)
    assert subscription_follow(subscription_id=subscription_id).state == "caught-up"
    assert receiver.acknowledged()[0].headers["host"] == f"hooks.example.net:{port}"


def test_a_redirect_is_not_followed(receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_RETRY_BASE = 60.0
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    subscription_id, _ = _subscribe(alice, receiver.url, ["entry.added"])
    _added(alice, "ncii")
    receiver.answer = lambda n: 302

    assert subscription_follow(subscription_id=subscription_id).state == "failing"
    # Not due again for a while: a second run sends nothing.
    assert subscription_follow(subscription_id=subscription_id).state == "waiting"

    assert len(receiver.requests) == 1
    delivery = Delivery.objects.get(subscription_id=subscription_id)
    assert (delivery.status_code, delivery.succeeded) == (302, False)


def test_a_follower_leaves_a_subscription_another_follower_holds(receiver: Receiver) -> None:
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    subscription_id, _ = _subscribe(alice, receiver.url, ["entry.added"])
    _added(alice, "ncii")
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [FOLLOWER_LOCK_CLASS, subscription_id])
        assert subscription_follow(subscription_id=subscription_id).state == "busy"
        assert receiver.requests == []
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [FOLLOWER_LOCK_CLASS, subscription_id])
    assert subscription_follow(subscription_id=subscription_id).delivered == 1


def test_the_test_endpoint_sends_a_signed_test_message(
    receiver: Receiver, eager_tasks: None
) -> None:
    alice = partner_client("alice")
    subscription_id, secret = _subscribe(alice, receiver.url)

    response = alice.post(f"/api/v1/webhooks/{subscription_id}/test", b"")

    assert response.status_code == 202, response.content
    message_id = json.loads(response.content)["message_id"]
    (got,) = receiver.acknowledged()
    body = Webhook(secret).verify(got.body, got.headers)
    assert got.message_id == message_id
    assert body["type"] == "webhook.test"
    page = json.loads(alice.get(f"/api/v1/webhooks/{subscription_id}/deliveries").content)
    assert [(d["message_id"], d["status_code"], d["log_index"]) for d in page["deliveries"]] == [
        (message_id, 200, None)
    ]
    bob = partner_client("bob")
    assert problem(bob.post(f"/api/v1/webhooks/{subscription_id}/test", b"")) == ("unknown-webhook")
    assert len(receiver.requests) == 1


def test_the_routes_table_maps_feedback_events() -> None:
    """Which types a feedback or quarantine leaf is, for a subscriber who owns the entry or not."""
    mine = Subscriber(partner_id=7, entry_owner=lambda entry_id: 7 if entry_id == 1 else 8)
    every = {"entry.feedback", "entry.disputed", "entry.quarantined", "entry.added"}

    def types(leaf: dict[str, Any], subscribed: set[str] = every) -> list[str]:
        return webhook_types_of(leaf, subscribed=subscribed, subscriber=mine)

    disputed_mine = {"type": "entry_feedback", "entry": 1, "status": "disputed"}
    assert types(disputed_mine) == ["entry.disputed", "entry.feedback"]
    assert types(disputed_mine, {"entry.feedback"}) == ["entry.feedback"]
    assert types({"type": "entry_feedback", "entry": 2, "status": "disputed"}) == ["entry.disputed"]
    assert types({"type": "entry_feedback", "entry": 2, "status": "confirmed"}) == []
    assert types({"type": "entry_feedback", "entry": 1, "status": None}) == ["entry.feedback"]
    assert types({"type": "entry_quarantined", "entry": 2}) == ["entry.quarantined"]
    assert types({"type": "signing_key_registered"}) == []


def test_feedback_disputes_and_quarantine_reach_the_partners_who_asked(
    receiver: Receiver,
) -> None:
    """The routes of the feedback work's log events, end to end: the submitter hears of feedback
    on its own entry, of the dispute and of the quarantine and its resolution; a partner who
    asked only for disputes hears of the dispute alone; a partner who cannot see the list hears
    of nothing."""
    from tests.test_feedback import given

    alice, bob, carol = (partner_client(name) for name in ("alice", "bob", "carol"))
    outsider = partner_client("dave")
    group = SharingGroupFactory()
    group.members.add(alice.partner, bob.partner, carol.partner)
    HashListFactory(
        name="ncii",
        owner=alice.partner,
        visibility=HashList.Visibility.GROUP,
        group=group,
        quarantine_after=2,
    )
    HashListFactory(name="own", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    every = [
        "entry.feedback",
        "entry.disputed",
        "entry.quarantined",
        "entry.quarantine_resolved",
    ]
    alices, alice_secret = _subscribe(alice, receiver.url, every)
    bobs, _ = _subscribe(bob, receiver.url, ["entry.disputed"])
    daves, _ = _subscribe(outsider, receiver.url, every)
    entry = _added(alice, "ncii")
    _added(alice, "own")

    given(bob, entry, "agree")
    given(carol, entry, "false_positive")  # agree + false_positive: disputed
    given(bob, entry, "false_positive")  # the second false positive: quarantined
    resolved = alice.post(
        f"/api/v1/entries/{entry}/quarantine/resolution",
        json.dumps({"reason": "checked again"}).encode(),
    )
    assert resolved.status_code == 201, resolved.content

    for subscription in (alices, bobs, daves):
        assert subscription_follow(subscription_id=subscription).state == "caught-up"
    by_subscription: dict[int, list[dict[str, Any]]] = {alices: [], bobs: [], daves: []}
    for item in receiver.acknowledged():
        subscription = int(item.message_id.split("_")[1])
        by_subscription[subscription].append(json.loads(item.body))

    alice_got = by_subscription[alices]
    Webhook(alice_secret).verify(
        receiver.acknowledged()[0].body, receiver.acknowledged()[0].headers
    )
    assert [body["type"] for body in alice_got] == [
        "entry.feedback",
        "entry.disputed",
        "entry.feedback",
        "entry.quarantined",
        "entry.quarantine_resolved",
    ]
    assert [body["data"]["types"] for body in alice_got][1] == ["entry.disputed", "entry.feedback"]
    assert all(body["data"]["event"]["entry"] == entry for body in alice_got)
    indexes = [body["data"]["log_index"] for body in alice_got]
    assert indexes == sorted(indexes)
    assert [body["type"] for body in by_subscription[bobs]] == ["entry.disputed"]
    assert by_subscription[daves] == []


def test_long_videos_past_the_feeds_byte_cap_each_arrive_with_their_value(
    receiver: Receiver, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = partner_client("alice"), partner_client("bob")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    videos = [vpdq_synthetic(seed, 40) for seed in range(1, 5)]
    bobs, secret = _subscribe(bob, receiver.url, ["entry.added"])
    response = alice.submit("ncii", [{"algorithm": "vpdq", "value": v} for v in videos])
    assert response.status_code == 201, response.content
    # One video and a half: each round of the follower takes what fits, the next the rest.
    settings.FEED_PAGE_MAX_BYTES = len(videos[0]) * 3 // 2
    read: list[list[str]] = []  # the video values each round read
    feed_values = selectors.feed_values

    def recorded(**arguments: Any) -> Any:
        values = feed_values(**arguments)
        read.append([item["value"] for item in json.loads(values.items)])
        return values

    monkeypatch.setattr(selectors, "feed_values", recorded)

    outcome = subscription_follow(subscription_id=bobs)

    assert (outcome.state, outcome.delivered) == ("caught-up", 4)
    verifier = Webhook(secret)
    bodies = [verifier.verify(item.body, item.headers) for item in receiver.acknowledged()]
    assert [body["data"]["values"][0]["value"] for body in bodies] == videos
    assert read == [[video] for video in videos]
