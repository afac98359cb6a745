"""Log leaves: the exact bytes each log event is hashed from.

A leaf is canonical JSON (sorted keys, no white space, ASCII only), so that a partner can
parse it with any JSON library and the server can serve it verbatim: verifiers hash what
they download, never a re-serialisation.
"""

from __future__ import annotations

import json
from typing import Any

LEAF_VERSION = 1

ENTRY_ADDED = "entry_added"
ENTRY_REVOKED = "entry_revoked"
SIGNING_KEY_REGISTERED = "signing_key_registered"
SIGNING_KEY_REVOKED = "signing_key_revoked"
PARTNER_SUSPENDED = "partner_suspended"
PARTNER_REACTIVATED = "partner_reactivated"
ENTRY_ERASED = "entry_erased"
ACCESS_PERIOD_SEALED = "access_period_sealed"

EVENT_TYPES = (
    ENTRY_ADDED,
    ENTRY_REVOKED,
    SIGNING_KEY_REGISTERED,
    SIGNING_KEY_REVOKED,
    PARTNER_SUSPENDED,
    PARTNER_REACTIVATED,
    ENTRY_ERASED,
    ACCESS_PERIOD_SEALED,
)


def leaf_encode(*, index: int, event_type: str, time: str, fields: dict[str, Any]) -> bytes:
    """Encode one event. `fields` must not use the reserved names v, index, type, time."""
    reserved = {"v", "index", "type", "time"} & fields.keys()
    if reserved:
        raise ValueError(f"reserved leaf fields: {sorted(reserved)}")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    document = {"v": LEAF_VERSION, "index": index, "type": event_type, "time": time, **fields}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf_decode(leaf: bytes) -> dict[str, Any]:
    document = json.loads(leaf)
    if not isinstance(document, dict) or document.get("v") != LEAF_VERSION:
        raise ValueError("not a version 1 leaf")
    return document
