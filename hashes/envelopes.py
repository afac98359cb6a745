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
    MalformedEnvelope,
    WrongPayloadType,
)
from consortium_client.dsse import EnvelopeError, envelope_parse, envelope_verify
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
