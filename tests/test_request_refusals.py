"""Bad requests (bodies, forms, query parameters, headers) are refused with problem+json, a
stable type and an access event, and store nothing; never a 500 or Django's HTML page."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

import pytest

from audit.models import AccessEvent
from partners import services
from tests.conftest import (
    ADMIN,
    PartnerClient,
    assert_refusal_audited,
    problem,
    store_counts,
)
from tests.test_matching import encode, picture

BODY_CAP = 64 * 1024
FIELDS_CAP = 1000  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS default, which the server keeps

Send = Callable[[PartnerClient], Any]


def _auth(client: PartnerClient) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {client.api_key}"}


def _json(path: str, body: bytes, content_type: str = "application/json") -> Send:
    def send(alice: PartnerClient) -> Any:
        return alice.http.post(path, body, content_type=content_type, **_auth(alice))

    return send


def _form(path: str, fields: Callable[[], dict[str, Any]]) -> Send:
    def send(alice: PartnerClient) -> Any:
        return alice.http.post(path, fields(), **_auth(alice))

    return send


def _query(path: str, **params: str) -> Send:
    def send(alice: PartnerClient) -> Any:
        return alice.get(path, **params)

    return send


def _image() -> io.BytesIO:
    return io.BytesIO(encode(picture(seed=3, size=64)))


def _many_fields() -> dict[str, Any]:
    return {"image": _image(), **{f"f{n}": "x" for n in range(FIELDS_CAP + 1)}}


def _utf16_with_charset(alice: PartnerClient) -> Any:
    # Given text, the test client encodes it in the charset named; DRF's own parser obeyed it.
    body = json.dumps({"hashes": [{"algorithm": "md5", "value": "0" * 32}]})
    return alice.http.post(
        "/api/v1/match", body, content_type="application/json; charset=utf-16", **_auth(alice)
    )


def _short_content_length(alice: PartnerClient) -> Any:
    body = json.dumps({"hashes": [{"algorithm": "md5", "value": "0" * 32}]}).encode()
    return alice.http.post(
        "/api/v1/match",
        body,
        content_type="application/json",
        CONTENT_LENGTH=str(len(body) // 2),
        **_auth(alice),
    )


def _accepting(accept: str) -> Send:
    def send(alice: PartnerClient) -> Any:
        body = b'{"hashes": [' + MD5 + b"]}"
        return alice.http.post(
            "/api/v1/match",
            body,
            content_type="application/json",
            HTTP_ACCEPT=accept,
            **_auth(alice),
        )

    return send


def _authorization(value: str) -> Send:
    def send(alice: PartnerClient) -> Any:
        return alice.http.get("/api/v1/me", HTTP_AUTHORIZATION=value)

    return send


MD5 = b'{"algorithm": "md5", "value": "' + b"0" * 32 + b'"}'

# name: (request, action of its access event, status, problem type, refused as alice?)
REFUSALS: dict[str, tuple[Send, str, int, str, bool]] = {
    # JSON bodies to /match go through the strict parser too.
    "match: nested arrays": (
        _json("/api/v1/match", b"[" * 50_000),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: nested objects": (
        _json("/api/v1/match", b'{"hashes": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: duplicate key": (
        _json("/api/v1/match", b'{"hashes": [], "hashes": [' + MD5 + b"]}"),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: NaN": (
        _json("/api/v1/match", b'{"hashes": NaN}'),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: lone surrogate": (
        _json("/api/v1/match", b'{"hashes": [{"algorithm": "md5", "value": "\\udc00"}]}'),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: huge integer": (
        _json("/api/v1/match", b'{"hashes": ' + b"9" * 5000 + b"}"),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: UTF-16 with a charset": (_utf16_with_charset, "match", 400, "malformed-request", True),
    "match: UTF-16": (
        _json("/api/v1/match", ('{"hashes": [' + MD5.decode() + "]}").encode("utf-16")),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: BOM": (
        _json("/api/v1/match", b'\xef\xbb\xbf{"hashes": [' + MD5 + b"]}"),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: not UTF-8": (
        _json("/api/v1/match", b'{"hashes": "\xff"}'),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: empty body": (_json("/api/v1/match", b""), "match", 400, "malformed-request", True),
    "match: Content-Length shorter than the body": (
        _short_content_length,
        "match",
        400,
        "malformed-request",
        True,
    ),
    "match: JSON over the body cap": (
        _json("/api/v1/match", b'{"hashes": [' + b",".join([MD5] * (BODY_CAP // len(MD5))) + b"]}"),
        "match",
        413,
        "request-too-large",
        True,
    ),
    "match: unknown content type": (
        _json("/api/v1/match", b"hashes", "text/plain"),
        "match",
        415,
        "unsupported-media-type",
        True,
    ),
    "match: accepting only HTML": (_accepting("text/html"), "match", 406, "not-acceptable", True),
    # Forms: Django's caps raise SuspiciousOperation while DRF parses, inside the view.
    "match: two files": (
        _form("/api/v1/match", lambda: {"image": _image(), "other": _image()}),
        "match",
        400,
        "too-many-files",
        True,
    ),
    "match: two images in one field": (
        _form("/api/v1/match", lambda: {"image": [_image(), _image()]}),
        "match",
        400,
        "too-many-files",
        True,
    ),
    "match: more form fields than the cap": (
        _form("/api/v1/match", _many_fields),
        "match",
        400,
        "too-many-fields",
        True,
    ),
    "match: form over the body cap": (
        _form("/api/v1/match", lambda: {"image": _image(), "note": "x" * (BODY_CAP + 1)}),
        "match",
        413,
        "request-too-large",
        True,
    ),
    "match: multipart without a boundary": (
        _json("/api/v1/match", b"--x\r\n", "multipart/form-data"),
        "match",
        400,
        "malformed-request",
        True,
    ),
    "hashes: two files": (
        _form("/api/v1/hashes", lambda: {"image": _image(), "other": _image()}),
        "image.hash",
        400,
        "too-many-files",
        True,
    ),
    "hashes: more form fields than the cap": (
        _form("/api/v1/hashes", _many_fields),
        "image.hash",
        400,
        "too-many-fields",
        True,
    ),
    # Date-times PostgreSQL cannot take, or with no UTC equivalent.
    "audit: since year 1 at -23:59": (
        _query("/api/v1/audit/events", since="0001-01-01T00:00:00-23:59"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: until year 9999 at +23:59": (
        _query("/api/v1/audit/events", until="9999-12-31T23:59:59+23:59"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: since before year 1 in UTC": (
        _query("/api/v1/audit/events", since="0001-01-01T00:00:00+01:00"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: until after year 9999 in UTC": (
        _query("/api/v1/audit/events", until="9999-12-31T23:59:59-01:00"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: NUL in since": (
        _query("/api/v1/audit/events", since="2026-01-01T00:00:00Z\x00"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: NUL in partner": (
        _query("/api/v1/audit/events", partner="alice\x00"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: NaN cursor": (
        _query("/api/v1/audit/events", before="NaN"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: limit 1e3": (
        _query("/api/v1/audit/events", limit="1e3"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: fractional cursor": (
        _query("/api/v1/audit/events", before="1.5"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: exponent cursor": (
        _query("/api/v1/audit/events", before="1e3"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: negative cursor": (
        _query("/api/v1/audit/events", before="-1"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    "audit: padded limit": (
        _query("/api/v1/audit/events", limit=" 5"),
        "audit.read",
        400,
        "malformed-request",
        True,
    ),
    # One spelling per cursor: int() alone also reads these.
    "feed: Arabic-Indic digits": (
        _query("/api/v1/feed", after="١٢"),
        "feed.read",
        400,
        "invalid-cursor",
        True,
    ),
    "feed: digit separators": (
        _query("/api/v1/feed", after="1_000"),
        "feed.read",
        400,
        "invalid-cursor",
        True,
    ),
    "feed: padded cursor": (
        _query("/api/v1/feed", after=" 7 "),
        "feed.read",
        400,
        "invalid-cursor",
        True,
    ),
    "feed: 5000-digit cursor": (
        _query("/api/v1/feed", after="9" * 5000),
        "feed.read",
        400,
        "invalid-cursor",
        True,
    ),
    "feed: NUL cursor": (
        _query("/api/v1/feed", after="\x00"),
        "feed.read",
        400,
        "invalid-cursor",
        True,
    ),
    "feed: limit 1e3": (
        _query("/api/v1/feed", limit="1e3"),
        "feed.read",
        400,
        "malformed-request",
        True,
    ),
    # Keys that are not keys: refused like any unusable key, by no partner.
    "key with a NUL prefix": (
        _authorization("Bearer csk_" + "\x00" * 12 + "_secret"),
        "me.read",
        401,
        "invalid-api-key",
        False,
    ),
    "key beyond Latin-1": (
        _authorization("Bearer csk_\u0100\u0101cdefabcdef_secret"),
        "me.read",
        401,
        "invalid-api-key",
        False,
    ),
}


@pytest.mark.parametrize("case", REFUSALS, ids=str)
def test_bad_request_is_refused_with_a_problem_and_stores_nothing(
    alice: PartnerClient, shared_list, settings, case: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_CAP
    send, action, status, slug, as_alice = REFUSALS[case]
    before = store_counts()

    response = send(alice)

    assert response.status_code == status, response.content
    assert problem(response) == slug
    assert store_counts() == before
    assert_refusal_audited(
        action=action, status=status, slug=slug, partner=alice.partner if as_alice else None
    )


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"since": "0001-01-01T00:00:00-23:59"}, "since"),
        ({"until": "9999-12-31T23:59:59+23:59"}, "until"),
    ],
)
def test_audit_date_refusal_names_the_parameter(alice, params, parameter) -> None:
    response = alice.get("/api/v1/audit/events", **params)

    assert json.loads(response.content)["parameter"] == parameter


@pytest.mark.parametrize(
    "offset", [timedelta(hours=5, minutes=30), timedelta(hours=-15, minutes=-59)], ids=str
)
def test_audit_dates_with_offsets_still_filter(alice, offset) -> None:
    alice.get("/api/v1/me")
    newest = AccessEvent.objects.order_by("-id").first()
    assert newest is not None
    # The instant of the newest event, written with an offset.
    local = newest.time.replace(microsecond=0).astimezone(timezone(offset))

    response = alice.get("/api/v1/audit/events", since=local.isoformat(), action="me.read")

    assert response.status_code == 200, response.content
    assert [event["id"] for event in json.loads(response.content)["events"]] == [newest.pk]


def test_too_many_form_fields_outside_the_api_is_a_problem_too(client) -> None:
    fields = {f"f{n}": "x" for n in range(FIELDS_CAP + 1)}

    response = client.post("/admin/login/", fields)

    assert response.status_code == 400
    assert problem(response) == "too-many-fields"


def test_forwarded_address_that_is_not_an_address_is_unknown(alice, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    _, fenced = services.apikey_create(
        partner=alice.partner, scopes=("read",), actor=ADMIN, allowed_networks=["0.0.0.0/0"]
    )

    open_key = alice.http.get("/api/v1/me", HTTP_X_FORWARDED_FOR="garbage\x00", **_auth(alice))
    recorded = AccessEvent.objects.order_by("-id").first()
    fenced_key = alice.http.get(
        "/api/v1/me", HTTP_X_FORWARDED_FOR="garbage", HTTP_AUTHORIZATION=f"Bearer {fenced}"
    )

    assert open_key.status_code == 200, open_key.content
    assert recorded is not None
    assert recorded.client_ip is None
    assert problem(fenced_key) == "invalid-api-key"


def test_a_problem_quoting_a_lone_surrogate_still_renders_as_utf8() -> None:
    """A refusal may quote what a hostile client sent; it must never become a 500."""
    from consortium.errors import MalformedRequest, problem_json_response

    error = MalformedRequest("bad name '\ud800'", pointer="/a\udfff", names=["\ud83d"])

    response = problem_json_response(error)

    body = json.loads(response.content.decode("utf-8"))
    assert body["detail"] == "bad name '\\ud800'"
    assert body["pointer"] == "/a\\udfff"
    assert body["names"] == ["\\ud83d"]
