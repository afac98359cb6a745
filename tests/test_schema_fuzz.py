"""Generated requests against every operation in the OpenAPI schema (schemathesis).

Whatever a partner sends, valid by the schema or not, the server answers without a 5xx, and
every documented response has the documented shape. Past the schema, each operation also gets
its own shapes made hostile (NUL and lone surrogates in every string, nesting past any
stack, duplicate keys, NaN, UTF-16, forms past Django's caps, extreme query values): every
4xx must then be problem+json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import response_schema_conformance

from consortium.wsgi import application
from tests.conftest import PartnerClient

EXAMPLES_PER_OPERATION = 25
HOSTILE_EXAMPLES_PER_OPERATION = 15


@pytest.fixture
def api_schema(db: None) -> Iterator[schemathesis.BaseSchema]:
    # Called as a WSGI app, Django would close the test's connection at the end of each
    # request (the test client disconnects this handler for the same reason).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_never_fail_the_server(
    api_schema: schemathesis.BaseSchema, alice: PartnerClient, shared_list, mode
) -> None:
    headers = {"Authorization": f"Bearer {alice.api_key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def requests_for_operation(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance]
            )

        requests_for_operation()


# Shapes a partner can send that no schema describes: text PostgreSQL cannot store, JSON two
# parsers read differently, nesting deeper than a parser's stack, forms past Django's caps.
NUL_OR_SURROGATE = st.sampled_from(["\x00", "\ud800", "\udfff", "\udbff\x00"])
HOSTILE_PARAMETERS = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "9" * 5000,
        "-" + "9" * 30,
        "1e3",
        "NaN",
        "Infinity",
        "1_000",
        "\u0661\u0662",
        " 7 ",
        "0001-01-01T00:00:00-23:59",
        "9999-12-31T23:59:59+23:59",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-01-01T00:00:00Z\x00",
    ]
)


def _tainted(value: Any, taint: str) -> Any:
    """`value` with `taint` appended to every string in it, member names included."""
    if isinstance(value, str):
        return value + taint
    if isinstance(value, list):
        return [_tainted(item, taint) for item in value]
    if isinstance(value, dict):
        return {_tainted(key, taint): _tainted(item, taint) for key, item in value.items()}
    return value


def _with_duplicate_key(value: Any) -> bytes:
    text = json.dumps(value)
    if isinstance(value, dict) and value:
        key = next(iter(value))
        return (text[:-1] + ", " + json.dumps(key) + ": null}").encode()
    return b'{"a": 1, "a": 2}'


JSON_MANGLERS: dict[str, Callable[[Any, st.DataObject], bytes]] = {
    # json.dumps writes lone surrogates as \udXXX escapes: valid syntax, invalid text.
    "tainted strings": lambda body, data: json.dumps(
        _tainted(body, data.draw(NUL_OR_SURROGATE))
    ).encode(),
    "nested arrays": lambda body, data: b"[" * data.draw(st.integers(65, 50_000)) + b"]",
    "nested objects": lambda body, data: b'{"a":' * data.draw(st.integers(65, 5000)) + b"1}",
    "duplicate key": lambda body, data: _with_duplicate_key(body),
    "non-finite number": lambda body, data: (
        b'{"n": %b}' % data.draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400"]))
    ),
    "huge integer": lambda body, data: b'{"n": %b}' % (b"9" * data.draw(st.integers(17, 6000))),
    "other encoding": lambda body, data: json.dumps(body).encode(
        data.draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-8-sig"]))
    ),
}


def _multipart(parts: list[tuple[str, bytes, bool]]) -> tuple[bytes, str]:
    boundary = "consortium-fuzz-boundary"
    chunks = []
    for name, content, is_file in parts:
        filename = f'; filename="{name}.png"' if is_file else ""
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}'
        chunks.append(head.encode() + b"\r\n\r\n" + content + b"\r\n")
    return b"".join(
        chunks
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


MULTIPART_BODIES = st.sampled_from(
    [
        [("image", b"\x89PNG", True), ("other", b"\x89PNG", True)],
        [("image", b"\x89PNG", True), ("image", b"\x89PNG", True)],
        [("image", b"\x89PNG", True)] + [(f"f{n}", b"x", False) for n in range(1001)],
        [("image", b"\x89PNG", True), ("dihedral", b"\x00", False)],
    ]
)


def problem_json_for_client_errors(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """Every 4xx is RFC 9457 problem+json with a stable type, never an HTML page."""
    if 400 <= response.status_code < 500:
        headers = {name.lower(): values for name, values in response.headers.items()}
        assert headers["content-type"] == ["application/problem+json"], response.text
        assert json.loads(response.text)["type"].startswith("urn:consortium:problem:")


def _hostile_requests(operation: Any, headers: dict[str, str]) -> Callable[[], None]:
    """A hypothesis test sending `operation` its schema's shapes, made hostile."""
    media_types = {body.media_type for body in operation.body}
    parameters = [parameter.name for parameter in operation.query]
    checks = [not_a_server_error, problem_json_for_client_errors]

    @given(case=operation.as_strategy(), data=st.data())
    @settings(
        max_examples=HOSTILE_EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def hostile_requests(case: schemathesis.Case, data: st.DataObject) -> None:
        if "application/json" in media_types:
            mangle = data.draw(st.sampled_from(sorted(JSON_MANGLERS)))
            # An optional body (a PATCH's) may be drawn absent: mangle an empty object then.
            body = {} if isinstance(case.body, NotSet) else case.body
            case.body = JSON_MANGLERS[mangle](body, data)
            case.media_type = "application/json"
        elif "multipart/form-data" in media_types:
            case.body, case.media_type = _multipart(data.draw(MULTIPART_BODIES))
        case.query = {
            **(case.query or {}),
            **{name: data.draw(HOSTILE_PARAMETERS) for name in parameters},
        }
        case.call_and_validate(headers=headers, checks=checks)

    return hostile_requests


def test_hostile_shapes_get_problems_never_a_server_error(
    api_schema: schemathesis.BaseSchema, alice: PartnerClient, shared_list
) -> None:
    headers = {"Authorization": f"Bearer {alice.api_key}"}
    covered: set[str] = set()

    for result in api_schema.get_all_operations():
        operation = result.ok()
        if not list(operation.body) and not list(operation.query):
            continue
        covered.add(operation.label)
        _hostile_requests(operation, headers)()

    assert {"POST /api/v1/match", "GET /api/v1/audit/events", "POST /api/v1/hashes"} <= covered
