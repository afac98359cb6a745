"""Who may call what, and what they see: every endpoint against every kind of caller.

Every unusable key gets the same 401 answer, so a caller cannot probe which keys exist or
why theirs fails; the access log records the real reason for auditors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AccessEvent
from hashes.models import HashList
from partners import services
from partners.models import Partner
from tests.conftest import ADMIN, PartnerClient, partner_client, pdq, problem, store_counts
from tests.factories import HashListFactory, SharingGroupFactory


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # may name {entry}, {submission} and {revocation}
    scope: str | None
    action: str


ENDPOINTS = [
    Endpoint("get", "/api/v1/me", None, "me.read"),
    Endpoint("get", "/api/v1/lists", "read", "lists.read"),
    Endpoint("post", "/api/v1/submissions", "submit", "submission.create"),
    Endpoint("get", "/api/v1/entries/{entry}", "read", "entry.read"),
    Endpoint(
        "get", "/api/v1/submissions/{submission}/envelope", "read", "submission.envelope.read"
    ),
    Endpoint("post", "/api/v1/entries/{entry}/feedback", "read", "feedback.create"),
    Endpoint(
        "post", "/api/v1/entries/{entry}/quarantine/resolution", "submit", "quarantine.resolve"
    ),
    Endpoint("post", "/api/v1/revocations", "submit", "revocation.create"),
    Endpoint(
        "get", "/api/v1/revocations/{revocation}/envelope", "read", "revocation.envelope.read"
    ),
    Endpoint("get", "/api/v1/feed", "read", "feed.read"),
    Endpoint("get", "/api/v1/audit/events", "audit", "audit.read"),
    Endpoint("get", "/api/v1/audit/periods", "audit", "audit.periods.read"),
    Endpoint("get", "/api/v1/audit/periods/1", "audit", "audit.period.read"),
    Endpoint("get", "/api/v1/log/key", None, "log.key.read"),
    Endpoint("get", "/api/v1/log/checkpoint", "read", "log.checkpoint.read"),
    Endpoint("get", "/api/v1/log/entries?start=0&end=1", "read", "log.entries.read"),
    Endpoint("get", "/api/v1/log/proofs/inclusion?index=0&size=1", "read", "log.proof.read"),
    Endpoint("get", "/api/v1/log/proofs/consistency?from=0&to=1", "read", "log.proof.read"),
    Endpoint("post", "/api/v1/log/cosignatures", "read", "log.cosignature.add"),
    Endpoint("get", "/api/v1/log/tile/tile/0/000.p/1", "read", "log.tile.read"),
    Endpoint("get", "/api/v1/log/tile/tile/entries/000.p/1", "read", "log.tile.read"),
    Endpoint("get", "/api/v1/webhooks", "read", "webhooks.list"),
    Endpoint("post", "/api/v1/webhooks", "read", "webhook.create"),
    Endpoint("get", "/api/v1/webhooks/1", "read", "webhook.read"),
    Endpoint("get", "/api/v1/webhooks/1/deliveries", "read", "webhook.deliveries.read"),
    Endpoint("post", "/api/v1/webhooks/1/test", "read", "webhook.test"),
]


@dataclass
class World:
    """alice, with one entry on a list everybody sees, and a request to each endpoint."""

    alice: PartnerClient
    entry: int
    submission: int
    revocation: int

    def call(self, endpoint: Endpoint, key: str, **extra: Any) -> Any:
        path = endpoint.path.format(
            entry=self.entry, submission=self.submission, revocation=self.revocation
        )
        if endpoint.method == "post":
            # Authentication and scopes are checked before the body is read.
            body = (
                self.alice.submission("ncii", [{"algorithm": "pdq", "value": pdq()}])
                if endpoint.action == "submission.create"
                else b"{}"
            )
            return self.alice.http.post(
                path, body, content_type="application/json", **_auth(key), **extra
            )
        return self.alice.http.get(path, **_auth(key), **extra)


def _auth(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}


@pytest.fixture
def world(alice: PartnerClient, shared_list: HashList) -> World:
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])
    assert response.status_code == 201, response.content
    body = json.loads(response.content)
    # A second entry, revoked, so that the revocation's envelope can be read.
    ended = json.loads(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}]).content)
    revoked = alice.revoke([ended["entries"][0]["id"]])
    assert revoked.status_code == 201, revoked.content
    revocation = json.loads(revoked.content)["revocation"]
    return World(alice, body["entries"][0]["id"], body["submission"], revocation)


def _key(partner: Partner, **fields: Any) -> str:
    _, full_key = services.apikey_create(
        partner=partner, scopes=("submit", "read", "match", "audit"), actor=ADMIN, **fields
    )
    return full_key


def _wrong_secret(world: World) -> str:
    mark, prefix, _ = world.alice.api_key.split("_", 2)
    return f"{mark}_{prefix}_{'x' * 43}"


def _unknown_prefix(world: World) -> str:
    return f"csk_{'0' * 12}_{'x' * 43}"


def _garbage(world: World) -> str:
    return "this-is-not-an-api-key"


def _two_words(world: World) -> str:
    return f"{world.alice.api_key} extra"


def _expired(world: World) -> str:
    return _key(world.alice.partner, expires_at=timezone.now() - timedelta(seconds=1))


def _revoked(world: World) -> str:
    key = _key(world.alice.partner)
    api_key = world.alice.partner.api_keys.get(prefix=key.split("_")[1])
    services.apikey_revoke(api_key=api_key, actor=ADMIN)
    return key


def _suspended_partner(world: World) -> str:
    carol = partner_client("carol")
    services.partner_suspend(partner=carol.partner, reason="test", actor=ADMIN)
    return carol.api_key


def _pending_partner(world: World) -> str:
    return partner_client("dave", status=Partner.Status.PENDING).api_key


def _outside_networks(world: World) -> str:
    # The test client calls from 127.0.0.1.
    return _key(world.alice.partner, allowed_networks=["10.0.0.0/8", "2001:db8::/32"])


UNUSABLE_KEYS: dict[str, tuple[Callable[[World], str], str]] = {
    "wrong-secret": (_wrong_secret, "wrong-secret"),
    "unknown-prefix": (_unknown_prefix, "unknown-key"),
    "garbage": (_garbage, "malformed-key"),
    "two words": (_two_words, "malformed-header"),
    "expired": (_expired, "expired"),
    "revoked": (_revoked, "revoked"),
    "suspended-partner": (_suspended_partner, "partner-suspended"),
    "pending-partner": (_pending_partner, "partner-pending"),
    "outside-networks": (_outside_networks, "network-not-allowed"),
}

endpoints = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.path)


def _last_access(action: str) -> AccessEvent:
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert event.action == action
    return event


@endpoints
def test_request_without_key_needs_authentication(world: World, endpoint: Endpoint) -> None:
    response = world.call(endpoint, "")

    assert response.status_code == 401
    assert problem(response) == "authentication-required"
    assert response["WWW-Authenticate"].startswith("Bearer")
    event = _last_access(endpoint.action)
    assert event.status == 401
    assert event.partner is None
    assert event.detail["problem"] == "authentication-required"
    assert "auth_failure" not in event.detail


@endpoints
def test_other_authorization_scheme_needs_authentication(world: World, endpoint: Endpoint) -> None:
    response = world.call(endpoint, "", HTTP_AUTHORIZATION=f"Basic {world.alice.api_key}")

    assert response.status_code == 401
    assert problem(response) == "authentication-required"


@endpoints
@pytest.mark.parametrize("case", UNUSABLE_KEYS, ids=str)
def test_unusable_key_is_refused_and_the_reason_is_audited(
    world: World, endpoint: Endpoint, case: str
) -> None:
    make_key, reason = UNUSABLE_KEYS[case]
    key = make_key(world)

    response = world.call(endpoint, key)

    assert response.status_code == 401, response.content
    assert problem(response) == "invalid-api-key"
    event = _last_access(endpoint.action)
    assert event.status == 401
    assert event.partner is None
    assert event.detail["auth_failure"] == reason
    assert event.detail["problem"] == "invalid-api-key"
    if reason not in ("malformed-key", "malformed-header"):
        assert event.key_prefix == key.split("_")[1]


@endpoints
def test_every_unusable_key_gets_the_same_answer(world: World, endpoint: Endpoint) -> None:
    answers = set()
    for make_key, _ in UNUSABLE_KEYS.values():
        response = world.call(endpoint, make_key(world))
        answers.add((response.status_code, response["WWW-Authenticate"], response.content))

    assert len(answers) == 1


@endpoints
def test_key_without_the_needed_scope_is_forbidden(world: World, endpoint: Endpoint) -> None:
    other_scopes = [s for s in ("submit", "read", "match", "audit") if s != endpoint.scope]
    _, key = services.apikey_create(partner=world.alice.partner, scopes=other_scopes, actor=ADMIN)
    _, narrowest = services.apikey_create(
        partner=world.alice.partner, scopes=["match"], actor=ADMIN
    )

    response = world.call(endpoint, key)
    narrow_response = world.call(endpoint, narrowest)

    if endpoint.scope is None:
        assert response.status_code == 200, response.content
        assert narrow_response.status_code == 200, narrow_response.content
        return
    assert response.status_code == 403, response.content
    assert problem(response) == "insufficient-scope"
    assert problem(narrow_response) == "insufficient-scope"
    event = _last_access(endpoint.action)
    assert event.status == 403
    assert event.partner == world.alice.partner
    assert event.detail["problem"] == "insufficient-scope"
    assert "auth_failure" not in event.detail


@endpoints
def test_key_with_the_needed_scope_only_is_not_refused_for_scope(
    world: World, endpoint: Endpoint
) -> None:
    _, key = services.apikey_create(
        partner=world.alice.partner, scopes=[endpoint.scope or "match"], actor=ADMIN
    )

    response = world.call(endpoint, key)

    # The POST bodies here are not valid operations; only authorization is under test.
    assert response.status_code not in (401, 403), response.content


@endpoints
def test_key_inside_its_allowed_networks_is_accepted(world: World, endpoint: Endpoint) -> None:
    key = _key(world.alice.partner, allowed_networks=["127.0.0.0/8"])

    response = world.call(endpoint, key)

    assert response.status_code not in (401, 403), response.content


def test_forwarded_for_header_is_not_trusted_without_proxies(alice: PartnerClient) -> None:
    key = _key(alice.partner, allowed_networks=["10.0.0.0/8"])

    response = alice.http.get(
        "/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_FORWARDED_FOR="10.1.2.3"
    )

    assert problem(response) == "invalid-api-key"
    assert AccessEvent.objects.order_by("-id").first().client_ip == "127.0.0.1"


def test_forwarded_for_header_names_the_client_behind_a_trusted_proxy(
    alice: PartnerClient, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    key = _key(alice.partner, allowed_networks=["10.0.0.0/8"])

    inside = alice.http.get(
        "/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_FORWARDED_FOR="192.0.2.9, 10.1.2.3"
    )
    outside = alice.http.get(
        "/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_FORWARDED_FOR="10.1.2.3, 192.0.2.9"
    )

    assert inside.status_code == 200, inside.content
    assert problem(outside) == "invalid-api-key"
    assert AccessEvent.objects.order_by("-id").first().client_ip == "192.0.2.9"


def test_revoked_key_fails_at_once(alice: PartnerClient) -> None:
    assert alice.get("/api/v1/me").status_code == 200
    api_key = alice.partner.api_keys.get()

    services.apikey_revoke(api_key=api_key, actor=ADMIN)

    response = alice.get("/api/v1/me")
    assert response.status_code == 401
    assert problem(response) == "invalid-api-key"


def test_reactivated_partner_key_works_again(alice: PartnerClient) -> None:
    services.partner_suspend(partner=alice.partner, reason="review", actor=ADMIN)
    assert problem(alice.get("/api/v1/me")) == "invalid-api-key"

    services.partner_activate(partner=alice.partner, reason="cleared", actor=ADMIN)

    assert alice.get("/api/v1/me").status_code == 200


# Visibility ------------------------------------------------------------------------------


@dataclass
class Hidden:
    """A list `bob` may not see, with one of alice's entries on it."""

    hash_list: HashList
    entry: int
    submission: int
    value: str


