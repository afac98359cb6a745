"""The auditors' pages in a real browser (headless Debian chromium, tests/browser.py): a
staff auditor logs in with a password and a TOTP code, opens the overview, filters the
access events, pages, opens an event and exports CSV; a staff user without the permission
and a partner's auditor looking at another partner are refused. Each page is saved as a
screenshot under artifacts/screenshots/<test>/."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from audit.actors import Actor
from audit.models import AccessEvent
from audit.services import access_event_record
from partners import services
from tests.authenticator import enrol, totp_code
from tests.browser import Browser
from tests.conftest import ADMIN, PartnerClient

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _staff(username: str, *, permitted: bool) -> str:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    if permitted:
        user.user_permissions.add(Permission.objects.get(codename="view_audit_pages"))
    return enrol(username).uri


def _log_in(browser: Browser, username: str, uri: str) -> None:
    browser.go("/audit/")
    assert browser.path.startswith("/audit/sign-in"), browser.path
    # Staff follow the sign-in page's link to the admin's login, and come back after it.
    browser.click("main a[href^='/admin/login/']")
    assert browser.path.startswith("/admin/login/?next="), browser.path
    browser.fill(username=username, password=PASSWORD, otp_token=totp_code(uri))
    browser.submit()


def _activity(alice: PartnerClient, bob: PartnerClient) -> None:
    for partner, count in ((alice, 130), (bob, 20)):
        actor = Actor.for_api_key(partner.partner.api_keys.first(), client_ip="192.0.2.7")
        for number in range(count):
            access_event_record(
                actor=actor,
                action="match" if number % 2 else "feed.read",
                status=403 if number % 10 == 0 else 200,
                target=f"feed?after={number}",
                records=number % 7,
            )


@pytest.mark.slow
def test_a_staff_auditor_reviews_filters_pages_opens_and_exports_in_a_browser(
    browser: Browser, alice: PartnerClient, bob: PartnerClient
) -> None:
    _activity(alice, bob)
    uri = _staff("dana", permitted=True)
    _log_in(browser, "dana", uri)
    assert browser.path == "/audit/"
    assert "Access overview" in browser.text()
    # The charts were drawn by the locally served Chart.js (a canvas with pixels).
    drawn = browser.driver.execute_script(
        "return typeof Chart !== 'undefined' && !!Chart.getChart('chart-requests')"
    )
    assert drawn
    browser.shot("overview")

    browser.go("/audit/events?limit=25")
    browser.fill(partner="alice", action="match")
    browser.shot("events-filter")
    browser.submit("form.filters [type='submit']")
    assert "partner=alice" in browser.path
    assert "action=match" in browser.path
    first_page = browser.text()
    assert "partner:alice" in first_page
    assert "partner:bob" not in first_page
    browser.shot("events-filtered")
    browser.click("a[rel='next']")
    assert "before=" in browser.path
    assert "action=match" in browser.path
    browser.shot("events-page-2")
    link = browser.find("table tbody a")
    event_id = int(link.text)
    browser.click("table tbody a")
    assert browser.path == f"/audit/events/{event_id}"
    assert "Access event" in browser.text()
    # Times are shown in the browser's time zone, with the UTC time on hover.
    shown = browser.find("time")
    assert shown.get_attribute("title").endswith("UTC")
    browser.shot("event")

    browser.go("/audit/events?partner=alice&action=match")
    href = browser.find("a[href^='/audit/events/export.csv']").get_attribute("href")
    exported = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);",
        href,
    )
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == 65
    assert {(row["partner"], row["action"]) for row in rows} == {("alice", "match")}
    browser.shot("export-link")
    actions = set(AccessEvent.objects.filter(actor="admin:dana").values_list("action", flat=True))
    assert {
        "audit.web.overview",
        "audit.web.events",
        "audit.web.event",
        "audit.web.export",
    } <= actions
    assert all(path.stat().st_size > 1000 for path in browser.taken)


@pytest.mark.slow
def test_a_staff_user_without_the_permission_is_refused_in_a_browser(
    browser: Browser, alice: PartnerClient
) -> None:
    uri = _staff("erin", permitted=False)
    _log_in(browser, "erin", uri)
    assert browser.path == "/audit/"
    assert "Not allowed" in browser.text()
    assert "audit.view_audit_pages" in browser.text()
    browser.shot("refused")


@pytest.mark.slow
def test_a_partner_auditor_signs_in_with_a_key_and_is_refused_another_partner(
    browser: Browser, alice: PartnerClient, bob: PartnerClient
) -> None:
    _activity(alice, bob)
    _, key = services.apikey_create(partner=alice.partner, scopes=["audit"], actor=ADMIN)
    browser.go("/audit/partners/alice")
    assert browser.path.startswith("/audit/sign-in")
    browser.fill(api_key=key)
    browser.shot("sign-in")
    browser.submit("main form [type='submit']")
    assert browser.path == "/audit/partners/alice"
    assert "API keys" in browser.text()
    browser.shot("own-partner")
    browser.go("/audit/partners/bob")
    assert "Not found" in browser.text()
    browser.shot("other-partner-refused")
    browser.go("/audit/events?partner=bob")
    assert "Not found" in browser.text()
    browser.go("/audit/events")
    actors = {
        cell.text
        for cell in browser.driver.find_elements("css selector", "table tbody td:nth-child(3)")
    }
    assert actors == {"partner:alice"}
    browser.shot("own-events")
