"""Access-log periods: the canonical bytes of an access event and the digest of a period.

At a fixed interval the server seals the access events of a closed period of ids and appends
one `access_period_sealed` log event holding the period's Merkle root. An auditor who holds
the period's events (from `GET /api/v1/audit/events?after_id=&last_id=` or from the
`access_period_export` command) recomputes the root here and compares it with the leaf: an
event altered, added or removed after sealing changes the root, and the leaf itself is bound
into the log's signed checkpoints.

The encoding of one event is canonical JSON (sorted keys, no white space, ASCII only) of
every column, so any JSON library reads it, and the period root is the RFC 9162 Merkle tree
hash over the encodings in id order: the same tree as the log's, so an inclusion proof of one
event in its period can be made with `consortium_client.merkle`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from consortium_client import merkle
from consortium_client.leaves import ACCESS_PERIOD_SEALED

ACCESS_EVENT_VERSION = 1

# Every column of an access event, each required: a field a verifier did not hash is a
# field that could be changed unnoticed, so an unknown or missing one is refused.
INTEGER_FIELDS = ("id", "records", "status")
TEXT_FIELDS = ("key_prefix", "actor", "action", "target")
OPTIONAL_TEXT_FIELDS = ("partner", "user", "client_ip")
FIELDS = frozenset(("time", "detail", *INTEGER_FIELDS, *TEXT_FIELDS, *OPTIONAL_TEXT_FIELDS))
SEALED_FIELDS = ("period", "after_id", "last_id", "count", "root")


class AccessLogError(ValueError):
    """An access event that cannot be encoded, or a period that does not match its digest;
    the message names the first problem."""


def event_time(value: datetime | str) -> str:
    """The instant `value`, in UTC with microseconds: ``2026-01-02T03:04:05.000006Z``.

    An ISO 8601 string with any offset is accepted (the API renders times in its own way);
    the same instant always gives the same text. A time without an offset is refused.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise AccessLogError(f"time {value!r} is not ISO 8601") from None
    if not isinstance(value, datetime):
        raise AccessLogError("time must be a date-time")
    if value.utcoffset() is None:
        raise AccessLogError(f"time {value.isoformat()} has no UTC offset")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _integer(event: Mapping[str, Any], name: str) -> int:
    value = event[name]
    # bool is an int in Python, never in an access event.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AccessLogError(f"{name} must be a non-negative integer, not {value!r}")
    return value


def _text(event: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = event[name]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise AccessLogError(f"{name} must be text{' or null' if optional else ''}")
    return value


def access_event_encode(event: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one access event (a mapping of exactly `FIELDS`).

    `time` is a timezone-aware datetime or ISO 8601 text; `partner` and `user` are names or
    None; `detail` is a JSON object; `v`, if present, must be `ACCESS_EVENT_VERSION`. Equal
    events give equal bytes whatever their key order or time zone, and `json.loads` of the
    bytes encodes to the same bytes again (so an exported line verifies as it is read).
    """
    # A decoded encoding carries its version: accepted if it is this one.
    if "v" in event and event["v"] != ACCESS_EVENT_VERSION:
        raise AccessLogError(f"access event version {event['v']!r} is not {ACCESS_EVENT_VERSION}")
    missing, unknown = FIELDS - event.keys(), event.keys() - FIELDS - {"v"}
    if missing or unknown:
        problem = f"missing {sorted(missing)}" if missing else f"unknown {sorted(unknown)}"
        raise AccessLogError(f"access event fields: {problem}")
    detail = event["detail"]
    if not isinstance(detail, dict):
        raise AccessLogError("detail must be a JSON object")
    document: dict[str, Any] = {
        "v": ACCESS_EVENT_VERSION,
        "time": event_time(event["time"]),
        "detail": detail,
    }
    for name in INTEGER_FIELDS:
        document[name] = _integer(event, name)
    for name in TEXT_FIELDS:
        document[name] = _text(event, name)
    for name in OPTIONAL_TEXT_FIELDS:
        document[name] = _text(event, name, optional=True)
    try:
        text = json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise AccessLogError(f"detail is not canonical JSON: {exc}") from None
    return text.encode("ascii")


def access_period_root(encodings: Iterable[bytes]) -> str:
    """The period digest: hex RFC 9162 Merkle tree hash over `encodings`, in id order.

    The empty period (every id in its range rolled back) has the root of the empty tree.
    """
    return merkle.root([merkle.leaf_hash(encoding) for encoding in encodings]).hex()


def access_period_digest(events: Iterable[Mapping[str, Any]]) -> tuple[int, str]:
    """How many `events` there are and their period root: what a seal states of them.

    Streams `events` (in id order), holding 32 bytes per event."""
    hashes = [merkle.leaf_hash(access_event_encode(event)) for event in events]
    return len(hashes), merkle.root(hashes).hex()


def access_period_verify(events: Iterable[Mapping[str, Any]], sealed: Mapping[str, Any]) -> None:
    """Raise `AccessLogError` unless `events` are exactly the events `sealed` commits to.

    `sealed` holds the fields of an `access_period_sealed` leaf (the whole decoded leaf will
    do): `period`, `after_id` (exclusive), `last_id` (inclusive), `count` and `root`. The
    events must be in increasing id order, each id inside the period; their number and the
    Merkle root of their encodings must match. Returns nothing: a period that verifies.
    """
    if "type" in sealed and sealed["type"] != ACCESS_PERIOD_SEALED:
        raise AccessLogError(f"leaf type {sealed['type']!r} is not {ACCESS_PERIOD_SEALED}")
    missing = [name for name in SEALED_FIELDS if name not in sealed]
    if missing:
        raise AccessLogError(f"sealed period lacks {missing}")
    after_id, last_id = _integer(sealed, "after_id"), _integer(sealed, "last_id")
    period = sealed["period"]
    hashes: list[bytes] = []
    previous = after_id
    for event in events:
        encoding = access_event_encode(event)
        event_id = event["id"]
        if event_id <= after_id:
            raise AccessLogError(f"period {period}: event {event_id} is not after {after_id}")
        if event_id <= previous:
            raise AccessLogError(f"period {period}: event {event_id} comes after {previous}")
        if event_id > last_id:
            raise AccessLogError(f"period {period}: event {event_id} is past its last id {last_id}")
        hashes.append(merkle.leaf_hash(encoding))
        previous = event_id
    if len(hashes) != sealed["count"]:
        raise AccessLogError(
            f"period {period}: {len(hashes)} events, the seal counts {sealed['count']}"
        )
    if merkle.root(hashes).hex() != sealed["root"]:
        raise AccessLogError(f"period {period}: the events do not hash to the sealed root")
