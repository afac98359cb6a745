"""The client library's strict JSON parser: everything plain JSON writes of finite,
duplicate-free data is read back unchanged; everything two verifiers could read differently
is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consortium_client.keys import key_generate
from consortium_client.payloads import revocation_envelope, submission_envelope
from consortium_client.strictjson import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    StrictJsonError,
    strict_json_dumps,
    strict_json_loads,
)

# Lone surrogates are not text (hypothesis leaves them out of st.text() by default).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
objects = st.dictionaries(st.text(max_size=10), documents, min_size=1, max_size=5)
layouts = st.sampled_from(
    [
        {},
        {"separators": (",", ":")},
        {"indent": 2},
        {"ensure_ascii": False},
        {"ensure_ascii": False, "indent": "\t", "sort_keys": True},
    ]
)
surrogates = st.integers(0xD800, 0xDFFF).map(chr)


@given(documents, layouts)
def test_accepts_what_json_dumps_writes(document: Any, layout: dict[str, Any]) -> None:
    raw = json.dumps(document, **layout).encode("utf-8")

    assert strict_json_loads(raw) == document


@given(documents)
def test_strict_dumps_round_trips(document: Any) -> None:
    assert strict_json_loads(strict_json_dumps(document)) == document


@given(objects, st.data())
def test_refuses_a_duplicate_key_at_any_depth(
    document: dict[str, Any], data: st.DataObject
) -> None:
    # Wrap the object a few levels down, then repeat one of its keys in the text.
    depth = data.draw(st.integers(0, 5))
    key = data.draw(st.sampled_from(sorted(document)))
    inner = json.dumps(document)
    duplicated = inner[:-1] + ", " + json.dumps(key) + ": " + json.dumps(document[key]) + "}"
    raw = duplicated
    for _ in range(depth):
        raw = data.draw(st.sampled_from(["[%s]", '{"k": %s}', '[1, {"a": %s}]'])) % raw

    with pytest.raises(StrictJsonError, match="twice"):
        strict_json_loads(raw.encode())


@pytest.mark.parametrize(
    "raw",
    [b"NaN", b"Infinity", b"-Infinity", b'{"q": NaN}', b"[1, Infinity]", b'{"a": [-Infinity]}'],
)
def test_refuses_non_finite_constants(raw: bytes) -> None:
    with pytest.raises(StrictJsonError, match="not a JSON number"):
        strict_json_loads(raw)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e309", "123456789e999"])
def test_refuses_numbers_that_overflow_to_infinity(number: str) -> None:
    with pytest.raises(StrictJsonError, match="out of range"):
        strict_json_loads(f'{{"n": {number}}}'.encode())


@given(
    (
        st.integers(min_value=MAX_SAFE_INTEGER + 1) | st.integers(max_value=-MAX_SAFE_INTEGER - 1)
    ).map(str)
)
@example(str(MAX_SAFE_INTEGER + 1))
@example(str(-MAX_SAFE_INTEGER - 1))
@example("1" * 5000)  # past Python's own int() digit limit
def test_refuses_integers_a_double_cannot_hold(number: str) -> None:
    with pytest.raises(StrictJsonError, match="beyond"):
        strict_json_loads(f'{{"n": {number}}}'.encode())


@pytest.mark.parametrize("number", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0])
def test_accepts_the_largest_safe_integers(number: int) -> None:
    assert strict_json_loads(b"[%d]" % number) == [number]


@given(documents, st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]))
def test_refuses_utf16_and_utf32(document: Any, encoding: str) -> None:
    with pytest.raises(StrictJsonError):
        strict_json_loads(json.dumps(document).encode(encoding))


@given(documents)
def test_refuses_a_byte_order_mark(document: Any) -> None:
    with pytest.raises(StrictJsonError, match="byte order mark"):
        strict_json_loads(b"\xef\xbb\xbf" + json.dumps(document).encode())


@given(objects, surrogates, st.booleans())
def test_refuses_a_lone_surrogate_escape(
    document: dict[str, Any], surrogate: str, in_key: bool
) -> None:
    tainted = {"x" + surrogate: 1} if in_key else {"note": surrogate + "x"}
    # json.dumps writes the surrogate as a \udXXX escape: valid JSON syntax, not valid text.
    raw = json.dumps({"outer": [document, tainted]}).encode()

    with pytest.raises(StrictJsonError, match="lone surrogate") as refused:
        strict_json_loads(raw)
    # A pointer is rendered into UTF-8 problem JSON: the surrogate is spelt as its escape.
    escaped = f"\\u{ord(surrogate):04x}"
    assert refused.value.pointer == ("/outer/1/x" + escaped if in_key else "/outer/1/note")
    refused.value.pointer.encode("utf-8")


def test_accepts_a_surrogate_pair_escape() -> None:
    assert strict_json_loads(b'["\\ud83d\\ude00"]') == ["\U0001f600"]


@pytest.mark.parametrize(
    "raw",
    [
        b'["\xed\xa0\x80"]',  # a surrogate encoded as UTF-8 (CESU-8)
        b'["\xc0\xaf"]',  # an overlong '/'
        b'["caf\xe9"]',  # Latin-1
        b'["\xff"]',
        b'["\xe2\x82"]',  # truncated sequence
    ],
)
def test_refuses_invalid_utf8(raw: bytes) -> None:
    with pytest.raises(StrictJsonError, match="not UTF-8"):
        strict_json_loads(raw)


@given(st.binary(min_size=1))
def test_any_bytes_are_parsed_or_refused_with_the_one_error(raw: bytes) -> None:
    try:
        strict_json_loads(raw)
    except StrictJsonError:
        pass


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 100_000])
@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ('{"a":', "}")])
def test_refuses_nesting_past_the_limit(depth: int, opening: str, closing: str) -> None:
    raw = (opening * depth + "1" + closing * depth).encode()

    with pytest.raises(StrictJsonError, match="nesting"):
        strict_json_loads(raw)


def test_accepts_nesting_at_the_limit() -> None:
    raw = b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH

    assert strict_json_loads(raw) is not None


def test_refuses_text_given_as_str() -> None:
    with pytest.raises(StrictJsonError, match="bytes"):
        strict_json_loads('{"a": 1}')  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "document",
    [
        {"note": float("nan")},
        {"note": float("inf")},
        {"note": "\ud800"},
        {1: "a", "1": "b"},
        {"n": MAX_SAFE_INTEGER + 1},
    ],
    ids=["nan", "infinity", "lone-surrogate", "keys-colliding-as-text", "huge-integer"],
)
def test_strict_dumps_refuses_what_the_parser_would(document: dict[Any, Any]) -> None:
    with pytest.raises(StrictJsonError):
        strict_json_dumps(document)


@pytest.mark.parametrize(
    "entry",
    [
        {"algorithm": "pdq", "value": "0" * 64, "note": "\udc00"},
        {"algorithm": "pdq", "value": "0" * 64, "quality": float("nan")},
    ],
    ids=["lone-surrogate-note", "nan-quality"],
)
def test_client_builders_only_sign_strict_payloads(entry: dict[str, Any]) -> None:
    key = key_generate()
    with pytest.raises(StrictJsonError):
        submission_envelope("ncii", [entry], key)
    with pytest.raises(StrictJsonError):
        revocation_envelope([MAX_SAFE_INTEGER + 1], "mistake", key)