def _submit_one(client: PartnerClient, list_name: str) -> tuple[int, int, str]:
    value = pdq()
    response = client.submit(list_name, [{"algorithm": "pdq", "value": value}])
    assert response.status_code == 201, response.content
    body = json.loads(response.content)
    return body["entries"][0]["id"], body["submission"], value


def _owner_only(alice: PartnerClient) -> Hidden:
    hash_list = HashListFactory(
        name="private", owner=alice.partner, visibility=HashList.Visibility.OWNER
    )
    return Hidden(hash_list, *_submit_one(alice, "private"))


def _group_without_bob(alice: PartnerClient) -> Hidden:
    group = SharingGroupFactory(name="hotlines")
    group.members.set([alice.partner])
    hash_list = HashListFactory(
        name="private", owner=alice.partner, visibility=HashList.Visibility.GROUP, group=group
    )
    return Hidden(hash_list, *_submit_one(alice, "private"))


hidden_lists = pytest.mark.parametrize(
    "make_hidden", [_owner_only, _group_without_bob], ids=["owner-only", "group"]
)


def _list_names(client: PartnerClient) -> set[str]:
    response = client.get("/api/v1/lists")
    assert response.status_code == 200, response.content
    return {hash_list["name"] for hash_list in json.loads(response.content)}


