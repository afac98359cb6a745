"""Fixtures: partners with real keys, talking to the API over HTTP as a partner would."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client

from audit.actors import Actor
from consortium_client.commitments import commitment_check
from consortium_client.keys import key_generate, public_key_pem
from consortium_client.payloads import revocation_envelope, submission_envelope
from hashes.models import HashList
from partners import services
from partners.models import Partner, SigningKey
from tests.factories import HashListFactory, PartnerFactory

ADMIN = Actor.command("tests")
HOW_TO_RUN = "run `make test`, or `scripts/services-up` then `pytest`"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse in one line to run on anything but a reachable PostgreSQL.

    On SQLite the append-only triggers and concurrent-writer tests cannot hold, and an
    unreachable server fails every test with the same traceback.
    """
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(f"the test suite needs PostgreSQL, not {database['ENGINE']}: {HOW_TO_RUN}", 2)
    try:
        psycopg.connect(
            host=database["HOST"],
            port=database["PORT"] or 5432,
            user=database["USER"],
            password=database["PASSWORD"],
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError as exc:
        where = f"{database['HOST']}:{database['PORT'] or 5432}"
        reason = str(exc).splitlines()[0].rsplit(": ", 1)[-1]
        pytest.exit(f"PostgreSQL at {where} does not answer ({reason}): {HOW_TO_RUN}", 2)


ALL_SCOPES = ("submit", "read", "match", "audit")


def pdq(seed: int | None = None) -> str:
    """A random PDQ hash value (64 hex characters)."""
    return secrets.token_hex(32) if seed is None else f"{seed:064x}"


@dataclass
class PartnerClient:
    """A partner's software: its API key, its private signing key, an HTTP client."""

    partner: Partner
    api_key: str
    private_key: Ed25519PrivateKey
    signing_key: SigningKey
    http: Client = field(default_factory=Client)

    def _headers(self, key: str | None) -> dict[str, str]:
        key = self.api_key if key is None else key
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}

    def get(self, path: str, key: str | None = None, **params: Any) -> Any:
        return self.http.get(path, params, **self._headers(key))

    def post(self, path: str, body: bytes, key: str | None = None) -> Any:
        return self.http.post(path, body, content_type="application/json", **self._headers(key))

    def post_text(self, path: str, body: bytes, key: str | None = None) -> Any:
        return self.http.post(path, body, content_type="text/plain", **self._headers(key))

    def submit(self, list_name: str, entries: Iterable[dict[str, Any]], **kw: Any) -> Any:
        return self.post("/api/v1/submissions", self.submission(list_name, entries), **kw)

    def submission(self, list_name: str, entries: Iterable[dict[str, Any]]) -> bytes:
        """A request body: the signed envelope of commitments and the values beside it."""
        return submission_envelope(list_name, entries, self.private_key).body()

    def revoke(self, entry_ids: Iterable[int], reason: str = "false positive", **kw: Any) -> Any:
        return self.post(
            "/api/v1/revocations", revocation_envelope(entry_ids, reason, self.private_key), **kw
        )

    def feed(self, after: int | str | None = None, limit: int = 1000) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        response = self.get("/api/v1/feed", **params)
        assert response.status_code == 200, response.content
        return json.loads(response.content)

    def feed_all(self, after: int | str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Every event after `after`, as a partner's client reads them (ConsortiumApi.feed):
        each entry_added event with the `value` and `salt` of the page's `values` (or
        `erased`), each opening checked against the leaf's commitment."""
        events: list[dict[str, Any]] = []
        while True:
            page = self.feed(after)
            openings = {item["index"]: item for item in page["values"]}
            added = [event for event in page["events"] if event["type"] == "entry_added"]
            assert [event["index"] for event in added] == [i["index"] for i in page["values"]]
            for event in added:
                opening = openings[event["index"]]
                if not opening.get("erased"):
                    commitment_check(
                        event["algorithm"], opening["value"], opening["salt"], event["commitment"]
                    )
                event.update({k: v for k, v in opening.items() if k != "index"})
            events += page["events"]
            after = page["next"]
            if not page["has_more"]:
                return events, after


def partner_client(
    name: str | None = None, scopes: Iterable[str] = ALL_SCOPES, **partner_fields: Any
) -> PartnerClient:
    partner = PartnerFactory(**({"name": name} if name else {}), **partner_fields)
    _, api_key = services.apikey_create(partner=partner, scopes=scopes, actor=ADMIN)
    private_key = key_generate()
    signing_key = services.signing_key_register(
        partner=partner, public_key=public_key_pem(private_key.public_key()), actor=ADMIN
    )
    return PartnerClient(partner, api_key, private_key, signing_key)


