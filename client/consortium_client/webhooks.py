"""Webhook signatures as the Standard Webhooks specification defines them.

A delivery carries three headers: `webhook-id` (the message id, the same on every retry of
one message: the receiver's idempotency key), `webhook-timestamp` (POSIX seconds when this
attempt was signed) and `webhook-signature` (`v1,<base64 of HMAC-SHA256(secret,
"{id}.{timestamp}.{body}")>`, space-separated when several). The secret is shown as
`whsec_<base64 of its bytes>`. Any Standard Webhooks or Svix verifier checks these; the
server signs here and a receiver may verify here, with `webhook_verify`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"
# How far a timestamp may be from the receiver's clock (the specification's default).
DEFAULT_TOLERANCE = 5 * 60


class WebhookSignatureError(ValueError):
    """A delivery whose headers are missing, stale, or whose signature does not verify."""


def webhook_secret_new() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def webhook_secret_text(secret: bytes) -> str:
    """The secret as a receiver configures it: `whsec_` and standard base64."""
    return SECRET_PREFIX + base64.b64encode(secret).decode("ascii")


def webhook_secret_parse(text: str) -> bytes:
    """The bytes of a `whsec_...` secret (the prefix is optional)."""
    body = text.removeprefix(SECRET_PREFIX)
    try:
        secret = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as error:
        raise WebhookSignatureError("the secret is not base64") from error
    if not secret:
        raise WebhookSignatureError("the secret is empty")
    return secret


def webhook_signature(*, secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one delivery: `v1,<base64 HMAC-SHA256>`."""
    signed = b"%b.%d.%b" % (message_id.encode("utf-8"), timestamp, body)
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def webhook_headers(
    *, secret: bytes, message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three signature headers of one delivery attempt, signed now unless told when."""
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": webhook_signature(
            secret=secret, message_id=message_id, timestamp=moment, body=body
        ),
    }


def webhook_verify(
    *,
    secret: bytes,
    headers: dict[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a received delivery and return its message id (the idempotency key).

    `headers` may use any case. Refused (WebhookSignatureError) when a header is missing,
    the timestamp is more than `tolerance` seconds from `now`, or no `v1` signature of the
    header list matches (compared in constant time)."""
    named = {key.lower(): value for key, value in headers.items()}
    message_id = named.get("webhook-id", "")
    stamp = named.get("webhook-timestamp", "")
    signatures = named.get("webhook-signature", "")
    if not (message_id and stamp and signatures):
        raise WebhookSignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise WebhookSignatureError("webhook-timestamp is not POSIX seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookSignatureError("webhook-timestamp is outside the tolerance")
    expected = webhook_signature(
        secret=secret, message_id=message_id, timestamp=timestamp, body=body
    ).encode("ascii")
    for candidate in signatures.split(" "):
        if hmac.compare_digest(candidate.encode("utf-8", "replace"), expected):
            return message_id
    raise WebhookSignatureError("no signature matches")