def _feed_values(client: PartnerClient) -> set[str]:
    events, _ = client.feed_all()
    return {event.get("value", "") for event in events} - {""}


@hidden_lists
def test_hidden_list_is_not_listed(alice, bob, shared_list, make_hidden) -> None:
    hidden = make_hidden(alice)

    assert _list_names(bob) == {"ncii"}
    assert _list_names(alice) == {"ncii", hidden.hash_list.name}


@hidden_lists
def test_hidden_entry_is_unknown(alice, bob, make_hidden) -> None:
    hidden = make_hidden(alice)

    response = bob.get(f"/api/v1/entries/{hidden.entry}")
    missing = bob.get(f"/api/v1/entries/{hidden.entry + 1000}")

    assert response.status_code == 404
    assert problem(response) == "unknown-entry"
    assert problem(missing) == "unknown-entry"
    assert alice.get(f"/api/v1/entries/{hidden.entry}").status_code == 200


@hidden_lists
def test_hidden_revocation_envelope_is_unknown(alice, bob, make_hidden) -> None:
    hidden = make_hidden(alice)
    revoked = alice.revoke([hidden.entry])
    revocation = json.loads(revoked.content)["revocation"]

    response = bob.get(f"/api/v1/revocations/{revocation}/envelope")
    missing = bob.get(f"/api/v1/revocations/{revocation + 1000}/envelope")

    assert response.status_code == 404
    assert problem(response) == "unknown-revocation"
    assert response.content.replace(str(revocation).encode(), b"N") == missing.content.replace(
        str(revocation + 1000).encode(), b"N"
    )
    assert alice.get(f"/api/v1/revocations/{revocation}/envelope").status_code == 200


