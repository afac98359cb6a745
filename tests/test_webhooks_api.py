"""/api/v1/webhooks through HTTP: a partner's own subscriptions only, the secret shown once,
URLs that would reach internal addresses refused, every request audited."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from audit.models import AccessEvent
from tests.conftest import PartnerClient, problem
from webhooks.models import Cursor, Delivery, Subscription

PUBLIC = "https://hooks.example.net/consortium"


def _create(client: PartnerClient, url: str = PUBLIC, **fields: Any) -> Any:
    body = {"url": url, "event_types": ["entry.added", "entry.revoked"], **fields}
    return client.post("/api/v1/webhooks", json.dumps(body).encode())


def _patch(
    client: PartnerClient, webhook_id: int, body: dict[str, Any], key: str | None = None
) -> Any:
    key = client.api_key if key is None else key
    return client.http.patch(
        f"/api/v1/webhooks/{webhook_id}",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def _delete(client: PartnerClient, webhook_id: int) -> Any:
    return client.http.delete(
        f"/api/v1/webhooks/{webhook_id}", HTTP_AUTHORIZATION=f"Bearer {client.api_key}"
    )


@pytest.fixture
def resolve(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Make a name resolve to an address, as a DNS server the partner controls would."""
    names: dict[str, str] = {"hooks.example.net": "93.184.215.14"}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            address = names[host]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names.__setitem__


def test_create_shows_the_secret_once_and_lists_only_the_partners_own(
    alice: PartnerClient, bob: PartnerClient, resolve: Callable[[str, str], None]
) -> None:
    response = _create(alice, description="blocklist sync")
    assert response.status_code == 201, response.content
    created = json.loads(response.content)
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["entry.added", "entry.revoked"]
    assert created["enabled"] is True
    _create(bob)

    listed = json.loads(alice.get("/api/v1/webhooks").content)
    detail = json.loads(alice.get(f"/api/v1/webhooks/{created['id']}").content)

    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in detail
    assert detail["url"] == PUBLIC
    actions = list(
        AccessEvent.objects.filter(partner=alice.partner)
        .order_by("id")
        .values_list("action", "status")
    )
    assert actions[-3:] == [("webhook.create", 201), ("webhooks.list", 200), ("webhook.read", 200)]


def test_another_partners_webhook_is_the_same_404_as_a_missing_one(
    alice: PartnerClient, bob: PartnerClient, resolve: Callable[[str, str], None]
) -> None:
    bobs = json.loads(_create(bob).content)["id"]
    missing = bobs + 1000

    for webhook_id in (bobs, missing):
        answers = [
            alice.get(f"/api/v1/webhooks/{webhook_id}"),
            alice.get(f"/api/v1/webhooks/{webhook_id}/deliveries"),
            _patch(alice, webhook_id, {"enabled": False}),
            alice.post(f"/api/v1/webhooks/{webhook_id}/test", b""),
            _delete(alice, webhook_id),
        ]
        for answer in answers:
            assert answer.status_code == 404, answer.content
            assert problem(answer) == "unknown-webhook"
            body = json.loads(answer.content)
            assert str(webhook_id) in body["detail"]

    subscription = Subscription.objects.get(pk=bobs)
    assert subscription.enabled is True
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://hooks.example.net/", "127.0.0.1"),
        ("https://hooks.example.net/", "10.0.0.1"),
        ("https://hooks.example.net/", "169.254.169.254"),
        ("https://hooks.example.net/", "::1"),
        ("https://hooks.example.net/", "::ffff:10.0.0.1"),
        ("https://hooks.example.net/", "fe80::1"),
        ("https://hooks.example.net/", "100.64.0.1"),
        ("https://hooks.example.net/", "0.0.0.0"),  # noqa: S104 - a refused target
        ("https://hooks.example.net/", "224.0.0.1"),
        ("https://hooks.example.net/", "240.0.0.1"),
        ("https://127.0.0.1/", None),
        ("https://[::ffff:127.0.0.1]/", None),
        ("https://localhost/", None),
        ("http://hooks.example.net/", None),
        ("https://user:pw@hooks.example.net/", None),
        ("https://hooks.example.net/#frag", None),
        ("ftp://hooks.example.net/", None),
        ("https:///nohost", None),
        ("https://hooks.example.net:99999/", None),
        ("https://unresolvable.invalid/", None),
    ],
)
def test_a_url_that_could_reach_an_internal_address_is_refused_and_nothing_stored(
    alice: PartnerClient, resolve: Callable[[str, str], None], url: str, address: str | None
) -> None:
    if address is not None:
        resolve("hooks.example.net", address)

    response = _create(alice, url=url)

    assert response.status_code == 400, response.content
    assert problem(response) == "webhook-url-refused"
    assert not Subscription.objects.exists()
    assert not Cursor.objects.exists()
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.action, event.status) == ("webhook.create", 400)


