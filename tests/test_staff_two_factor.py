"""Staff log in to the admin with a password and a second factor, every one of them;
enrolment and reset are commands, audited; sessions expire."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AccessEvent
from staff.access import staff_verified, verified_staff_required
from staff.middleware import SEEN, STARTED
from staff.models import RecoveryCode, RecoveryCodeDevice
from staff.sites import INVALID_CODE, THROTTLED
from tests.authenticator import enrol, totp_code, wrong_totp_code
from tests.conftest import staff_login

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    # Django's default hasher costs a few hundred milliseconds a login, by design.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _staff(username: str = "carol", *, superuser: bool = False, staff: bool = True) -> User:
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.org", PASSWORD)
    return User.objects.create_user(username, f"{username}@example.org", PASSWORD, is_staff=staff)


def _login(client: Client, username: str, code: str, password: str = PASSWORD) -> Any:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "otp_token": code, "next": "/admin/"},
    )


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _errors(response: Any) -> list[str]:
    return [str(e) for e in response.context["form"].non_field_errors()]


def _logins(user: User) -> list[tuple[int, str]]:
    return [
        (e.status, e.detail.get("problem", ""))
        for e in AccessEvent.objects.filter(action="admin.login", user=user).order_by("id")
    ]


# Logging in ---------------------------------------------------------------------------------


def test_staff_logs_in_with_password_and_totp_code(db, client) -> None:
    user = _staff()
    enrolment = enrol("carol")

    response = _login(client, "carol", totp_code(enrolment.uri))

    assert response.status_code == 302, _errors(response)
    assert response["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"Site administration" in index.content
    assert _logins(user) == [(200, "")]
    (event,) = AccessEvent.objects.filter(action="admin.login")
    assert (event.actor, event.detail["device"]) == ("admin:carol", "TOTPDevice")


def test_password_alone_gets_no_admin_page(db, client) -> None:
    _staff()
    enrol("carol")

    refused = _login(client, "carol", "")

    assert refused.status_code == 200
    assert "Enter the code from your authenticator app." in _errors(refused)
    assert not _logged_in(client)
    for path in ("/admin/", "/admin/hashes/entry/", "/admin/partners/partner/"):
        assert client.get(path)["Location"].startswith("/admin/login/"), path


def test_a_session_logged_in_by_password_only_is_not_let_in(db, client) -> None:
    """A session that authenticated some other way (no device in it) is not verified."""
    user = _staff(superuser=True)
    enrol("carol")
    client.force_login(user)

    for path in ("/admin/", "/admin/hashes/entry/", "/admin/audit/accessevent/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/admin/login/"), path


def test_wrong_totp_code_is_refused_and_audited(db, client) -> None:
    user = _staff()
    enrolment = enrol("carol")

    refused = _login(client, "carol", wrong_totp_code(enrolment.uri))

    assert refused.status_code == 200
    assert _errors(refused) == [INVALID_CODE]
    assert not _logged_in(client)
    assert _logins(user) == [(401, "wrong-code")]


def test_a_totp_code_is_accepted_once(db) -> None:
    _staff()
    enrolment = enrol("carol")
    code = totp_code(enrolment.uri)
    assert _login(Client(), "carol", code).status_code == 302

    replay = Client()
    refused = _login(replay, "carol", code)

    assert _errors(refused) == [INVALID_CODE]
    assert not _logged_in(replay)


def test_guessing_codes_is_throttled(db, client) -> None:
    user = _staff()
    enrolment = enrol("carol")
    for _ in range(5):
        _login(Client(), "carol", wrong_totp_code(enrolment.uri))

    # After five wrong codes the device waits 16 seconds before it checks another.
    refused = _login(client, "carol", totp_code(enrolment.uri))

    assert _errors(refused) == [THROTTLED]
    assert not _logged_in(client)
    assert _logins(user)[-1] == (401, "throttled")


def test_recovery_code_works_once(db) -> None:
    user = _staff()
    enrolment = enrol("carol")
    code = enrolment.recovery_codes[3]

    # Typed without its dashes, in capitals, as people do.
    first = Client()
    assert _login(first, "carol", code.replace("-", "").upper()).status_code == 302
    assert first.get("/admin/").status_code == 200
    assert _login(Client(), "carol", enrolment.recovery_codes[0]).status_code == 302
    again = Client()
    refused = _login(again, "carol", code)

    assert _errors(refused) == [INVALID_CODE]
    assert not _logged_in(again)
    assert RecoveryCode.objects.filter(device__user=user).count() == 8
    assert _logins(user) == [(200, ""), (200, ""), (401, "wrong-code")]
    (used,) = AccessEvent.objects.filter(action="admin.login", status=200)[:1]
    assert used.detail["device"] == "RecoveryCodeDevice"
    # The authenticator still works (a wrong recovery code throttles only the codes).
    assert _login(Client(), "carol", totp_code(enrolment.uri)).status_code == 302


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["totp", "recovery"])
def test_one_code_sent_by_two_logins_at_once_lets_one_in(kind) -> None:
    _staff()
    enrolment = enrol("carol")
    code = totp_code(enrolment.uri) if kind == "totp" else enrolment.recovery_codes[0]
    start = threading.Barrier(2)
    statuses: list[int] = []

    def attempt() -> None:
        try:
            client = Client()
            start.wait()
            statuses.append(_login(client, "carol", code).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [200, 302]
    assert AccessEvent.objects.filter(action="admin.login", status=200).count() == 1


def test_wrong_password_with_a_valid_code_spends_nothing(db, client) -> None:
    _staff()
    enrolment = enrol("carol")
    code = totp_code(enrolment.uri)

    refused = _login(client, "carol", code, password="not the password")

    assert "correct username and password" in _errors(refused)[0]
    device = TOTPDevice.objects.get(user__username="carol")
    assert device.last_t == -1
    assert device.throttling_failure_count == 0
    # The code was neither checked nor spent: the right password with it still logs in.
    assert _login(Client(), "carol", code).status_code == 302


def test_another_staff_users_code_is_refused(db, client) -> None:
    _staff("carol")
    _staff("dave")
    enrol("carol")
    daves = enrol("dave")

    refused = _login(client, "carol", totp_code(daves.uri))
    refused_recovery = _login(Client(), "carol", daves.recovery_codes[0])

    assert _errors(refused) == [INVALID_CODE]
    assert _errors(refused_recovery) == [INVALID_CODE]
    assert not _logged_in(client)
    assert RecoveryCode.objects.filter(device__user__username="dave").count() == 10


@pytest.mark.parametrize("superuser", [False, True], ids=["staff", "superuser"])
def test_staff_without_a_device_cannot_log_in_and_is_told_why(db, client, superuser) -> None:
    user = _staff(superuser=superuser)

    refused = _login(client, "carol", "123456")

    (error,) = _errors(refused)
    assert "not set up for this account" in error
    assert "staff_totp_enroll carol" in error
    assert not _logged_in(client)
    assert _logins(user) == [(401, "not-enrolled")]


def test_a_user_who_is_not_staff_is_refused_even_with_a_device(db, client) -> None:
    user = _staff(staff=False)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    uri = device.config_url

    refused = _login(client, "carol", totp_code(uri))

    assert "staff account" in _errors(refused)[0]
    assert not _logged_in(client)
    assert TOTPDevice.objects.get(pk=device.pk).last_t == -1


# Enrolment and reset -----------------------------------------------------------------------


def test_enrolment_prints_the_key_and_ten_codes_and_stores_only_their_digests(db) -> None:
    user = _staff()

    enrolment = enrol("carol")

    assert enrolment.uri.startswith("otpauth://totp/Consortium%3Acarol?secret=")
    assert "issuer=Consortium" in enrolment.uri
    assert len(set(enrolment.recovery_codes)) == 10
    stored = set(RecoveryCode.objects.values_list("digest", flat=True))
    assert stored == {
        hashlib.sha256(code.replace("-", "").encode()).hexdigest()
        for code in enrolment.recovery_codes
    }
    rows = " ".join(str(row) for row in RecoveryCode.objects.values_list())
    assert not any(code.replace("-", "") in rows for code in enrolment.recovery_codes)
    assert TOTPDevice.objects.get(user=user).confirmed
    (event,) = AccessEvent.objects.filter(action="staff.2fa.enrol")
    assert (event.actor, event.target) == ("command:staff_totp_enroll", f"auth.user:{user.pk}")
    secret = enrolment.uri.split("secret=")[1].split("&")[0]
    assert secret not in str(event.detail)


def test_enrolment_can_print_a_qr_code_for_the_phone(db) -> None:
    _staff()
    out = io.StringIO()

    call_command("staff_totp_enroll", "carol", "--qr", stdout=out)

    assert "█" in out.getvalue() or "▀" in out.getvalue()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("not-staff", "is not a staff user"),
        ("enrolled", "already has two-factor authentication"),
        ("missing", "no user named"),
    ],
)
def test_enrolment_refusals_store_nothing(db, setup, message) -> None:
    if setup == "not-staff":
        _staff(staff=False)
    elif setup == "enrolled":
        _staff()
        enrol("carol")
    before = (TOTPDevice.objects.count(), RecoveryCode.objects.count())
    events = AccessEvent.objects.count()

    with pytest.raises(CommandError, match=message):
        call_command("staff_totp_enroll", "carol", "--no-qr", stdout=io.StringIO())

    assert (TOTPDevice.objects.count(), RecoveryCode.objects.count()) == before
    assert AccessEvent.objects.count() == events


def test_reset_shuts_out_verified_sessions_at_once_and_is_audited(db, client) -> None:
    user = _staff(superuser=True)
    enrolment = enrol("carol")
    assert _login(client, "carol", totp_code(enrolment.uri)).status_code == 302
    assert client.get("/admin/hashes/entry/").status_code == 200
    out = io.StringIO()

    call_command("staff_totp_reset", "carol", "--reason", "phone lost", stdout=out)

    assert "2 device(s) removed" in out.getvalue()
    assert client.get("/admin/hashes/entry/")["Location"].startswith("/admin/login/")
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not RecoveryCodeDevice.objects.filter(user=user).exists()
    assert not RecoveryCode.objects.exists()
    (event,) = AccessEvent.objects.filter(action="staff.2fa.reset")
    assert (event.actor, event.target, event.records) == (
        "command:staff_totp_reset",
        f"auth.user:{user.pk}",
        2,
    )
    assert event.detail["reason"] == "phone lost"
    # The old recovery codes are gone too; a new enrolment works.
    assert _errors(_login(Client(), "carol", enrolment.recovery_codes[0]))[0].startswith(
        "Two-factor authentication is not set up"
    )
    fresh = enrol("carol")
    assert _login(Client(), "carol", totp_code(fresh.uri)).status_code == 302


def test_reset_needs_a_reason(db) -> None:
    _staff()
    enrol("carol")

    with pytest.raises(CommandError, match="--reason"):
        call_command("staff_totp_reset", "carol", stdout=io.StringIO())

    assert TOTPDevice.objects.count() == 1


# Sessions -----------------------------------------------------------------------------------


@pytest.fixture
def staff_client(db, client) -> Client:
    staff_login(client, _staff(superuser=True))
    return client


def _session_times(client: Client, **times: float) -> None:
    session = client.session
    for name, value in times.items():
        session[name] = value
    session.save()


def _shut_out(client: Client) -> bool:
    response = client.get("/admin/partners/partner/")
    return response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_login_sets_a_short_lived_http_only_same_site_cookie(db, client, settings) -> None:
    _staff()
    enrolment = enrol("carol")

    response = _login(client, "carol", totp_code(enrolment.uri))

    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == settings.STAFF_SESSION_MAX_SECONDS == 8 * 3600
    assert settings.STAFF_SESSION_IDLE_SECONDS == 30 * 60
    started = client.session[STARTED]
    assert abs(started - time.time()) < 60
    assert client.session[SEEN] == started


def test_an_idle_session_expires(staff_client, settings) -> None:
    now = time.time()
    _session_times(staff_client, **{SEEN: now - settings.STAFF_SESSION_IDLE_SECONDS - 1})

    assert _shut_out(staff_client)
    assert "_auth_user_id" not in staff_client.session
    login_page = staff_client.get("/admin/login/")
    assert b"Your session has expired" in login_page.content


def test_a_busy_session_still_ends_at_its_absolute_lifetime(staff_client, settings) -> None:
    now = time.time()
    _session_times(
        staff_client, **{STARTED: now - settings.STAFF_SESSION_MAX_SECONDS - 1, SEEN: now}
    )

    assert _shut_out(staff_client)


def test_activity_keeps_a_session_alive_within_its_lifetime(staff_client, settings) -> None:
    now = time.time()
    idle = settings.STAFF_SESSION_IDLE_SECONDS
    _session_times(
        staff_client, **{STARTED: now - settings.STAFF_SESSION_MAX_SECONDS + 600, SEEN: now - 90}
    )

    assert staff_client.get("/admin/partners/partner/").status_code == 200
    seen = staff_client.session[SEEN]
    assert abs(seen - time.time()) < 60
    # Idle for almost the whole timeout since that request: still in.
    _session_times(staff_client, **{SEEN: time.time() - idle + 30})
    assert staff_client.get("/admin/partners/partner/").status_code == 200


def test_a_session_without_its_times_is_expired(staff_client) -> None:
    session = staff_client.session
    del session[STARTED]
    session.save()

    assert _shut_out(staff_client)


def test_timeouts_follow_the_settings(staff_client, settings) -> None:
    settings.STAFF_SESSION_IDLE_SECONDS = 120
    _session_times(staff_client, **{SEEN: time.time() - 121})

    assert _shut_out(staff_client)


def test_deployment_cookies_are_secure_http_only_and_same_site() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1/x",
        "SECRET_KEY": "test-only-secret",
        "ALLOWED_HOSTS": "consortium.example",
    }
    env.pop("DEBUG", None)
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
            "s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_AGE)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "consortium.settings"},
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout.split() == ["False", "True", "True", "Lax", "True", str(8 * 3600)]


# The check other staff pages use ------------------------------------------------------------


def _through_middleware(client: Client, path: str) -> HttpResponse:
    """Runs a view decorated with verified_staff_required behind the project's middleware,
    with the test client's session cookie."""
    from django.conf import settings
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

    @verified_staff_required
    def page(request: HttpRequest) -> HttpResponse:
        assert staff_verified(request)
        return HttpResponse(f"hello {request.user.get_username()}")

    handler: Any = page
    for name in reversed(settings.MIDDLEWARE):
        handler = import_string(name)(handler)
    request = RequestFactory().get(path)
    request.COOKIES.update({k: v.value for k, v in client.cookies.items()})
    return handler(request)


def test_staff_pages_outside_the_admin_need_a_verified_staff_session(db, client) -> None:
    anonymous = _through_middleware(client, "/auditor/?range=30d")
    assert anonymous.status_code == 302
    assert anonymous["Location"] == "/admin/login/?next=/auditor/%3Frange%3D30d"

    password_only = Client()
    password_only.force_login(_staff("erin"))
    assert _through_middleware(password_only, "/auditor/").status_code == 302

    staff_login(client, _staff("frank"))
    allowed = _through_middleware(client, "/auditor/")
    assert (allowed.status_code, allowed.content) == (200, b"hello frank")

    _session_times(client, **{SEEN: time.time() - 3600})
    assert _through_middleware(client, "/auditor/").status_code == 302


def test_totp_keys_are_not_in_the_admin() -> None:
    """Devices are managed by the audited commands; django-otp's device admin is removed."""
    from django.contrib import admin

    assert not admin.site.is_registered(TOTPDevice)
    assert not admin.site.is_registered(RecoveryCodeDevice)
    assert not admin.site.is_registered(RecoveryCode)
