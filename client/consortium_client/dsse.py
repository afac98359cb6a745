"""Dead Simple Signing Envelope (DSSE v1) with Ed25519.

Follows https://github.com/secure-systems-lab/dsse/blob/master/protocol.md:
the signature covers PAE(payloadType, payload), never the JSON of the envelope, so the
envelope may be re-serialised by anybody without breaking it. `keyid` is an optional,
unauthenticated hint: verification tries every trusted key, and uses the hint only to
try the likely key first. Both standard and URL-safe base64 are accepted, as the
protocol requires of verifiers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consortium_client.keys import key_id
from consortium_client.strictjson import StrictJsonError, strict_json_loads

# Version 2 signs salted commitments to the values, never the values (docs/formats.md).
SUBMISSION_PAYLOAD_TYPE = "application/vnd.consortium.submission.v2+json"
# Version 1 signed the values themselves; such envelopes are stored as legacy, never accepted.
SUBMISSION_V1_PAYLOAD_TYPE = "application/vnd.consortium.submission.v1+json"
REVOCATION_PAYLOAD_TYPE = "application/vnd.consortium.revocation.v1+json"
FEEDBACK_PAYLOAD_TYPE = "application/vnd.consortium.feedback.v1+json"


class EnvelopeError(ValueError):
    """An envelope that cannot be parsed or verified.

    `reason` is a stable slug: `malformed-envelope`, `invalid-base64`, or `invalid-signature`.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid hint, signature)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what the signature covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64decode(text: object, *, field: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not; refuse anything else."""
    if not isinstance(text, str):
        raise EnvelopeError("invalid-base64", f"{field} must be a base64 string")
    normalised = text.replace("-", "+").replace("_", "/")
    normalised += "=" * (-len(normalised) % 4)
    try:
        return base64.b64decode(normalised, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError("invalid-base64", f"{field} is not valid base64") from exc


def envelope_parse(raw: bytes) -> Envelope:
    """Parse the JSON of an envelope without verifying it."""
    # Strict, so that no two verifiers can read one envelope differently (duplicate keys,
    # UTF-16, NaN); it also bounds nesting and integers, which are bad input, not a failure.
    try:
        document = strict_json_loads(raw)
    except StrictJsonError as exc:
        raise EnvelopeError(
            "malformed-envelope", f"the envelope is not strict JSON: {exc}"
        ) from exc
    return envelope_from_document(document)


def envelope_from_document(document: object) -> Envelope:
    """An envelope from its already parsed JSON (for an envelope nested in a request)."""
    if not isinstance(document, dict):
        raise EnvelopeError("malformed-envelope", "the envelope must be a JSON object")
    payload_type = document.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise EnvelopeError("malformed-envelope", "payloadType must be a non-empty string")
    payload = b64decode(document.get("payload"), field="payload")
    signatures = document.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeError("malformed-envelope", "signatures must be a non-empty list")
    parsed: list[tuple[str, bytes]] = []
    for position, signature in enumerate(signatures):
        if not isinstance(signature, dict):
            raise EnvelopeError("malformed-envelope", f"signatures[{position}] must be an object")
        hint = signature.get("keyid", "")
        if not isinstance(hint, str):
            raise EnvelopeError("malformed-envelope", f"signatures[{position}].keyid must be text")
        sig = b64decode(signature.get("sig"), field=f"signatures[{position}].sig")
        parsed.append((hint, sig))
    return Envelope(payload_type, payload, tuple(parsed))


def envelope_sign(
    payload_type: str, payload: bytes, private_key: Ed25519PrivateKey, *, keyid: str | None = None
) -> bytes:
    """Return the JSON bytes of an envelope of `payload` signed with `private_key`."""
    signature = private_key.sign(pae(payload_type, payload))
    hint = key_id(private_key.public_key()) if keyid is None else keyid
    document = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": hint, "sig": base64.b64encode(signature).decode("ascii")}],
    }
    return json.dumps(document).encode("utf-8")


def envelope_canonical(envelope: Envelope) -> bytes:
    """The envelope as canonical JSON: sorted keys, no white space, standard padded base64.

    What the server stores for an envelope that arrived nested in a larger request: the
    signature covers PAE(payloadType, payload), and `payload` here is the exact signed bytes
    (only re-encoded as base64), so this form verifies exactly as the one received did.
    """
    document = {
        "payload": base64.b64encode(envelope.payload).decode("ascii"),
        "payloadType": envelope.payload_type,
        "signatures": [
            {"keyid": hint, "sig": base64.b64encode(sig).decode("ascii")}
            for hint, sig in envelope.signatures
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def envelope_verify(envelope: Envelope, trusted: Iterable[tuple[str, Ed25519PublicKey]]) -> str:
    """Return the id of a trusted key that signed `envelope`, or raise `EnvelopeError`.

    `trusted` pairs each key with its id. One valid signature by one trusted key is enough;
    signatures by unknown keys are ignored, as DSSE allows several signers.
    """
    keys = list(trusted)
    message = pae(envelope.payload_type, envelope.payload)
    for hint, signature in envelope.signatures:
        # The hint only orders the attempts; it is never trusted on its own.
        for candidate_id, public_key in sorted(keys, key=lambda pair: pair[0] != hint):
            try:
                public_key.verify(signature, message)
            except InvalidSignature:
                continue
            return candidate_id
    raise EnvelopeError(
        "invalid-signature", "no signature verifies with an active signing key of this partner"
    )
