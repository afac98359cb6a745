"""Log leaves: the exact bytes each log event is hashed from.

A leaf is canonical JSON (sorted keys, no white space, ASCII only), so that a partner can
parse it with any JSON library and the server can serve it verbatim: verifiers hash what
they download, never a re-serialisation.

Version 2 (the first version any checkpoint covers) adds `nonce`: 128 random bits chosen by
the server for each event. Every partner can read the hash of every leaf in the level-0
tiles, including leaves of events it may not see; with the nonce, such a hash says nothing
about the leaf behind it, whatever else the leaf holds. Hash values never appear in a leaf:
an `entry_added` leaf holds a salted commitment to its value (`consortium_client.commitments`),
and the value and salt travel beside it, so that an erased value leaves every leaf intact.
"""

from __future__ import annotations

import json
import re
from typing import Any

LEAF_VERSION = 2
NONCE_BYTES = 16
NONCE_PATTERN = re.compile(rf"[0-9a-f]{{{2 * NONCE_BYTES}}}")
RESERVED_FIELDS = frozenset({"v", "index", "type", "time", "nonce"})

ENTRY_ADDED = "entry_added"
ENTRY_REVOKED = "entry_revoked"
SIGNING_KEY_REGISTERED = "signing_key_registered"
SIGNING_KEY_REVOKED = "signing_key_revoked"
PARTNER_SUSPENDED = "partner_suspended"
PARTNER_REACTIVATED = "partner_reactivated"
ENTRY_ERASED = "entry_erased"
ACCESS_PERIOD_SEALED = "access_period_sealed"
ENTRY_FEEDBACK = "entry_feedback"
ENTRY_CONFIRMED = "entry_confirmed"
ENTRY_QUARANTINED = "entry_quarantined"
ENTRY_QUARANTINE_RESOLVED = "entry_quarantine_resolved"

EVENT_TYPES = (
    ENTRY_ADDED,
    ENTRY_REVOKED,
    SIGNING_KEY_REGISTERED,
    SIGNING_KEY_REVOKED,
    PARTNER_SUSPENDED,
    PARTNER_REACTIVATED,
    ENTRY_ERASED,
    ACCESS_PERIOD_SEALED,
    ENTRY_FEEDBACK,
    ENTRY_CONFIRMED,
    ENTRY_QUARANTINED,
    ENTRY_QUARANTINE_RESOLVED,
)
# Events about one entry that change whether it matches, besides ending it: each names the
# entry (`entry`) and its list (`list`), like a tombstone.
ENTRY_HOLD_TYPES = (ENTRY_CONFIRMED, ENTRY_QUARANTINED, ENTRY_QUARANTINE_RESOLVED)


def leaf_encode(
    *, index: int, event_type: str, time: str, nonce: str, fields: dict[str, Any]
) -> bytes:
    """Encode one event. `nonce` is 32 lowercase hex characters, fresh for every event;
    `fields` must not use the reserved names v, index, type, time, nonce."""
    reserved = RESERVED_FIELDS & fields.keys()
    if reserved:
        raise ValueError(f"reserved leaf fields: {sorted(reserved)}")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce):
        raise ValueError(f"a leaf nonce is {2 * NONCE_BYTES} lowercase hex characters")
    document = {
        "v": LEAF_VERSION,
        "index": index,
        "type": event_type,
        "time": time,
        "nonce": nonce,
        **fields,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf_decode(leaf: bytes) -> dict[str, Any]:
    """The fields of a version 2 leaf; ValueError for anything else (older versions were
    rewritten before the first checkpoint, so no verifiable leaf has another version)."""
    document = json.loads(leaf)
    if not isinstance(document, dict) or document.get("v") != LEAF_VERSION:
        raise ValueError(f"not a version {LEAF_VERSION} leaf")
    nonce = document.get("nonce")
    if not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce):
        raise ValueError("a version 2 leaf carries a 32-hex-character nonce")
    return document
