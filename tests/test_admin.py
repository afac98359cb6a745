"""The Django admin, as a consortium administrator uses it: every change goes through the
services or is audited, and leaves an access event naming the administrator."""

from __future__ import annotations

import html
import json
import re
import secrets
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client

from audit.models import AccessEvent, LogEvent
from consortium_client.keys import key_generate, public_key_pem
from hashes.models import Entry, EntryVariant, HashList, Revocation
from hashes.services import entry_erase
from partners import services
from partners.apikeys import apikey_digest
from partners.models import ApiKey, Partner, SigningKey
from tests.conftest import ADMIN, PartnerClient, pdq, problem, staff_login
from tests.factories import SharingGroupFactory

ACTOR = "admin:admin"


@pytest.fixture
def admin_user(db: None) -> User:
    """A superuser without a password: staff_login needs none, and hashing one is slow."""
    return User.objects.create_superuser("admin", "admin@example.org", None)


@pytest.fixture
def admin(client: Client, admin_user: User) -> Client:
    staff_login(client, admin_user)
    return client


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _access_events_since(last_id: int) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(id__gt=last_id).order_by("id"))


def _last_access_id() -> int:
    return AccessEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _action(admin: Client, path: str, action: str, ids: list[int], **extra: Any) -> Any:
    data = {"action": action, "_selected_action": [str(pk) for pk in ids], "index": "0"}
    data.update(extra)
    return admin.post(path, data, follow=True)


def _entry_ids(client: PartnerClient, count: int = 1) -> list[int]:
    response = client.submit("ncii", [{"algorithm": "pdq", "value": pdq()} for _ in range(count)])
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


# API keys ----------------------------------------------------------------------------------


def test_api_key_added_in_admin_is_shown_once_and_stored_as_digest(admin, alice) -> None:
    since = _last_access_id()

    response = admin.post(
        "/admin/partners/apikey/add/",
        {
            "partner": alice.partner.pk,
            "name": "from admin",
            "scopes": ["read", "submit"],
            "expires_at_0": "",
            "expires_at_1": "",
            "allowed_networks": "127.0.0.0/8, 10.0.0.0/8",
        },
        follow=True,
    )

    assert response.status_code == 200
    shown = [re.search(r"csk_[0-9a-f]{12}_[\w-]+", m) for m in _messages(response)]
    (full_key,) = [match.group(0) for match in shown if match]
    api_key = ApiKey.objects.get(name="from admin")
    assert api_key.digest == apikey_digest(full_key)
    assert full_key not in api_key.digest
    assert api_key.prefix == full_key.split("_")[1]
    assert api_key.scopes == ["read", "submit"]
    assert api_key.allowed_networks == ["127.0.0.0/8", "10.0.0.0/8"]
    me = alice.get("/api/v1/me", key=full_key)
    assert me.status_code == 200, me.content
    assert json.loads(me.content)["api_key"]["scopes"] == ["read", "submit"]
    # Shown once: neither the change page nor the audit trail repeats it.
    page = admin.get(f"/admin/partners/apikey/{api_key.pk}/change/")
    assert full_key.encode() not in page.content
    events = _access_events_since(since)
    assert [(e.actor, e.action) for e in events][:1] == [(ACTOR, "admin.apikey.add")]
    assert all(full_key not in json.dumps(e.detail) for e in AccessEvent.objects.all())


