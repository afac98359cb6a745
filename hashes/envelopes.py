"""Opening a partner's DSSE envelope: parse, check the payload type, verify the signature
against the partner's active signing keys. The verification itself is the client
library's, so partners and the server run the same code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium.errors import (
    InvalidBase64,
    InvalidPayload,
    InvalidSignature,
    LegacyPayloadVersion,
    MalformedEnvelope,
    MalformedRequest,
    WrongPayloadType,
)
from consortium_client.dsse import (
    SUBMISSION_V1_PAYLOAD_TYPE,
    EnvelopeError,
    envelope_canonical,
    envelope_from_document,
    envelope_parse,
    envelope_verify,
)
from consortium_client.strictjson import StrictJsonError, strict_json_loads
from partners.models import Partner, SigningKey

_ERRORS = {
    "malformed-envelope": MalformedEnvelope,
    "invalid-base64": InvalidBase64,
    "invalid-signature": InvalidSignature,
}


@dataclass(frozen=True)
class OpenedEnvelope:
    payload: dict[str, Any]  # the signed payload, parsed
    payload_bytes: bytes  # exactly what was signed
    signing_key: SigningKey


@dataclass(frozen=True)
class SubmissionRequest:
    """A submission's request body, parsed: the envelope and, beside it, the values."""

    envelope: bytes  # canonical JSON of the envelope (envelope_canonical), what is stored
    values: Any  # checked against the signed commitments once the payload is verified


def submission_request_parse(raw: bytes) -> SubmissionRequest:
    """Parse `{"envelope": {...}, "values": [...]}`, strictly, as one JSON document.

    The envelope arrives nested in the body, so its received bytes are not a unit that can
    be kept: the server stores it in canonical form (`envelope_canonical`). That never
    re-serialises what was signed: the signature covers PAE(payloadType, payload), and the
    payload is kept as the exact decoded bytes. Replays are recognised by the signed nonce
    and payload digest (hashes.statements), so no re-encoding of the body counts twice."""
    try:
        document = strict_json_loads(raw)
    except StrictJsonError as exc:
        where = {} if exc.pointer is None else {"pointer": exc.pointer}
        raise MalformedRequest(f"the body is not strict JSON: {exc}", **where) from exc
    if not isinstance(document, dict) or "envelope" not in document:
        raise MalformedRequest(
            'the body must be {"envelope": <DSSE envelope>, "values": [{"value", "salt"}, ...]}'
        )
    unknown = sorted(document.keys() - {"envelope", "values"})
    if unknown:
        raise MalformedRequest(f"unknown member {unknown[0]!r} in the body")
    try:
        envelope = envelope_from_document(document["envelope"])
    except EnvelopeError as exc:
        raise _ERRORS[exc.reason](str(exc), pointer="/envelope") from exc
    if envelope.payload_type == SUBMISSION_V1_PAYLOAD_TYPE:
        raise LegacyPayloadVersion(
            "version 1 payloads sign the hash values themselves; sign a version 2 payload "
            "of salted commitments and send the values beside it (docs/formats.md)",
            pointer="/envelope/payloadType",
        )
    if "values" not in document:
        raise MalformedRequest("values is missing: each signed entry needs its value and salt")
    return SubmissionRequest(envelope_canonical(envelope), document["values"])


def envelope_open(*, raw: bytes, partner: Partner, payload_type: str) -> OpenedEnvelope:
    """Verify `raw` against the partner's active signing keys and return what it signed."""
    try:
        envelope = envelope_parse(raw)
        if envelope.payload_type != payload_type:
            raise WrongPayloadType(
                f"payloadType must be {payload_type!r}, got {envelope.payload_type!r}"
            )
        keys = {key.key_id: key for key in partner.signing_keys.filter(revoked_at=None)}
        trusted = [
            (key_id, Ed25519PublicKey.from_public_bytes(bytes(key.public_key)))
            for key_id, key in keys.items()
        ]
        signer = envelope_verify(envelope, trusted)
    except EnvelopeError as exc:
        raise _ERRORS[exc.reason](str(exc)) from exc
    # As in envelope_parse: strict, so the payload means one thing to every verifier.
    try:
        payload = strict_json_loads(envelope.payload)
    except StrictJsonError as exc:
        where = {} if exc.pointer is None else {"pointer": exc.pointer}
        raise InvalidPayload(f"the signed payload is not strict JSON: {exc}", **where) from exc
    if not isinstance(payload, dict):
        raise InvalidPayload("the signed payload must be a JSON object")
    return OpenedEnvelope(payload, envelope.payload, keys[signer])
