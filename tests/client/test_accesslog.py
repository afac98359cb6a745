import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortium_client import merkle
from consortium_client.accesslog import (
    AccessLogError,
    access_event_encode,
    access_period_root,
    access_period_verify,
)

EVENT = {
    "id": 7,
    "time": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    "partner": "alice",
    "key_prefix": "ck_ab12",
    "user": None,
    "actor": "partner:alice",
    "action": "feed.read",
    "target": "after=3",
    "records": 12,
    "status": 200,
    "client_ip": "192.0.2.1",
    "detail": {"path": "/api/v1/feed", "method": "GET"},
}

text = st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
times = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 (hypothesis adds the zone)
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
)


@st.composite
def events(draw):
    return {
        "id": draw(st.integers(1, 2**62)),
        "time": draw(times),
        "partner": draw(st.none() | text),
        "key_prefix": draw(text),
        "user": draw(st.none() | text),
        "actor": draw(text),
        "action": draw(text),
        "target": draw(text),
        "records": draw(st.integers(0, 2**31)),
        "status": draw(st.integers(100, 599)),
        "client_ip": draw(st.none() | st.sampled_from(["192.0.2.1", "2001:db8::1"])),
        "detail": draw(st.dictionaries(text, json_values, max_size=4)),
    }


@st.composite
def periods(draw):
    """Events with increasing ids in (after_id, last_id], and the seal of them."""
    after_id = draw(st.integers(0, 1000))
    ids = sorted(draw(st.sets(st.integers(after_id + 1, after_id + 200), max_size=12)))
    last_id = draw(st.integers(max(ids, default=after_id + 1), after_id + 201))
    drawn = [{**draw(events()), "id": event_id} for event_id in ids]
    sealed = {
        "type": "access_period_sealed",
        "period": draw(st.integers(1, 100)),
        "after_id": after_id,
        "last_id": last_id,
        "count": len(drawn),
        "root": access_period_root(access_event_encode(event) for event in drawn),
    }
    return drawn, sealed


def test_encoding_is_canonical_json_of_every_column():
    assert access_event_encode(EVENT) == (
        b'{"action":"feed.read","actor":"partner:alice","client_ip":"192.0.2.1",'
        b'"detail":{"method":"GET","path":"/api/v1/feed"},"id":7,"key_prefix":"ck_ab12",'
        b'"partner":"alice","records":12,"status":200,"target":"after=3",'
        b'"time":"2026-01-02T03:04:05.000006Z","user":null,"v":1}'
    )


def test_period_root_is_the_rfc9162_tree_over_the_encodings():
    encodings = [access_event_encode({**EVENT, "id": n}) for n in (1, 2, 3)]
    leaves = [hashlib.sha256(b"\x00" + encoding).digest() for encoding in encodings]
    left = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    expected = hashlib.sha256(b"\x01" + left + leaves[2]).digest()
    assert access_period_root(encodings) == expected.hex()
    assert access_period_root([]) == hashlib.sha256(b"").hexdigest()


@given(events())
def test_encoding_survives_a_json_round_trip_and_any_time_zone(event):
    encoding = access_event_encode(event)
    assert encoding.isascii()
    assert access_event_encode(json.loads(encoding)) == encoding
    elsewhere = event["time"].astimezone(timezone(timedelta(hours=-7)))
    assert access_event_encode({**event, "time": elsewhere.isoformat()}) == encoding


