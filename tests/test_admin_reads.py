"""Every admin page that shows shared data is an access event: who, which page or object,
how many rows and which."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model
from django.test import Client

from audit.admin import AdminReadsAudited
from audit.models import AccessEvent, AccessPeriod, LogEvent
from hashes.models import Entry, HashList, Revocation, Submission
from partners.models import ApiKey, Partner, SharingGroup, SigningKey
from tests.conftest import PartnerClient, pdq, staff_login
from tests.factories import SharingGroupFactory

SHARED_APPS = {"partners", "hashes", "audit", "staff"}


@pytest.fixture
def admin_client(db: None, client: Client) -> Client:
    staff_login(client, User.objects.create_superuser("admin", "admin@example.org", None))
    return client


@pytest.fixture
def shared_data(alice: PartnerClient, bob: PartnerClient, shared_list: HashList) -> None:
    """At least one row of every model the admin shows."""
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()} for _ in range(3)])
    assert response.status_code == 201, response.content
    first = json.loads(response.content)["entries"][0]["id"]
    assert alice.revoke([first]).status_code == 201
    SharingGroupFactory(name="hotlines")
    AccessPeriod.objects.create(
        number=1,
        after_id=0,
        last_id=1,
        count=1,
        root="00" * 32,
        log_index=10**9,
        sealed_at=datetime.now(UTC),
    )


def _reads(since: int) -> list[AccessEvent]:
    return list(
        AccessEvent.objects.filter(id__gt=since, action__startswith="admin.").order_by("id")
    )


def _last_id() -> int:
    return AccessEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


MODELS: list[type[Model]] = [
    Partner,
    ApiKey,
    SigningKey,
    SharingGroup,
    HashList,
    Entry,
    Submission,
    Revocation,
    LogEvent,
    AccessEvent,
    AccessPeriod,
]


def test_every_admin_page_of_shared_data_is_audited() -> None:
    """A model admin added later cannot forget: each one of these apps must audit reads."""
    registered = {
        model: model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in SHARED_APPS
    }
    assert set(MODELS) <= set(registered)
    for model, model_admin in registered.items():
        assert isinstance(model_admin, AdminReadsAudited), model


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.model_name)
def test_list_page_is_an_access_event_with_its_rows(admin_client, shared_data, model) -> None:
    path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    since = _last_id()
    shown = sorted(model._default_manager.values_list("pk", flat=True))
    assert shown, "the fixture made no row to show"

    response = admin_client.get(path)

    assert response.status_code == 200
    (event,) = _reads(since)
    assert event.action == f"admin.{model._meta.model_name}.list"
    assert (event.actor, event.user.username, event.status) == ("admin:admin", "admin", 200)
    assert event.target == model._meta.label_lower
    assert event.records == len(shown)
    assert sorted(event.detail["ids"]) == shown
    assert event.detail["page"] == path


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.model_name)
def test_object_page_is_an_access_event(admin_client, shared_data, model) -> None:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None
    path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/{obj.pk}/change/"
    since = _last_id()

    response = admin_client.get(path)

    assert response.status_code == 200
    (event,) = _reads(since)
    assert event.action == f"admin.{model._meta.model_name}.view"
    assert event.actor == "admin:admin"
    assert event.target == f"{model._meta.label_lower}:{obj.pk}"
    assert (event.records, event.detail["ids"], event.detail["page"]) == (1, [obj.pk], path)


def test_history_page_is_an_access_event(admin_client, shared_data) -> None:
    partner = Partner.objects.get(name="alice")
    since = _last_id()

    response = admin_client.get(f"/admin/partners/partner/{partner.pk}/history/")

    assert response.status_code == 200
    (event,) = _reads(since)
    assert (event.action, event.target) == (
        "admin.partner.history",
        f"partners.partner:{partner.pk}",
    )


def test_filtered_list_records_the_filter_and_only_the_rows_shown(
    admin_client, shared_data
) -> None:
    revoked = list(Entry.objects.filter(status=Entry.Status.REVOKED).values_list("pk", flat=True))
    since = _last_id()

    response = admin_client.get("/admin/hashes/entry/", {"status__exact": "revoked"})

    assert response.status_code == 200
    (event,) = _reads(since)
    assert (event.records, event.detail["ids"]) == (len(revoked), revoked)
    assert event.detail["page"] == "/admin/hashes/entry/?status__exact=revoked"


def test_a_long_list_records_the_page_not_the_table(
    admin_client, alice, shared_list, settings
) -> None:
    values = [{"algorithm": "pdq", "value": pdq()} for _ in range(105)]
    assert alice.submit("ncii", values).status_code == 201
    since = _last_id()

    response = admin_client.get("/admin/hashes/entry/", {"p": "2"})

    assert response.status_code == 200
    (event,) = _reads(since)
    # 100 rows a page: the second page shows the last 5.
    assert event.records == 5
    assert len(event.detail["ids"]) == 5


def test_an_action_confirmation_page_is_an_access_event(admin_client, shared_data) -> None:
    ids = list(Entry.objects.filter(status=Entry.Status.ACTIVE).values_list("pk", flat=True))
    since = _last_id()

    response = admin_client.post(
        "/admin/hashes/entry/",
        {"action": "revoke", "_selected_action": [str(pk) for pk in ids], "index": "0"},
    )

    assert response.status_code == 200
    assert b"Revoke entries" in response.content
    (event,) = _reads(since)
    assert (event.action, event.records) == ("admin.entry.confirm", len(ids))
    assert sorted(event.detail["ids"]) == sorted(ids)
    assert Entry.objects.filter(pk__in=ids, status=Entry.Status.ACTIVE).count() == len(ids)


@pytest.mark.parametrize("who", ["anonymous", "password-only"])
def test_a_refused_visitor_reads_nothing_and_leaves_no_read_event(db, shared_data, who) -> None:
    client = Client()
    if who == "password-only":
        client.force_login(User.objects.create_superuser("eve", "eve@example.org", None))
    since = _last_id()

    response = client.get("/admin/hashes/entry/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert _reads(since) == []


def test_the_admin_index_shows_no_rows_and_is_not_a_read(admin_client: Any) -> None:
    since = _last_id()

    assert admin_client.get("/admin/").status_code == 200

    assert _reads(since) == []