@hidden_lists
def test_hidden_submission_envelope_is_unknown(alice, bob, make_hidden) -> None:
    hidden = make_hidden(alice)

    response = bob.get(f"/api/v1/submissions/{hidden.submission}/envelope")

    assert response.status_code == 404
    assert problem(response) == "unknown-submission"
    assert alice.get(f"/api/v1/submissions/{hidden.submission}/envelope").status_code == 200


@hidden_lists
def test_hidden_list_events_are_not_in_the_feed(alice, bob, shared_list, make_hidden) -> None:
    hidden = make_hidden(alice)
    _, _, shared_value = _submit_one(alice, "ncii")
    revoked = alice.revoke([hidden.entry], reason="mistake")
    assert revoked.status_code == 201, revoked.content

    bob_events, _ = bob.feed_all()
    bob_lists = {event["list"] for event in bob_events if "list" in event}

    assert bob_lists == {"ncii"}
    assert hidden.value not in _feed_values(bob)
    assert shared_value in _feed_values(bob)
    assert {hidden.value, shared_value} <= _feed_values(alice)


@hidden_lists
def test_submitting_to_hidden_list_looks_like_a_missing_list(alice, bob, make_hidden) -> None:
    hidden = make_hidden(alice)
    entries = [{"algorithm": "pdq", "value": pdq()}]

    hidden_response = bob.submit(hidden.hash_list.name, entries)
    missing_response = bob.submit("no-such-list", entries)

    assert hidden_response.status_code == 404
    assert problem(hidden_response) == "unknown-list"
    hidden_body = json.loads(hidden_response.content)
    missing_body = json.loads(missing_response.content)
    hidden_body["detail"] = hidden_body["detail"].replace(hidden.hash_list.name, "<list>")
    missing_body["detail"] = missing_body["detail"].replace("no-such-list", "<list>")
    assert hidden_body == missing_body


