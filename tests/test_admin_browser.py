"""A staff user in a real browser: password and TOTP code (computed as an authenticator app
does), the admin index, an entry's page; a wrong code refused; a recovery code good once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User

from audit.models import AccessEvent
from hashes.models import Entry
from tests.authenticator import enrol, totp_code, wrong_totp_code
from tests.browser import Browser
from tests.conftest import pdq

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _log_in(browser: Browser, code: str, shot: str) -> None:
    browser.go("/admin/")
    assert browser.path.startswith("/admin/login/")
    browser.fill(username="carol", password=PASSWORD, otp_token=code)
    browser.shot(shot)
    browser.submit()


def _log_out(browser: Browser) -> None:
    browser.submit("#logout-form [type='submit']")
    assert "Logged out" in browser.text()


@pytest.mark.slow
def test_staff_log_in_with_totp_and_recovery_codes_in_a_browser(
    browser: Browser, alice, shared_list
) -> None:
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])
    assert response.status_code == 201, response.content
    entry = Entry.objects.get(pk=json.loads(response.content)["entries"][0]["id"])
    User.objects.create_superuser("carol", "carol@example.org", PASSWORD)
    enrolment = enrol("carol")

    # Password and the authenticator's code: in.
    _log_in(browser, totp_code(enrolment.uri), "login-with-totp")
    assert browser.path == "/admin/"
    assert "Site administration" in browser.text()
    browser.shot("admin-index")

    browser.go("/admin/hashes/entry/")
    browser.click(f'a[href="/admin/hashes/entry/{entry.pk}/change/"]')
    assert browser.path == f"/admin/hashes/entry/{entry.pk}/change/"
    assert entry.value in browser.text()
    browser.shot("entry-page")
    viewed = AccessEvent.objects.filter(action="admin.entry.view", actor="admin:carol")
    assert [e.target for e in viewed] == [f"hashes.entry:{entry.pk}"]
    _log_out(browser)

    # A wrong code: the login page again, with the reason, and no admin page.
    _log_in(browser, wrong_totp_code(enrolment.uri), "login-with-wrong-totp")
    assert browser.path.startswith("/admin/login/")
    assert "That code is not valid" in browser.text()
    browser.shot("wrong-totp-refused")
    browser.go("/admin/hashes/entry/")
    assert browser.path.startswith("/admin/login/")

    # A recovery code, once.
    code = enrolment.recovery_codes[0]
    _log_in(browser, code, "login-with-recovery-code")
    assert browser.path == "/admin/"
    assert "Site administration" in browser.text()
    browser.shot("admin-index-after-recovery-code")
    _log_out(browser)

    _log_in(browser, code, "login-with-used-recovery-code")
    assert browser.path.startswith("/admin/login/")
    assert "That code is not valid" in browser.text()
    browser.shot("used-recovery-code-refused")

    assert [e.status for e in AccessEvent.objects.filter(action="admin.login").order_by("id")] == [
        200,
        401,
        200,
        401,
    ]
    assert all(path.stat().st_size > 1000 for path in browser.taken)