@pytest.fixture
def make_partner(db: None) -> Callable[..., PartnerClient]:
    return partner_client


@pytest.fixture
def alice(db: None) -> PartnerClient:
    return partner_client("alice")


@pytest.fixture
def bob(db: None) -> PartnerClient:
    return partner_client("bob")


@pytest.fixture
def shared_list(alice: PartnerClient) -> HashList:
    """A list every active partner sees and may submit to, owned by alice."""
    return HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)


def store_counts() -> dict[str, int]:
    """What a refused request must not change: the log and every table of shared data."""
    from audit.models import LogEvent, LogHead
    from hashes.models import Entry, EntryVariant, Revocation, Submission

    return {
        "log events": LogEvent.objects.count(),
        "log size": LogHead.objects.values_list("size", flat=True).first() or 0,
        "entries": Entry.objects.count(),
        "variants": EntryVariant.objects.count(),
        "revoked entries": Entry.objects.filter(status=Entry.Status.REVOKED).count(),
        "submissions": Submission.objects.count(),
        "revocations": Revocation.objects.count(),
    }


def assert_refusal_audited(*, action: str, status: int, slug: str, partner: Partner) -> None:
    """The latest access event records this refusal, with its problem type."""
    from audit.models import AccessEvent

    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.action, event.status, event.partner) == (action, status, partner)
    assert event.detail["problem"] == slug


def staff_login(client: Client, user: Any) -> None:
    """Log `user` in as the admin's login does after a password and a TOTP code: a session
    verified by the user's TOTP device (made here if it has none)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user).first() or TOTPDevice.objects.create(
        user=user, name="authenticator", confirmed=True
    )
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def problem(response: Any) -> str:
    """The stable slug of a problem+json response."""
    assert response["Content-Type"] == "application/problem+json", response.content
    return json.loads(response.content)["type"].removeprefix("urn:consortium:problem:")


@pytest.fixture(autouse=True)
def _fresh_match_index() -> None:
    """Each test's database starts over, so the process's match index must too."""
    from hashes.match_index import match_indexes

    match_indexes.reset()


@pytest.fixture(autouse=True)
def _rate_limits_off(settings: Any) -> None:
    """Rate-limit counters live in Redis: each test starts with none. Limits are off unless a
    test sets them (tests/test_rate_limits.py): tests send requests faster than any client
    would, and a window ending mid-test would make their outcome depend on time."""
    from consortium.throttling import penalties_clear, rate_limit_storage

    rate_limit_storage(settings.RATE_LIMIT_STORAGE_URL).reset()
    penalties_clear()
    settings.RATE_LIMITS = {
        subject: dict.fromkeys(rates) for subject, rates in settings.RATE_LIMITS.items()
    }


@pytest.fixture(autouse=True)
def _partner_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `consortium` command's user directories (config, trusted state, mirror, submit
    journals) are the test's own, and no CONSORTIUM_* setting of the machine leaks in."""
    for kind in ("CONFIG", "DATA", "CACHE", "STATE"):
        monkeypatch.setenv(f"XDG_{kind}_HOME", str(tmp_path / "home" / kind.lower()))
    for variable in [v for v in os.environ if v.startswith("CONSORTIUM_")]:
        monkeypatch.delenv(variable)


@pytest.fixture(autouse=True)
def _log_key_file(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The log key of the test session, made on first use outside the checkout."""
    settings.LOG_KEY_FILE = tmp_path_factory.getbasetemp() / "log.key"


def log_events_append(count: int, *, list_id: int | None = None) -> None:
    """Append `count` events straight to the log (what a burst of writes would), in one
    transaction: entry_added events of `list_id`, or signing-key events if None."""
    from django.db import transaction

    from audit.services import EventDraft, log_append

    event_type = "signing_key_registered" if list_id is None else "entry_added"
    drafts = [
        EventDraft(event_type, {"n": secrets.token_hex(16)}, hash_list_id=list_id)
        for _ in range(count)
    ]
    with transaction.atomic():
        log_append(drafts=drafts)


@pytest.fixture
def browser(live_server: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless chromium on the live server (tests/browser.py); fails, not skips, when
    chromium is not installed."""
    from tests.browser import browser_open

    opened = browser_open(live_server.url, request.node.name)
    try:
        yield opened
    finally:
        opened.driver.quit()


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run in this process when queued, as the quick start runs them."""
    from consortium.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False