@hidden_lists
def test_revoking_hidden_entry_is_unknown(alice, bob, make_hidden) -> None:
    hidden = make_hidden(alice)

    response = bob.revoke([hidden.entry])

    assert response.status_code == 404
    assert problem(response) == "unknown-entry"


def test_partner_can_never_revoke_another_partners_entry(alice, bob, shared_list) -> None:
    entry, _, _ = _submit_one(alice, "ncii")

    response = bob.revoke([entry])

    assert response.status_code == 403
    assert problem(response) == "not-entry-submitter"
    assert json.loads(alice.get(f"/api/v1/entries/{entry}").content)["status"] == "active"


def test_revocation_naming_own_and_foreign_entries_revokes_nothing(alice, bob, shared_list) -> None:
    foreign, _, _ = _submit_one(alice, "ncii")
    own, _, _ = _submit_one(bob, "ncii")

    response = bob.revoke([own, foreign])

    assert problem(response) == "not-entry-submitter"
    assert json.loads(bob.get(f"/api/v1/entries/{own}").content)["status"] == "active"


def test_owner_only_contributors_refuse_other_partners(alice, bob) -> None:
    HashListFactory(
        name="curated",
        owner=alice.partner,
        visibility=HashList.Visibility.ALL,
        contributors=HashList.Contributors.OWNER,
    )

    before = store_counts()

    response = bob.submit("curated", [{"algorithm": "pdq", "value": pdq()}])

    assert response.status_code == 403
    assert problem(response) == "list-not-writable"
    assert store_counts() == before
    lists = {item["name"]: item for item in json.loads(bob.get("/api/v1/lists").content)}
    assert lists["curated"]["may_submit"] is False
    assert alice.submit("curated", [{"algorithm": "pdq", "value": pdq()}]).status_code == 201


def test_group_membership_change_takes_effect_at_once(alice, bob) -> None:
    hidden = _group_without_bob(alice)
    group = hidden.hash_list.group
    assert problem(bob.get(f"/api/v1/entries/{hidden.entry}")) == "unknown-entry"

    services.sharing_group_set(name=group.name, members=[alice.partner, bob.partner], actor=ADMIN)

    assert _list_names(bob) == {"private"}
    assert bob.get(f"/api/v1/entries/{hidden.entry}").status_code == 200
    assert bob.get(f"/api/v1/submissions/{hidden.submission}/envelope").status_code == 200
    assert hidden.value in _feed_values(bob)
    assert bob.submit("private", [{"algorithm": "pdq", "value": pdq()}]).status_code == 201

    services.sharing_group_set(name=group.name, members=[alice.partner], actor=ADMIN)

    assert _list_names(bob) == set()
    assert problem(bob.get(f"/api/v1/entries/{hidden.entry}")) == "unknown-entry"
    assert hidden.value not in _feed_values(bob)
    assert problem(bob.submit("private", [{"algorithm": "pdq", "value": pdq()}])) == (
        "unknown-list"
    )


def test_group_member_sees_group_list(alice, bob) -> None:
    group = SharingGroupFactory(name="hotlines")
    group.members.set([alice.partner, bob.partner])
    HashListFactory(
        name="hotline-list",
        owner=alice.partner,
        visibility=HashList.Visibility.GROUP,
        group=group,
    )
    entry, _, value = _submit_one(alice, "hotline-list")

    assert _list_names(bob) == {"hotline-list"}
    assert bob.get(f"/api/v1/entries/{entry}").status_code == 200
    assert value in _feed_values(bob)