@pytest.mark.parametrize("networks", [["10.0.0.0/8"], []], ids=["with-networks", "any"])
def test_api_key_change_form_round_trips_its_networks(admin, alice, networks) -> None:
    api_key, full_key = services.apikey_create(
        partner=alice.partner, scopes=["read"], allowed_networks=networks, actor=ADMIN
    )
    page = admin.get(f"/admin/partners/apikey/{api_key.pk}/change/").content.decode()
    shown = re.search(r'name="allowed_networks"[^>]*value="([^"]*)"', page)
    shown_networks = html.unescape(shown.group(1)) if shown else ""

    response = admin.post(
        f"/admin/partners/apikey/{api_key.pk}/change/",
        {
            "name": "renamed",
            "expires_at_0": "",
            "expires_at_1": "",
            "allowed_networks": shown_networks,
        },
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    api_key.refresh_from_db()
    assert api_key.name == "renamed"
    assert api_key.allowed_networks == networks
    reachable = 200 if not networks else 401  # the test client calls from 127.0.0.1
    assert alice.get("/api/v1/me", key=full_key).status_code == reachable


def test_api_key_add_form_refuses_a_bad_network(admin, alice) -> None:
    before = ApiKey.objects.count()

    response = admin.post(
        "/admin/partners/apikey/add/",
        {"partner": alice.partner.pk, "scopes": ["read"], "allowed_networks": "not-a-network"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_networks"]
    assert ApiKey.objects.count() == before


def test_api_keys_revoked_by_admin_action_fail_at_once(admin, alice, bob) -> None:
    keys = [alice.partner.api_keys.get(), bob.partner.api_keys.get()]
    since = _last_access_id()

    response = _action(admin, "/admin/partners/apikey/", "revoke", [k.pk for k in keys])

    assert response.status_code == 200
    assert "Revoked 2 key(s)." in _messages(response)
    assert all(ApiKey.objects.get(pk=k.pk).revoked_at is not None for k in keys)
    for client in (alice, bob):
        refused = client.get("/api/v1/me")
        assert problem(refused) == "invalid-api-key"
        assert AccessEvent.objects.order_by("-id").first().detail["auth_failure"] == "revoked"
    revocations = [e for e in _access_events_since(since) if e.action == "apikey.revoke"]
    assert {(e.actor, e.target) for e in revocations} == {
        (ACTOR, f"alice:{keys[0].prefix}"),
        (ACTOR, f"bob:{keys[1].prefix}"),
    }


# Partners ----------------------------------------------------------------------------------


def test_partner_suspended_by_admin_action_is_locked_out_at_once(admin, alice, bob) -> None:
    assert alice.get("/api/v1/me").status_code == 200
    since = _last_access_id()

    response = _action(admin, "/admin/partners/partner/", "suspend", [alice.partner.pk])

    assert response.status_code == 200
    refused = alice.get("/api/v1/me")
    assert refused.status_code == 401
    assert problem(refused) == "invalid-api-key"
    audit = AccessEvent.objects.order_by("-id").first()
    assert audit.detail["auth_failure"] == "partner-suspended"
    event = LogEvent.objects.order_by("-index").filter(event_type="partner_suspended").get()
    leaf = json.loads(bytes(event.leaf))
    assert (leaf["partner"], leaf["by"]) == ("alice", ACTOR)
    assert event.partner_id == alice.partner.pk
    # Other partners learn of it from the feed.
    assert "partner_suspended" in {e["type"] for e in bob.feed_all()[0]}
    assert (ACTOR, "partner.suspended") in {
        (e.actor, e.action) for e in _access_events_since(since)
    }


def test_partner_activated_by_admin_action_works_again(admin, alice) -> None:
    services.partner_suspend(partner=alice.partner, reason="review", actor=ADMIN)

    _action(admin, "/admin/partners/partner/", "activate", [alice.partner.pk])

    assert Partner.objects.get(pk=alice.partner.pk).status == Partner.Status.ACTIVE
    assert alice.get("/api/v1/me").status_code == 200
    assert LogEvent.objects.filter(event_type="partner_reactivated").count() == 1


def test_partner_and_list_names_cannot_be_changed_in_admin(admin, alice, shared_list) -> None:
    partner = alice.partner
    admin.post(
        f"/admin/partners/partner/{partner.pk}/change/",
        {"name": "eve", "display_name": "Alice", "kind": partner.kind},
    )
    admin.post(
        f"/admin/hashes/hashlist/{shared_list.pk}/change/",
        {
            "name": "renamed",
            "owner": partner.pk,
            "visibility": "all",
            "contributors": "members",
            **VIDEO_RULE_FIELDS,
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        },
    )

    assert Partner.objects.get(pk=partner.pk).name == "alice"
    assert HashList.objects.get(pk=shared_list.pk).name == "ncii"
    assert alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}]).status_code == 201


# Entries -----------------------------------------------------------------------------------