@given(events(), st.sampled_from(sorted(EVENT)), st.data())
def test_changing_any_column_changes_the_encoding(event, name, data):
    changed = {
        "id": event["id"] + 1,
        "time": event["time"] + timedelta(microseconds=1),
        "records": event["records"] + 1,
        "status": event["status"] + 1,
        "detail": {**event["detail"], "x" * 13: 1},
        "partner": None if event["partner"] else "p",
        "user": None if event["user"] else "u",
        "client_ip": None if event["client_ip"] else "192.0.2.9",
    }.get(name, data.draw(text.filter(lambda other: other != event[name])))
    assert access_event_encode({**event, name: changed}) != access_event_encode(event)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": datetime(2026, 1, 1)}, "no UTC offset"),  # noqa: DTZ001
        ({"time": "yesterday"}, "not ISO 8601"),
        ({"id": True}, "id must be"),
        ({"records": -1}, "records must be"),
        ({"status": "200"}, "status must be"),
        ({"actor": None}, "actor must be text"),
        ({"partner": 3}, "partner must be text or null"),
        ({"detail": []}, "detail must be a JSON object"),
        ({"detail": {"x": float("nan")}}, "not canonical JSON"),
        ({"extra": 1}, "unknown ['extra']"),
        ({"v": 2}, "version 2 is not 1"),
    ],
)
def test_a_malformed_event_is_refused(change, message):
    with pytest.raises(AccessLogError, match=message.replace("[", r"\[").replace("]", r"\]")):
        access_event_encode({**EVENT, **change})


def test_a_missing_column_is_refused():
    event = dict(EVENT)
    del event["client_ip"]
    with pytest.raises(AccessLogError, match="missing"):
        access_event_encode(event)


@given(periods())
def test_a_sealed_period_verifies(period):
    drawn, sealed = period
    access_period_verify(drawn, sealed)


@given(periods(), st.data())
def test_an_event_altered_after_sealing_fails(period, data):
    drawn, sealed = period
    if not drawn:
        return
    position = data.draw(st.integers(0, len(drawn) - 1))
    altered = [dict(event) for event in drawn]
    altered[position]["records"] += 1
    with pytest.raises(AccessLogError, match="do not hash to the sealed root"):
        access_period_verify(altered, sealed)


@given(periods(), st.data())
def test_an_event_removed_or_added_after_sealing_fails(period, data):
    drawn, sealed = period
    if drawn:
        position = data.draw(st.integers(0, len(drawn) - 1))
        with pytest.raises(AccessLogError):
            access_period_verify(drawn[:position] + drawn[position + 1 :], sealed)
    missing = sorted(
        set(range(sealed["after_id"] + 1, sealed["last_id"] + 1)) - {event["id"] for event in drawn}
    )
    if missing:
        added = {**data.draw(events()), "id": data.draw(st.sampled_from(missing))}
        with pytest.raises(AccessLogError):
            access_period_verify(sorted([*drawn, added], key=lambda e: e["id"]), sealed)


def test_events_out_of_order_or_outside_the_period_fail():
    drawn = [{**EVENT, "id": n} for n in (11, 12)]
    sealed = {"period": 2, "after_id": 10, "last_id": 12, "count": 2}
    sealed["root"] = access_period_root(access_event_encode(event) for event in drawn)
    access_period_verify(drawn, sealed)
    with pytest.raises(AccessLogError, match="event 11 comes after 12"):
        access_period_verify(drawn[::-1], sealed)
    with pytest.raises(AccessLogError, match="event 10 is not after 10"):
        access_period_verify([{**EVENT, "id": 10}], sealed)
    with pytest.raises(AccessLogError, match="event 13 is past its last id 12"):
        access_period_verify([*drawn, {**EVENT, "id": 13}], sealed)
    with pytest.raises(AccessLogError, match="2 events, the seal counts 3"):
        access_period_verify(drawn, {**sealed, "count": 3})
    with pytest.raises(AccessLogError, match="not access_period_sealed"):
        access_period_verify(drawn, {**sealed, "type": "entry_added"})


def test_one_event_can_be_proved_in_its_period():
    encodings = [access_event_encode({**EVENT, "id": n}) for n in range(1, 6)]
    hashes = [merkle.leaf_hash(encoding) for encoding in encodings]
    proof = merkle.inclusion_proof(3, 5, merkle.leaves_subtree_hash(hashes))
    root = bytes.fromhex(access_period_root(encodings))
    merkle.inclusion_verify(3, 5, hashes[3], proof, root)
