"""The fast readings log_verify makes agree with the slow ones they replace: the canonical
check of a leaf by msgspec with the stdlib's, the events read by plain SQL with the ORM's."""

from __future__ import annotations

import json
import secrets
from typing import Any

import msgspec
import pytest
from django.db import transaction
from hypothesis import example, given
from hypothesis import strategies as st

from audit.log_verify import _leaf_canonical, _Verifier
from audit.services import EventDraft, log_append
from consortium_client import leaves


def _stdlib_canonical(raw: bytes) -> bool:
    try:
        document = json.loads(raw)
    except ValueError:
        return False
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return isinstance(document, dict) and encoded.encode() == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
@example({"del": "\x7f"})
@example({"\x7f": None})
@example({"float": 1e16})
@example({"big": 2**70, "e": "\u00e9"})
def test_a_leaf_the_fast_check_calls_canonical_is_canonical_by_the_stdlib(
    document: dict[str, Any],
) -> None:
    for raw in (
        json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(),
        json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        msgspec.json.encode(document, order="sorted"),
        json.dumps(document).encode(),
    ):
        fast = _leaf_canonical(raw)
        if fast is not None:
            assert _stdlib_canonical(raw), raw
            assert fast == json.loads(raw)


def test_the_fast_check_reads_the_leaves_the_server_writes() -> None:
    raw = leaves.leaf_encode(
        index=7,
        event_type=leaves.ENTRY_ADDED,
        time="2026-01-01T00:00:00.000001Z",
        nonce=secrets.token_hex(16),
        fields={"labels": ["a\x7e", "b\n"], "list": "l", "quality": 100, "submission": None},
    )

    assert _leaf_canonical(raw) == json.loads(raw)


@pytest.mark.django_db
def test_the_events_read_by_sql_are_the_events_read_by_the_orm() -> None:
    with transaction.atomic():
        log_append(
            drafts=[
                EventDraft(leaves.PARTNER_SUSPENDED, {"n": secrets.token_hex(16)})
                for _ in range(23)
            ]
        )
    verifier = _Verifier(chunk=5, progress=False)

    by_sql = [row for page in verifier._event_chunks() for row in page]
    by_orm = [row for page in verifier._event_chunks_orm() for row in page]

    assert len(by_sql) == 23
    assert [(*row[:5], bytes(row[5])) for row in by_sql] == [
        (*row[:5], bytes(row[5])) for row in by_orm
    ]