def test_entry_revoke_action_asks_for_a_reason_then_revokes(
    admin, admin_user, alice, bob, shared_list
) -> None:
    ids = _entry_ids(alice, 2)
    _, cursor = bob.feed_all()

    asked = _action(admin, "/admin/hashes/entry/", "revoke", ids)

    assert asked.status_code == 200
    assert b"Revoke entries" in asked.content
    assert not Revocation.objects.exists()

    data = {"action": "revoke", "_selected_action": [str(pk) for pk in ids]}
    response = admin.post("/admin/hashes/entry/", {**data, "reason": "court order"}, follow=True)

    assert response.status_code == 200
    assert "Revoked 2 entries." in _messages(response)
    revocation = Revocation.objects.get()
    assert revocation.administrator == admin_user
    assert revocation.partner is None
    assert revocation.reason == "court order"
    assert set(Entry.objects.filter(status="revoked").values_list("pk", flat=True)) == set(ids)
    tombstones, _ = bob.feed_all(after=cursor)
    assert {(t["entry"], t["revoked_by"], t["reason"]) for t in tombstones} == {
        (ids[0], ACTOR, "court order"),
        (ids[1], ACTOR, "court order"),
    }
    audit = AccessEvent.objects.filter(action="entry.revoke").get()
    assert (audit.actor, audit.user, audit.records) == (ACTOR, admin_user, 2)


def test_entry_revoke_action_without_reason_revokes_nothing(admin, alice, shared_list) -> None:
    ids = _entry_ids(alice)
    data = {"action": "revoke", "_selected_action": [str(pk) for pk in ids], "reason": ""}

    response = admin.post("/admin/hashes/entry/", data)

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert not Revocation.objects.exists()
    assert Entry.objects.get().status == "active"


def test_entry_revoke_action_on_a_revoked_entry_reports_it(admin, alice, shared_list) -> None:
    ids = _entry_ids(alice)
    assert alice.revoke(ids).status_code == 201
    data = {"action": "revoke", "_selected_action": [str(pk) for pk in ids], "reason": "again"}

    response = admin.post("/admin/hashes/entry/", data, follow=True)

    assert response.status_code == 200
    assert any("already revoked" in message for message in _messages(response))
    assert Revocation.objects.count() == 1


def test_entries_cannot_be_edited_or_deleted_in_admin(admin, alice, shared_list) -> None:
    (entry_id,) = _entry_ids(alice)

    change = admin.post(f"/admin/hashes/entry/{entry_id}/change/", {"value": "0" * 64})
    delete = admin.post(f"/admin/hashes/entry/{entry_id}/delete/", {"post": "yes"})

    assert change.status_code == 403
    assert delete.status_code == 403
    assert Entry.objects.get().value != "0" * 64


@pytest.fixture
def staff(client: Client, db: None) -> Client:
    """A staff user who may view entries and their variants, and nothing more."""
    user = User.objects.create_user("staff", "staff@example.org", None, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="hashes", codename__in=["view_entry", "view_entryvariant"]
        )
    )
    staff_login(client, user)
    return client


def test_entry_admin_shows_its_variants_read_only(staff, alice, shared_list) -> None:
    variants = {"canonical": secrets.token_hex(32), "rotate-3": secrets.token_hex(32)}
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(), "variants": variants}])
    assert response.status_code == 201, response.content
    entry_id = response.json()["entries"][0]["id"]
    rows = list(EntryVariant.objects.filter(entry_id=entry_id).order_by("position"))

    page = staff.get(f"/admin/hashes/entry/{entry_id}/change/")

    assert page.status_code == 200
    content = page.content.decode()
    shown = [(row.name, row.commitment, row.value) for row in rows]
    assert [name for name, _, _ in shown] == ["canonical", "rotate-3"]
    for name, commitment, value in shown:
        assert name in content
        assert commitment in content
        assert value in content
    # Shown, never offered for editing: no form field for a variant, and a post is refused.
    # (Django renders a view-only inline with its formset's hidden keys, but no field.)
    fields = set(re.findall(r'name="variants-\d+-([^"]*)"', content))
    assert fields <= {"id", "entry"}
    before = [(row.name, row.value, row.salt, row.commitment) for row in rows]
    posted = staff.post(
        f"/admin/hashes/entry/{entry_id}/change/",
        {
            "variants-TOTAL_FORMS": "1",
            "variants-INITIAL_FORMS": "1",
            "variants-0-id": str(rows[0].pk),
            "variants-0-entry": str(entry_id),
            "variants-0-value": "0" * 64,
            "variants-0-DELETE": "on",
        },
    )
    assert posted.status_code == 403
    after = EntryVariant.objects.filter(entry_id=entry_id).order_by("position")
    assert [(row.name, row.value, row.salt, row.commitment) for row in after] == before


