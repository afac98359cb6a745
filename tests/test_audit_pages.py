"""The auditors' pages (issue 11): who may see what, the overview's numbers against a
direct count, the access-event browser's filters and pages, exports, log health.

Every page is asked through the Django test client, for every role and refusal: a staff
user with and without the permission, a partner's auditor signed in with an audit key
(own partner and another's), anonymous, and a key revoked, expired or suspended meanwhile.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit.actors import Actor
from audit.models import AccessDaily, AccessEvent, AccessHour, AccessRollup
from audit.selectors import (
    AccessEventBrowseFilter,
    access_daily_counts,
    access_events_browse,
    access_events_slices,
)
from audit.services import access_event_record, access_period_seal, access_rollup
from partners import services
from partners.models import ApiKey
from tests.conftest import ADMIN, PartnerClient, partner_client, staff_login

WRITER = Actor.command("tests")
PAGES = ["/audit/", "/audit/events", "/audit/partners", "/audit/log", "/audit/events/export.csv"]


# Who is looking


def _staff(username: str, *, permitted: bool) -> Client:
    user = User.objects.create_user(username, password="a long enough password 1", is_staff=True)
    if permitted:
        user.user_permissions.add(Permission.objects.get(codename="view_audit_pages"))
    client = Client()
    staff_login(client, user)
    return client


def _auditor_key(partner: PartnerClient, scopes: tuple[str, ...] = ("audit",)) -> str:
    _, key = services.apikey_create(partner=partner.partner, scopes=scopes, actor=ADMIN)
    return key


def _signed_in(key: str) -> Client:
    client = Client()
    response = client.post("/audit/sign-in?next=/audit/events", {"api_key": key})
    assert response.status_code == 302, response.content
    assert response["Location"] == "/audit/events"
    return client


def _unmasked(page: bytes) -> bytes:
    """The page without its CSRF token, which Django masks anew on every response."""
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", page)


def _latest_event() -> AccessEvent:
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    return event


def _events(partner: PartnerClient | None, n: int, **fields: Any) -> list[AccessEvent]:
    actor = (
        Actor.command("tests")
        if partner is None
        else Actor(f"partner:{partner.partner.name}", partner.partner, key_prefix="abcdefabcdef")
    )
    return [
        access_event_record(
            actor=actor,
            action=fields.get("action", "feed.read"),
            status=fields.get("status", 200),
            target=fields.get("target", ""),
            records=fields.get("records", 1),
        )
        for _ in range(n)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_sign_in_and_audited(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/audit/sign-in?next=")
    event = _latest_event()
    assert (event.actor, event.status, event.partner) == ("anonymous", 302, None)


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*PAGES, "/audit/partners/alice", "/audit/events/1"])
def test_staff_without_the_permission_is_refused(path: str, alice: PartnerClient) -> None:
    client = _staff("clerk", permitted=False)
    response = client.get(path)
    assert response.status_code == 403
    assert b"audit.view_audit_pages" in response.content
    assert b"alice" not in response.content
    event = _latest_event()
    assert (event.actor, event.status) == ("admin:clerk", 403)


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_staff_without_a_second_factor_are_sent_to_the_admin_login(path: str) -> None:
    user = User.objects.create_user("auditor", password="a long enough password 1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_audit_pages"))
    client = Client()
    client.force_login(user)  # a password, no TOTP code
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert _latest_event().detail["signed_out"] == "second-factor-required"


@pytest.mark.django_db
def test_a_user_who_is_not_staff_is_refused_even_with_the_permission() -> None:
    user = User.objects.create_user("outsider", password="a long enough password 1")
    user.user_permissions.add(Permission.objects.get(codename="view_audit_pages"))
    client = Client()
    client.force_login(user)
    assert client.get("/audit/").status_code == 403


@pytest.mark.django_db
def test_staff_with_the_permission_sees_every_partner(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    _events(alice, 2)
    _events(bob, 3)
    client = _staff("auditor", permitted=True)
    for path in ["/audit/", "/audit/events", "/audit/partners", "/audit/log"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["Cache-Control"] == "private, no-store"
    for name in ("alice", "bob"):
        page = client.get(f"/audit/partners/{name}")
        assert page.status_code == 200
        assert name.encode() in page.content
        assert (
            alice.partner.api_keys.first().prefix.encode()
            in client.get("/audit/partners/alice").content
        )
    listing = client.get("/audit/events", {"partner": "bob"})
    assert listing.context["events"]
    assert {e.partner for e in listing.context["events"]} == {bob.partner}
    assert client.get("/audit/partners/nobody").status_code == 404


@pytest.mark.django_db
def test_a_partner_auditor_sees_its_own_partner_only(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    bob_events = _events(bob, 3)
    own = _events(alice, 2)
    client = _signed_in(_auditor_key(alice))
    assert client.get("/audit/partners/alice").status_code == 200
    # Another partner's pages are missing, exactly like a partner that does not exist.
    for path in [
        "/audit/partners/bob",
        f"/audit/events/{bob_events[0].pk}",
        "/audit/events?partner=bob",
        "/audit/events/export.csv?partner=bob",
    ]:
        refused = client.get(path)
        missing = client.get(path.replace("bob", "nobody").replace(str(bob_events[0].pk), "0"))
        assert refused.status_code == missing.status_code == 404, path
        assert _unmasked(refused.content) == _unmasked(missing.content)
        assert b"bob" not in refused.content
        event = _latest_event()
        assert (event.partner, event.status) == (alice.partner, 404)
    assert client.get("/audit/partners").url == "/audit/partners/alice"
    listing = client.get("/audit/events", {"limit": 500})
    partners = {event.partner for event in listing.context["events"]}
    assert partners == {alice.partner}
    assert {e.pk for e in own} <= {e.pk for e in listing.context["events"]}
    assert client.get(f"/audit/events/{own[0].pk}").status_code == 200
    exported = _csv(client.get("/audit/events/export.csv"))
    assert exported
    assert {row["partner"] for row in exported} == {"alice"}
    overview = client.get("/audit/")
    assert {series["partner"] for series in _chart(overview)["series"]} == {"alice"}
    assert b"bob" not in overview.content


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [("read",), ("submit", "match")])
def test_a_key_without_the_audit_scope_cannot_sign_in(
    alice: PartnerClient, scopes: tuple[str, ...]
) -> None:
    key = _auditor_key(alice, scopes)
    client = Client()
    response = client.post("/audit/sign-in", {"api_key": key})
    assert response.status_code == 401
    assert client.get("/audit/").status_code == 302
    event = AccessEvent.objects.filter(action="audit.web.sign_in").latest("id")
    assert (event.status, event.detail["auth_failure"]) == (401, "missing-audit-scope")
    assert event.key_prefix == key.split("_")[1]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "csk_nothex______x", "csk_0123456789ab_wrong", "x" * 300])
def test_a_bad_key_cannot_sign_in(key: str, alice: PartnerClient) -> None:
    response = Client().post("/audit/sign-in", {"api_key": key})
    assert response.status_code in (400, 401)
    assert "auditor_api_key_id" not in Client().session


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["revoke", "expire", "suspend"])
def test_a_key_that_stops_working_signs_its_auditor_out(alice: PartnerClient, change: str) -> None:
    key = _auditor_key(alice)
    client = _signed_in(key)
    assert client.get("/audit/").status_code == 200
    api_key = ApiKey.objects.get(prefix=key.split("_")[1])
    if change == "revoke":
        services.apikey_revoke(api_key=api_key, actor=ADMIN)
    elif change == "expire":
        ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now())
    else:
        services.partner_suspend(partner=alice.partner, reason="tests", actor=ADMIN)
    response = client.get("/audit/partners/alice")
    assert response.status_code == 302
    assert response["Location"].startswith("/audit/sign-in")
    assert "auditor_api_key_id" not in client.session
    assert _latest_event().detail["signed_out"] in {"revoked", "expired", "partner-suspended"}
    # Signed out for good: setting the key right again needs a new sign-in.
    assert client.get("/audit/").status_code == 302


@pytest.mark.django_db
def test_sign_in_refuses_to_redirect_elsewhere(alice: PartnerClient) -> None:
    key = _auditor_key(alice)
    response = Client().post("/audit/sign-in?next=https://evil.example/", {"api_key": key})
    assert response["Location"] == "/audit/"


@pytest.mark.django_db
def test_sign_in_issues_a_new_session_and_sign_out_ends_it(alice: PartnerClient) -> None:
    client = Client()
    client.get("/audit/sign-in")
    client.session.save()
    planted = client.cookies.get("sessionid")
    key = _auditor_key(alice)
    client.post("/audit/sign-in", {"api_key": key})
    assert planted is None or client.cookies["sessionid"].value != planted.value
    assert client.post("/audit/sign-out").status_code == 302
    assert client.get("/audit/").status_code == 302
    assert AccessEvent.objects.filter(action="audit.web.sign_out", partner=alice.partner).exists()


@pytest.mark.django_db
def test_each_page_view_is_an_access_event(alice: PartnerClient) -> None:
    client = _staff("auditor", permitted=True)
    event = _events(alice, 1)[0]
    expected = {
        "/audit/?start=2026-01-01&end=2026-01-31": ("audit.web.overview", "2026-01-01..2026-01-31"),
        "/audit/events?action=feed.read": ("audit.web.events", "action=feed.read"),
        f"/audit/events/{event.pk}": ("audit.web.event", f"access_event:{event.pk}"),
        "/audit/partners": ("audit.web.partners", ""),
        "/audit/partners/alice": ("audit.web.partner", "partner:alice"),
        "/audit/log": ("audit.web.log", ""),
    }
    for path, (action, target) in expected.items():
        assert client.get(path).status_code == 200, path
        recorded = _latest_event()
        assert (recorded.action, recorded.target, recorded.actor) == (
            action,
            target,
            "admin:auditor",
        )
        assert recorded.user is not None
        assert recorded.detail["method"] == "GET"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        {"status": "abc"},
        {"status": "99"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00+17:00"},
        {"before": "1e3"},
        {"limit": "0"},
        {"limit": "501"},
        {"key": "k" * 17},
        {"target": "\x00"},
    ],
)
def test_bad_filters_get_a_400_page_naming_them(query: dict[str, str]) -> None:
    client = _staff("auditor", permitted=True)
    response = client.get("/audit/events", query)
    assert response.status_code == 400
    assert next(iter(query)).encode() in response.content
    assert _latest_event().status == 400
    assert client.get("/audit/events/export.csv", query).status_code in (400, 200)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", [{"start": "2026-02-01", "end": "2026-01-01"}, {"start": "2020-01-01"}, {"end": "x"}]
)
def test_a_bad_overview_range_gets_a_400_page(query: dict[str, str]) -> None:
    response = _staff("auditor", permitted=True).get("/audit/", query)
    assert response.status_code == 400


# The overview's numbers


def _insert_events(rows: list[tuple[datetime, int | None, int, int, str]]) -> None:
    """Access events at given times (partner id, status, records, action), as COPY would."""
    AccessEvent.objects.bulk_create(
        [
            AccessEvent(
                time=moment,
                partner_id=partner_id,
                status=status,
                records=records,
                action=action,
                actor="tests",
                key_prefix=f"k{partner_id or 0}",
                target=f"t{index % 3}",
            )
            for index, (moment, partner_id, status, records, action) in enumerate(rows)
        ]
    )


def _spread(partners: list[int | None], days: int, end: date, seed: int) -> list[Any]:
    import random

    randomness = random.Random(seed)
    rows = []
    start = datetime.combine(end, datetime.min.time(), tzinfo=UTC) - timedelta(days=days - 1)
    for _ in range(1500):
        moment = start + timedelta(seconds=randomness.randrange(days * 86400))
        rows.append(
            (
                moment,
                randomness.choice(partners),
                randomness.choice([200, 200, 200, 401, 403, 404, 429]),
                randomness.randrange(0, 50),
                randomness.choice(["feed.read", "match", "audit.read"]),
            )
        )
    return rows


def _direct(first: date, last: date, excluding: int = 0) -> dict[tuple[str, str], dict[str, int]]:
    """Requests, records and refusals per (partner name, day), counted over the events."""
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    until = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    found: dict[tuple[str, str], dict[str, int]] = {}
    events = AccessEvent.objects.filter(time__gte=since, time__lt=until).exclude(pk=excluding)
    for event in events.select_related("partner"):
        key = (
            event.partner.name if event.partner else "(no partner)",
            event.time.date().isoformat(),
        )
        counts = found.setdefault(key, {"requests": 0, "records": 0, "refusals": 0})
        counts["requests"] += 1
        counts["records"] += event.records
        counts["refusals"] += event.status >= 400
    return found


def _chart(response: Any) -> dict[str, Any]:
    match = re.search(
        rb'<script id="chart-data" type="application/json">(.*?)</script>', response.content, re.S
    )
    assert match, "the overview carries its charts' numbers"
    return json.loads(match.group(1))


def _charted(chart: dict[str, Any]) -> dict[tuple[str, str], dict[str, int]]:
    found = {}
    for series in chart["series"]:
        for offset, day in enumerate(chart["days"]):
            counts = {
                metric: series[metric][offset] for metric in ("requests", "records", "refusals")
            }
            if any(counts.values()):
                found[(series["partner"], day)] = counts
    return found


@pytest.mark.django_db(transaction=True)
def test_the_charts_numbers_equal_a_direct_count_including_events_after_the_roll_up() -> None:
    alice, bob = partner_client("alice"), partner_client("bob")
    today = timezone.now().astimezone(UTC).date()
    ids = [alice.partner.pk, bob.partner.pk, None]
    _insert_events(_spread(ids, 70, today, seed=1))
    assert access_rollup(chunk=400) == AccessEvent.objects.latest("id").pk
    # Events after the roll-up, in days already rolled up: the tail, counted directly.
    _insert_events(_spread(ids, 70, today, seed=2)[:300])
    client = _staff("auditor", permitted=True)
    first, last = today - timedelta(days=29), today
    response = client.get("/audit/", {"start": first.isoformat(), "end": last.isoformat()})
    assert response.status_code == 200
    # The overview's own page view is recorded after the page is made: not in its numbers.
    page_view = _latest_event()
    assert page_view.action == "audit.web.overview"
    expected = _direct(first, last, excluding=page_view.pk)
    assert _charted(_chart(response)) == expected
    # The previous period, as the per-partner table shows it.
    previous = _direct(first - timedelta(days=30), first - timedelta(days=1))
    for row in response.context["rows"]:
        for cell in row["cells"]:
            assert int(cell["previous"]) == sum(
                counts[cell["metric"]]
                for (name, _), counts in previous.items()
                if name == row["partner"]
            )
    assert AccessDaily.objects.exists()
    assert AccessRollup.objects.get().last_id > 0


@pytest.mark.django_db
def test_the_overview_export_holds_the_charts_numbers_within_the_auditors_scope(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    today = timezone.now().astimezone(UTC).date()
    _insert_events(_spread([alice.partner.pk, bob.partner.pk], 20, today, seed=7)[:400])
    first, last = today - timedelta(days=9), today
    query = {"start": first.isoformat(), "end": last.isoformat()}
    client = _staff("auditor", permitted=True)
    response = client.get("/audit/overview.csv", query)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    page_view = _latest_event()
    assert (page_view.action, page_view.detail["format"]) == ("audit.web.overview_export", "csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    exported = {
        (row["partner"] or "(no partner)", row["day"]): {
            m: int(row[m]) for m in ("requests", "records", "refusals")
        }
        for row in rows
    }
    assert exported == _direct(first, last, excluding=page_view.pk)
    own = _signed_in(_auditor_key(alice)).get("/audit/overview.jsonl", query)
    assert {json.loads(line)["partner"] for line in own.content.splitlines()} == {"alice"}


@pytest.mark.django_db(transaction=True)
def test_a_roll_up_counts_every_event_once_however_it_is_split_and_repeated() -> None:
    alice = partner_client("alice")
    today = timezone.now().astimezone(UTC).date()
    _insert_events(_spread([alice.partner.pk, None], 10, today, seed=3))
    access_rollup(chunk=97)
    access_rollup(chunk=97)
    _insert_events(_spread([alice.partner.pk], 10, today, seed=4)[:200])
    access_rollup(chunk=1000)
    rolled = {
        (row.day, row.partner_id): (row.requests, row.records, row.refusals)
        for row in AccessDaily.objects.all()
    }
    counts = access_daily_counts(first_day=today - timedelta(days=20), last_day=today)
    assert rolled == {
        (count.day, count.partner_id): (count.requests, count.records, count.refusals)
        for count in counts
    }
    assert sum(value[0] for value in rolled.values()) == AccessEvent.objects.count()
    for hour in AccessHour.objects.all():
        inside = AccessEvent.objects.filter(
            time__gte=hour.hour, time__lt=hour.hour + timedelta(hours=1)
        )
        assert inside.order_by("id").first().pk == hour.first_id
        assert inside.order_by("id").last().pk == hour.last_id


@pytest.mark.django_db(transaction=True)
def test_a_roll_up_waits_for_an_access_event_still_being_written() -> None:
    """An event whose transaction is open when the roll-up starts is counted once it
    commits, never skipped because a later id was rolled up first."""
    from django.db import transaction

    started, release = threading.Event(), threading.Event()
    slow: list[int] = []

    def writer() -> None:
        try:
            with transaction.atomic():
                slow.append(_events(None, 1)[0].pk)
                started.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(10)
    later = _events(None, 3)
    result: list[int] = []
    roller = threading.Thread(target=lambda: (result.append(access_rollup()), connection.close()))
    roller.start()
    roller.join(0.5)
    assert roller.is_alive(), "the roll-up waits for the open transaction"
    release.set()
    thread.join(10)
    roller.join(10)
    assert result == [later[-1].pk]
    assert sum(AccessDaily.objects.values_list("requests", flat=True)) == 4


@pytest.mark.django_db
def test_largest_changes_rank_a_tenfold_jump_first(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    now = timezone.now()
    rows = [(now - timedelta(days=40), alice.partner.pk, 200, 0, "match")] * 20
    rows += [(now, alice.partner.pk, 200, 0, "match")] * 200
    rows += [(now - timedelta(days=40), bob.partner.pk, 200, 0, "match")] * 100
    rows += [(now, bob.partner.pk, 200, 0, "match")] * 110
    _insert_events(rows)
    response = _staff("auditor", permitted=True).get("/audit/")
    top = response.context["changes"][0]
    assert (top["partner"], top["metric"], top["previous"], top["current"]) == (
        "alice",
        "requests",
        20,
        200,
    )
    assert "\N{MULTIPLICATION SIGN}10.0" in response.content.decode()


# The access-event browser


def _browse_all(query: dict[str, str], partner_id: int | None = None, limit: int = 7) -> list[int]:
    seen: list[int] = []
    params = dict(query)
    while True:
        filters = AccessEventBrowseFilter(params, queryset=AccessEvent.objects.all())
        assert filters.is_valid(), filters.errors
        page = access_events_browse(filters=filters, partner_id=partner_id, limit=limit)
        seen += [event.pk for event in page.events]
        if page.next_cursor is None:
            return seen
        params["before"] = str(page.next_cursor)


@pytest.mark.django_db(transaction=True)
def test_every_filter_and_time_range_pages_exactly_what_a_direct_query_selects() -> None:
    alice, bob = partner_client("alice"), partner_client("bob")
    today = timezone.now().astimezone(UTC).date()
    _insert_events(_spread([alice.partner.pk, bob.partner.pk, None], 5, today, seed=5)[:400])
    access_rollup(chunk=150)
    _insert_events(_spread([alice.partner.pk, bob.partner.pk, None], 5, today, seed=6)[:100])
    middle = datetime.combine(today, datetime.min.time(), tzinfo=UTC) - timedelta(
        hours=50, minutes=7
    )
    cases: list[tuple[dict[str, str], Any]] = [
        ({}, {}),
        ({"partner": "bob"}, {"partner": bob.partner}),
        ({"key": f"k{alice.partner.pk}"}, {"key_prefix": f"k{alice.partner.pk}"}),
        ({"action": "match"}, {"action": "match"}),
        ({"status": "403"}, {"status": 403}),
        ({"target": "t1"}, {"target": "t1"}),
        ({"since": middle.isoformat()}, {"time__gte": middle}),
        ({"until": middle.isoformat()}, {"time__lt": middle}),
        (
            {
                "since": (middle - timedelta(hours=9)).isoformat(),
                "until": middle.isoformat(),
                "partner": "alice",
            },
            {
                "time__gte": middle - timedelta(hours=9),
                "time__lt": middle,
                "partner": alice.partner,
            },
        ),
        ({"since": "2001-01-01T00:00Z", "until": "2001-01-02T00:00Z"}, {"pk": -1}),
    ]
    for query, direct in cases:
        expected = list(
            AccessEvent.objects.filter(**direct).order_by("-id").values_list("id", flat=True)
        )
        assert _browse_all(query) == expected, query
    # A partner's auditor: the same walk, its own partner only.
    assert _browse_all({}, partner_id=alice.partner.pk) == list(
        AccessEvent.objects.filter(partner=alice.partner)
        .order_by("-id")
        .values_list("id", flat=True)
    )


@pytest.mark.django_db
def test_the_browser_pages_through_shareable_urls(alice: PartnerClient) -> None:
    made = _events(alice, 12, action="match")
    client = _staff("auditor", permitted=True)
    url, seen = "/audit/events?action=match&limit=5", []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += [event.pk for event in response.context["events"]]
        next_query = response.context["next_query"]
        url = f"/audit/events?{next_query}" if next_query else ""
        if next_query:
            assert "action=match" in next_query
            assert "limit=5" in next_query
    assert seen == sorted((event.pk for event in made), reverse=True)
    detail = client.get(f"/audit/events/{made[0].pk}")
    assert detail.status_code == 200
    assert b"partner:alice" in detail.content
    assert b'<time datetime="' in detail.content


def _fill(n: int, *, seconds_apart: int = 1, partner_id: int | None = None) -> None:
    """n access events, one every `seconds_apart` seconds up to now, ids in time order, as
    the benchmark makes its ten million (INSERT ... SELECT generate_series, no ORM)."""
    table = AccessEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} "  # noqa: S608
            "(time, partner_id, key_prefix, actor, action, target, records, status, detail) "
            "SELECT now() - make_interval(secs => (%s - g) * %s), %s, "
            "'k' || (g %% 7), 'partner:x', 'a' || (g %% 5), 'feed?after=' || g, g %% 100, "
            '200 + (g %% 3) * 100, \'{"method": "GET"}\'::jsonb '
            "FROM generate_series(1, %s) g",
            [n, seconds_apart, partner_id, n],
        )


@pytest.mark.django_db(transaction=True)
def test_each_filter_is_served_by_an_index_without_a_sort() -> None:
    """The plan of every filter walks an index in id order (no Sort node): what keeps a
    page cheap at a billion rows. On a month of analysed events, with sequential scans
    disabled so that the planner shows the index it would use on a large table."""
    alice = partner_client("alice")
    _fill(30_000, seconds_apart=90, partner_id=alice.partner.pk)
    access_rollup()
    _fill(200, partner_id=alice.partner.pk)
    now = timezone.now()
    queries = [
        {"partner": "alice"},
        {"key": "k3"},
        {"action": "a2"},
        {"status": "400"},
        {"target": "feed?after=77"},
        {
            "since": (now - timedelta(days=9)).isoformat(),
            "until": (now - timedelta(days=6)).isoformat(),
        },
        {"since": (now - timedelta(days=20)).isoformat(), "partner": "alice", "action": "a1"},
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {AccessEvent._meta.db_table}")
        cursor.execute("SET enable_seqscan = off")
    try:
        for query in queries:
            filters = AccessEventBrowseFilter(query, queryset=AccessEvent.objects.all())
            assert filters.is_valid()
            slices = access_events_slices(filters=filters, partner_id=None)
            assert len(slices) == (2 if "since" in query else 1)
            for queryset in slices:
                plan = queryset[:101].explain()
                assert "Index" in plan, (query, plan)
                assert "Sort" not in plan, (query, plan)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")


# Exports


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.django_db
def test_exports_hold_every_event_of_the_filtered_view_and_are_audited(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    _events(alice, 2300, action="feed.read")
    _events(bob, 40, action="feed.read")
    _events(alice, 5, action="match")
    client = _staff("auditor", permitted=True)
    before = AccessEvent.objects.count()
    response = client.get("/audit/events/export.csv", {"partner": "alice", "action": "feed.read"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="access-events-')
    recorded = _latest_event()  # recorded before the first row is sent
    assert (recorded.action, recorded.detail["format"]) == ("audit.web.export", "csv")
    assert recorded.target == "partner=alice&action=feed.read"
    rows = _csv(response)
    assert len(rows) == 2300
    assert {(row["partner"], row["action"]) for row in rows} == {("alice", "feed.read")}
    assert [int(row["id"]) for row in rows] == sorted(
        (int(row["id"]) for row in rows), reverse=True
    )
    assert AccessEvent.objects.count() == before + 1
    lines = b"".join(
        client.get("/audit/events/export.jsonl", {"partner": "bob"}).streaming_content
    ).splitlines()
    items = [json.loads(line) for line in lines]
    assert len(items) == 40
    assert {item["partner"] for item in items} == {"bob"}
    assert set(items[0]) == {
        "id",
        "time",
        "partner",
        "key_prefix",
        "user",
        "actor",
        "action",
        "target",
        "records",
        "status",
        "client_ip",
        "detail",
    }
    assert items[0]["time"].endswith("Z")
    event = AccessEvent.objects.get(pk=items[0]["id"])
    assert items[0]["detail"] == event.detail
    assert items[0]["time"] == event.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert items[0]["partner"] == "bob"


@pytest.mark.django_db
def test_a_csv_cell_that_a_spreadsheet_would_run_is_neutralised(alice: PartnerClient) -> None:
    _events(alice, 1, target='=HYPERLINK("http://evil.example","x")')
    rows = _csv(
        _staff("auditor", permitted=True).get("/audit/events/export.csv", {"partner": "alice"})
    )
    assert rows[0]["target"] == '\'=HYPERLINK("http://evil.example","x")'


def _export_peak(client: Client, n: int) -> tuple[int, int]:
    tracemalloc.start()
    try:
        response = client.get("/audit/events/export.jsonl")
        count = sum(chunk.count(b"\n") for chunk in response.streaming_content)
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.django_db
def test_an_export_streams_in_memory_that_does_not_grow_with_its_rows() -> None:
    """bench/audit_pages.py exports a million events and measures the process's peak RSS;
    here 8,000 and 40,000 events must peak alike (one keyset chunk at a time)."""
    client = _staff("auditor", permitted=True)
    _fill(8000)
    small_count, small_peak = _export_peak(client, 8000)
    _fill(32000)
    large_count, large_peak = _export_peak(client, 40000)
    # Each export holds its own access event, recorded before its first row.
    assert (small_count, large_count) == (8000 + 1, 40000 + 2)
    assert large_peak < small_peak * 1.5, (small_peak, large_peak)


# Log health


@pytest.mark.django_db(transaction=True)
def test_log_health_shows_the_checkpoint_cosigners_last_verification_and_periods(
    settings: Any,
) -> None:
    from audit.actors import ACCESS_PERIOD_SEALER, CHECKPOINT_SIGNER
    from audit.services import checkpoint_sign
    from consortium_client.notes import cosignature_sign

    alice, bob = partner_client("alice"), partner_client("bob")
    checkpoint = checkpoint_sign(actor=CHECKPOINT_SIGNER)
    body = checkpoint.note[: checkpoint.note.rindex("\n\n") + 1]
    for partner in (alice, bob):
        line = cosignature_sign(
            name=partner.partner.name,
            private_key=partner.private_key,
            checkpoint_text=body,
            timestamp=1_800_000_000,
        ).line
        posted = partner.post_text("/api/v1/log/cosignatures", (checkpoint.note + line).encode())
        assert posted.status_code == 201, posted.content
    out = io.StringIO()
    call_command("log_verify", "--no-progress", stdout=out)
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER, wait_seconds=5)
    assert period is not None
    client = _signed_in(_auditor_key(alice))
    page = client.get("/audit/log")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"{checkpoint.size}" in text
    assert "ago" in text
    assert "Verified" in text
    assert out.getvalue().strip()[:20] in text
    assert period.root in text
    # Its own partner's cosigning key, not which other partners witness the log.
    assert alice.signing_key.key_id[:16] in text
    assert bob.signing_key.key_id[:16] not in text
    staff = _staff("auditor", permitted=True).get("/audit/log").content.decode()
    assert alice.signing_key.key_id[:16] in staff
    assert bob.signing_key.key_id[:16] in staff


# Assets


@pytest.mark.django_db
@pytest.mark.parametrize("deployment", [True, False], ids=["deployment", "quick-start"])
def test_the_pages_load_every_asset_from_this_server(
    settings: Any, tmp_path: Any, deployment: bool
) -> None:
    """The charting library, the script and the stylesheet come from this server (no CDN),
    collected and served by WhiteNoise in a deployment, from the app in the quick start."""
    from tests.test_docs import ASSET_TYPES, _AssetLinks

    if deployment:
        settings.STATIC_ROOT = tmp_path / "static"
        call_command("collectstatic", "--noinput", verbosity=0)
    else:
        settings.DEBUG = True
        settings.STATIC_ROOT = tmp_path / "nothing-collected"
    page = _staff("auditor", permitted=True).get("/audit/")
    links = _AssetLinks()
    links.feed(page.content.decode())
    assert len(links.urls) == 3, links.urls  # Chart.js, auditor.js, auditor.css
    assert any("chartjs-4.6.1/chart.umd.min.js" in url for url in links.urls)
    for url in links.urls:
        assert url.startswith("/static/"), url
        asset = Client().get(url)
        assert asset.status_code == 200, url
        assert ASSET_TYPES[url[url.rindex(".") :]] in asset["Content-Type"]


@pytest.mark.django_db
def test_a_partner_page_shows_the_verdicts_it_gave_and_received_without_notes(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    from hashes.models import HashList
    from tests.factories import HashListFactory
    from tests.test_feedback import given, submit_one

    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    entry = submit_one(alice, "ncii")
    verdict = given(bob, entry, "false_positive", note="a benign meme, see ticket 4411")
    client = _staff("auditor", permitted=True)

    bobs = client.get("/audit/partners/bob")
    assert bobs.status_code == 200
    (shown,) = bobs.context["feedback_given"]
    assert (shown.entry_id, shown.verdict, shown.reason, shown.log_index) == (
        entry,
        "false_positive",
        "matched_benign_content",
        verdict["log_indexes"][0],
    )
    assert bobs.context["feedback_received"] == []
    alices = client.get("/audit/partners/alice")
    assert [(v.entry_id, v.partner.name) for v in alices.context["feedback_received"]] == [
        (entry, "bob")
    ]
    for page in (alices, bobs):
        assert b"false_positive" in page.content
        assert b"ticket 4411" not in page.content
    # The page's access event counts the verdicts it showed among its records.
    event = _latest_event()
    assert event.action == "audit.web.partner"
    assert (
        event.records
        == len(alices.context["keys"])
        + len(alices.context["signing_keys"])
        + len(alices.context["lists"])
        + len(alices.context["submissions"])
        + 1
    )
