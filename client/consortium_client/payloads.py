"""Building the signed payloads partners send: submissions and revocations."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client.commitments import commitment_of, salt_new
from consortium_client.dsse import REVOCATION_PAYLOAD_TYPE, SUBMISSION_PAYLOAD_TYPE, envelope_sign
from consortium_client.hashvalues import hash_value_parse
from consortium_client.strictjson import strict_json_dumps

# What an entry of a version 2 payload may carry besides its commitment.
_ENTRY_FIELDS = ("labels", "note", "quality")


def _stamp(payload: dict[str, Any]) -> bytes:
    payload.setdefault("timestamp", datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    payload.setdefault("nonce", secrets.token_hex(16))
    # Only what the server's strict parser accepts: a payload that one verifier reads
    # differently from another must not be signable in the first place.
    return strict_json_dumps(payload)


@dataclass(frozen=True)
class ValueOpening:
    """An entry's hash value and the salt that opens its signed commitment, and the same
    for each of its variants, in the order the payload signs them."""

    value: str
    salt: str
    variants: tuple[ValueOpening, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """`{"value", "salt"}`, with `"variants": [{"value", "salt"}, ...]` if it has any."""
        item: dict[str, Any] = {"value": self.value, "salt": self.salt}
        if self.variants:
            item["variants"] = [variant.as_json() for variant in self.variants]
        return item


@dataclass(frozen=True)
class SignedSubmission:
    """What `POST /api/v1/submissions` takes: the signed envelope, which holds only salted
    commitments, and beside it the value and salt opening each entry's commitment, in the
    order of the payload's entries. The values stay outside the signature, so that erasing
    one never breaks the signature over its batch."""

    envelope: bytes  # the DSSE envelope's JSON, as signed
    values: tuple[ValueOpening, ...]

    def body(self) -> bytes:
        """The request body: `{"envelope": <the envelope>, "values": [{"value", "salt"}]}`.
        The envelope's bytes are spliced in as they are, never re-encoded."""
        return submission_body(self.envelope, self.values)


def submission_body(envelope: bytes, values: Iterable[ValueOpening]) -> bytes:
    openings = [opening.as_json() for opening in values]
    return b'{"envelope":%b,"values":%b}' % (
        envelope.strip(),
        json.dumps(openings, separators=(",", ":")).encode("ascii"),
    )


def submission_envelope(
    list_name: str, entries: Iterable[Mapping[str, Any]], private_key: Ed25519PrivateKey
) -> SignedSubmission:
    """A signed submission of `entries` (dicts of algorithm, value, labels, note, quality,
    and for a pdq entry `variants`: a mapping of variant name to PDQ value, in the order to
    sign them, names from `consortium_client.variants.VARIANTS`).

    Each entry and each variant gets a fresh salt (`salt_new`); the payload signs their
    commitments, never their values, and the values travel beside the envelope in
    `SignedSubmission.values`."""
    signed: list[dict[str, Any]] = []
    openings: list[ValueOpening] = []
    for entry in entries:
        algorithm = entry["algorithm"]
        value = hash_value_parse(algorithm, entry["value"])
        salt = salt_new()
        item: dict[str, Any] = {
            "algorithm": algorithm,
            "commitment": commitment_of(algorithm, value, salt),
        }
        item.update({name: entry[name] for name in _ENTRY_FIELDS if name in entry})
        variants: list[ValueOpening] = []
        for name, variant_value in dict(entry.get("variants") or {}).items():
            variant_value = hash_value_parse(algorithm, variant_value)
            variant_salt = salt_new()
            item.setdefault("variants", []).append(
                {"name": name, "commitment": commitment_of(algorithm, variant_value, variant_salt)}
            )
            variants.append(ValueOpening(variant_value, variant_salt))
        signed.append(item)
        openings.append(ValueOpening(value, salt, tuple(variants)))
    payload = _stamp({"list": list_name, "entries": signed})
    return SignedSubmission(
        envelope_sign(SUBMISSION_PAYLOAD_TYPE, payload, private_key), tuple(openings)
    )


def revocation_envelope(
    entry_ids: Iterable[int], reason: str, private_key: Ed25519PrivateKey
) -> bytes:
    """A signed revocation of the entries `entry_ids`, with a reason every partner sees."""
    payload = _stamp({"entries": list(entry_ids), "reason": reason})
    return envelope_sign(REVOCATION_PAYLOAD_TYPE, payload, private_key)