def test_an_administrator_allowed_host_may_be_internal_and_plain_http(
    alice: PartnerClient, settings: Any, resolve: Callable[[str, str], None]
) -> None:
    resolve("hooks.internal", "10.0.0.1")
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "hooks.internal"]

    for url in ("http://127.0.0.1:8080/x", "https://hooks.internal/", "http://hooks.internal/"):
        response = _create(alice, url=url)
        assert response.status_code == 201, response.content

    settings.WEBHOOK_ALLOWED_HOSTS = ["10.0.0.0/8"]
    assert _create(alice, url="http://hooks.internal/").status_code == 201
    assert problem(_create(alice, url="http://127.0.0.1/")) == "webhook-url-refused"


def test_unknown_event_types_and_bad_bodies_are_refused(
    alice: PartnerClient, resolve: Callable[[str, str], None]
) -> None:
    answers = {
        "unknown-webhook-event-type": _create(alice, event_types=["entry.exploded"]),
        "malformed-request": _create(alice, event_types=[]),
    }
    for slug, answer in answers.items():
        assert answer.status_code == 400, answer.content
        assert problem(answer) == slug
    refused = alice.post("/api/v1/webhooks", b'{"url": 5')
    assert problem(refused) == "malformed-request"
    assert not Subscription.objects.exists()


def test_a_partner_has_at_most_the_configured_number_of_webhooks(
    alice: PartnerClient, settings: Any, resolve: Callable[[str, str], None]
) -> None:
    settings.WEBHOOK_MAX_PER_PARTNER = 2
    assert _create(alice).status_code == 201
    assert _create(alice).status_code == 201

    refused = _create(alice)

    assert refused.status_code == 409
    assert problem(refused) == "too-many-webhooks"
    assert Subscription.objects.count() == 2


def test_update_disable_enable_and_delete(
    alice: PartnerClient, resolve: Callable[[str, str], None]
) -> None:
    created = json.loads(_create(alice).content)

    disabled = _patch(alice, created["id"], {"enabled": False, "event_types": ["entry.erased"]})
    assert disabled.status_code == 200, disabled.content
    body = json.loads(disabled.content)
    assert body["enabled"] is False
    assert body["disabled_reason"] == "disabled by the partner"
    assert body["event_types"] == ["entry.erased"]

    resolve("hooks.example.net", "10.0.0.1")
    refused = _patch(alice, created["id"], {"url": "https://hooks.example.net/new"})
    assert problem(refused) == "webhook-url-refused"
    assert Subscription.objects.get(pk=created["id"]).url == PUBLIC

    enabled = json.loads(_patch(alice, created["id"], {"enabled": True}).content)
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, "")

    assert _delete(alice, created["id"]).status_code == 204
    assert not Subscription.objects.exists()
    assert not Cursor.objects.exists()
    actions = list(
        AccessEvent.objects.filter(target=f"webhook:{created['id']}")
        .order_by("id")
        .values_list("action", "status")
    )
    assert actions == [
        ("webhook.create", 201),
        ("webhook.update", 200),
        ("webhook.update", 400),
        ("webhook.update", 200),
        ("webhook.delete", 204),
    ]


def test_deliveries_are_keyset_paginated_newest_first(
    alice: PartnerClient, resolve: Callable[[str, str], None]
) -> None:
    created = json.loads(_create(alice).content)
    subscription = Subscription.objects.get(pk=created["id"])
    Delivery.objects.bulk_create(
        Delivery(
            subscription=subscription,
            message_id=f"msg_{subscription.pk}_{n}",
            event_type="entry.added",
            log_index=n,
            attempt=1,
            succeeded=True,
            status_code=200,
            duration_ms=3,
        )
        for n in range(5)
    )
    path = f"/api/v1/webhooks/{created['id']}/deliveries"

    seen: list[int] = []
    after: dict[str, Any] = {"limit": 2}
    while True:
        page = json.loads(alice.get(path, **after).content)
        seen += [item["log_index"] for item in page["deliveries"]]
        if page["next"] is None:
            break
        after = {"limit": 2, "before": page["next"]}

    assert seen == [4, 3, 2, 1, 0]
    assert problem(alice.get(path, limit=0)) == "limit-out-of-range"
    assert problem(alice.get(path, before="1e3")) == "invalid-cursor"