def test_entry_admin_shows_no_variant_value_once_erased(staff, alice, shared_list) -> None:
    variants = {"canonical": secrets.token_hex(32), "rotate-3": secrets.token_hex(32)}
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(), "variants": variants}])
    assert response.status_code == 201, response.content
    entry_id = response.json()["entries"][0]["id"]
    page = staff.get(f"/admin/hashes/entry/{entry_id}/change/").content.decode()
    assert all(value in page for value in variants.values())  # shown until the erasure

    entry_erase(actor=ADMIN, entry_id=entry_id, reason="the person's request")
    page = staff.get(f"/admin/hashes/entry/{entry_id}/change/").content.decode()

    for value in variants.values():
        assert value not in page
        assert value.upper() not in page
    assert page.count("(erased)") == len(variants)
    # The names and commitments stay: the leaf commits to them, the values are gone.
    for row in EntryVariant.objects.filter(entry_id=entry_id):
        assert row.name in page
        assert row.commitment in page


# Every change is audited -------------------------------------------------------------------


def _add_partner(admin: Client, alice: PartnerClient) -> Any:
    return admin.post(
        "/admin/partners/partner/add/",
        {
            "name": "carol",
            "display_name": "Carol",
            "kind": "ngo",
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        },
    )


def _change_partner(admin: Client, alice: PartnerClient) -> Any:
    partner = alice.partner
    return admin.post(
        f"/admin/partners/partner/{partner.pk}/change/",
        {"name": partner.name, "display_name": "Alice Renamed", "kind": partner.kind},
    )


def _add_group(admin: Client, alice: PartnerClient) -> Any:
    return admin.post(
        "/admin/partners/sharinggroup/add/", {"name": "hotlines", "members": [alice.partner.pk]}
    )


def _change_group(admin: Client, alice: PartnerClient) -> Any:
    group = SharingGroupFactory(name="hotlines")
    return admin.post(
        f"/admin/partners/sharinggroup/{group.pk}/change/",
        {"name": "hotlines", "members": [alice.partner.pk]},
    )


# The list form's video settings, as the admin page fills them in (their defaults).
VIDEO_RULE_FIELDS = {"video_query_share": 80, "video_stored_share": 80, "video_quality_floor": 50}


def _add_list(admin: Client, alice: PartnerClient) -> Any:
    return admin.post(
        "/admin/hashes/hashlist/add/",
        {
            "name": "terror",
            "purpose": "terrorism",
            "owner": alice.partner.pk,
            "visibility": "all",
            "contributors": "members",
            **VIDEO_RULE_FIELDS,
            "reviews_needed": 1,
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        },
    )


def _change_list(admin: Client, alice: PartnerClient) -> Any:
    hash_list = HashList.objects.get(name="ncii")
    return admin.post(
        f"/admin/hashes/hashlist/{hash_list.pk}/change/",
        {
            "name": "ncii",
            "purpose": "ncii",
            "description": "changed",
            "owner": alice.partner.pk,
            "visibility": "all",
            "contributors": "owner",
            **VIDEO_RULE_FIELDS,
            "reviews_needed": 1,
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
        },
    )


def _add_api_key(admin: Client, alice: PartnerClient) -> Any:
    return admin.post(
        "/admin/partners/apikey/add/",
        {"partner": alice.partner.pk, "scopes": ["read"], "allowed_networks": ""},
    )


def _change_api_key(admin: Client, alice: PartnerClient) -> Any:
    api_key = alice.partner.api_keys.get()
    return admin.post(
        f"/admin/partners/apikey/{api_key.pk}/change/",
        {"name": "renamed", "allowed_networks": ""},
    )


