"""Building the signed payloads partners send: submissions and revocations."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client.dsse import REVOCATION_PAYLOAD_TYPE, SUBMISSION_PAYLOAD_TYPE, envelope_sign
from consortium_client.strictjson import strict_json_dumps


def _stamp(payload: dict[str, Any]) -> bytes:
    payload.setdefault("timestamp", datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    payload.setdefault("nonce", secrets.token_hex(16))
    # Only what the server's strict parser accepts: a payload that one verifier reads
    # differently from another must not be signable in the first place.
    return strict_json_dumps(payload)


def submission_envelope(
    list_name: str, entries: Iterable[Mapping[str, Any]], private_key: Ed25519PrivateKey
) -> bytes:
    """A signed submission of `entries` (dicts of algorithm, value, labels, note)."""
    payload = _stamp({"list": list_name, "entries": [dict(entry) for entry in entries]})
    return envelope_sign(SUBMISSION_PAYLOAD_TYPE, payload, private_key)


def revocation_envelope(
    entry_ids: Iterable[int], reason: str, private_key: Ed25519PrivateKey
) -> bytes:
    """A signed revocation of the entries `entry_ids`, with a reason every partner sees."""
    payload = _stamp({"entries": list(entry_ids), "reason": reason})
    return envelope_sign(REVOCATION_PAYLOAD_TYPE, payload, private_key)