def _revoke_api_key(admin: Client, alice: PartnerClient) -> Any:
    return _action(admin, "/admin/partners/apikey/", "revoke", [alice.partner.api_keys.get().pk])


def _add_signing_key(admin: Client, alice: PartnerClient) -> Any:
    public = public_key_pem(key_generate().public_key()).decode()
    return admin.post(
        "/admin/partners/signingkey/add/",
        {"partner": alice.partner.pk, "name": "second", "public_key_text": public},
    )


def _change_signing_key(admin: Client, alice: PartnerClient) -> Any:
    return admin.post(
        f"/admin/partners/signingkey/{alice.signing_key.pk}/change/", {"name": "renamed"}
    )


def _revoke_signing_key(admin: Client, alice: PartnerClient) -> Any:
    return _action(admin, "/admin/partners/signingkey/", "revoke", [alice.signing_key.pk])


def _suspend_partner(admin: Client, alice: PartnerClient) -> Any:
    return _action(admin, "/admin/partners/partner/", "suspend", [alice.partner.pk])


def _revoke_entry(admin: Client, alice: PartnerClient) -> Any:
    ids = list(Entry.objects.values_list("pk", flat=True))
    return _action(admin, "/admin/hashes/entry/", "revoke", ids, reason="court order")


ADMIN_CHANGES = {
    "add partner": (_add_partner, "admin.partner.add"),
    "change partner": (_change_partner, "admin.partner.change"),
    "suspend partner": (_suspend_partner, "partner.suspended"),
    "add sharing group": (_add_group, "admin.sharinggroup.add"),
    "change sharing group": (_change_group, "admin.sharinggroup.change"),
    "add list": (_add_list, "admin.hashlist.add"),
    "change list": (_change_list, "admin.hashlist.change"),
    "add API key": (_add_api_key, "admin.apikey.add"),
    "change API key": (_change_api_key, "admin.apikey.change"),
    "revoke API key": (_revoke_api_key, "apikey.revoke"),
    "add signing key": (_add_signing_key, "signing_key.register"),
    "change signing key": (_change_signing_key, "admin.signingkey.change"),
    "revoke signing key": (_revoke_signing_key, "signing_key.revoke"),
    "revoke entry": (_revoke_entry, "entry.revoke"),
}


@pytest.mark.parametrize("change", ADMIN_CHANGES, ids=str)
def test_every_admin_change_leaves_an_access_event(
    admin, admin_user, alice, shared_list, change: str
) -> None:
    make_change, action = ADMIN_CHANGES[change]
    _entry_ids(alice)
    since = _last_access_id()

    response = make_change(admin, alice)

    assert response.status_code in (200, 302), response.content.decode()[-2000:]
    if response.status_code == 200 and response.context and "adminform" in response.context:
        pytest.fail(f"form refused: {response.context['adminform'].form.errors}")
    events = _access_events_since(since)
    assert action in [e.action for e in events], [e.action for e in events]
    for event in events:
        assert (event.actor, event.user, event.partner) == (ACTOR, admin_user, None)
        assert event.client_ip == "127.0.0.1"


def test_signing_key_added_in_admin_is_registered_and_logged(admin, alice) -> None:
    private_key = key_generate()
    public = public_key_pem(private_key.public_key()).decode()

    response = admin.post(
        "/admin/partners/signingkey/add/",
        {"partner": alice.partner.pk, "name": "second", "public_key_text": public},
    )

    assert response.status_code == 302
    signing_key = SigningKey.objects.get(name="second")
    assert signing_key.partner == alice.partner
    registered = LogEvent.objects.filter(event_type="signing_key_registered").order_by("-index")
    leaf = json.loads(bytes(registered.first().leaf))
    assert (leaf["key"], leaf["by"]) == (signing_key.key_id, ACTOR)
    assert not AccessEvent.objects.filter(action="admin.signingkey.add").exists()


def test_admin_needs_a_staff_login(client: Client, alice) -> None:
    response = client.post(
        "/admin/partners/partner/", {"action": "suspend", "_selected_action": [alice.partner.pk]}
    )

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert Partner.objects.get(pk=alice.partner.pk).status == Partner.Status.ACTIVE
