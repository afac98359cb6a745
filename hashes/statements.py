"""Signed statements: the one path every partner-signed document takes to take effect.

Submissions, revocations and feedback (and, later, cosignatures) are DSSE envelopes signed
by a partner. Each is opened the same way: verified against the partner's active signing keys,
its `timestamp` and `nonce` read from the signed payload, de-duplicated by what was signed, and
only then handed to its kind, which adds its own payload rules and stores it.

A statement takes effect at most once. Replay protection is keyed on the partner and the signed
nonce, never on the bytes around the signature: white space, the base64 alphabet, padding, the
order or number of signatures and the `keyid` hints can all change without changing what was
signed, so none of them can make an old statement count twice.
- The same signed payload again (however re-encoded) returns the original result.
- The same nonce with another payload is refused (`nonce-reused`): a nonce names one statement.
- A statement signed outside the freshness window is refused (`stale-envelope`), so a signed
  envelope that leaked before it was sent stops being usable after ENVELOPE_MAX_AGE. Exact
  replays of a stored statement are answered before this check: a client retrying a request
  whose answer it lost still gets it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from audit.actors import Actor
from consortium.errors import InvalidSignature, NonceReused, StaleEnvelope
from hashes.envelopes import envelope_open
from hashes.models import Feedback, Revocation, Submission
from hashes.payloads import statement_header_parse
from partners.models import Partner, SigningKey

Stored = TypeVar("Stored", Submission, Revocation, Feedback)
Result = TypeVar("Result")


@dataclass(frozen=True)
class SignedStatement:
    """A verified envelope and what it signed, before its kind's rules are applied."""

    envelope: bytes
    envelope_sha256: str
    payload: dict[str, Any]
    payload_sha256: str
    nonce: str
    signed_at: datetime
    signing_key: SigningKey

    def stored_fields(self) -> dict[str, Any]:
        """The fields every stored statement keeps (SignedStatement's columns and the bytes)."""
        return {
            "envelope": self.envelope,
            "envelope_sha256": self.envelope_sha256,
            "signing_key": self.signing_key,
            "nonce": self.nonce,
            "payload_sha256": self.payload_sha256,
            "signed_at": self.signed_at,
        }


def statement_take_effect(
    *,
    actor: Actor,
    envelope: bytes,
    payload_type: str,
    model: type[Stored],
    store: Callable[[SignedStatement], Result],
    replay: Callable[[Stored], Result],
    explain_conflict: Callable[[SignedStatement], None] | None = None,
) -> Result:
    """Open `envelope` and let it take effect once: `store` it, or `replay` the stored one.

    `store` applies the kind's rules and writes everything in one transaction. If it fails on
    a uniqueness constraint, the same statement may have been stored concurrently (then it is
    a replay); otherwise `explain_conflict` may raise the kind's own refusal.
    """
    partner, _ = actor.require_partner()
    envelope_sha256 = hashlib.sha256(envelope).hexdigest()
    stored = model.objects.filter(partner=partner, envelope_sha256=envelope_sha256).first()
    if stored is not None:
        return replay(stored)
    opened = envelope_open(raw=envelope, partner=partner, payload_type=payload_type)
    header = statement_header_parse(opened.payload)
    statement = SignedStatement(
        envelope=envelope,
        envelope_sha256=envelope_sha256,
        payload=opened.payload,
        payload_sha256=hashlib.sha256(opened.payload_bytes).hexdigest(),
        nonce=header.nonce,
        signed_at=header.signed_at,
        signing_key=opened.signing_key,
    )
    stored = _signed_before(model=model, partner=partner, statement=statement)
    if stored is not None:
        return replay(stored)
    _check_fresh(statement)
    try:
        return store(statement)
    except IntegrityError:
        stored = _signed_before(model=model, partner=partner, statement=statement)
        if stored is not None:
            return replay(stored)
        if explain_conflict is not None:
            explain_conflict(statement)
        raise


def statement_key_check(statement: SignedStatement) -> None:
    """Refuse a statement whose signing key was revoked after it was verified.

    Call it after log_append: signing_key_revoke appends its event under the same log-head
    lock, so either its revocation is visible here, or its event comes after this statement's
    and the log never shows a key in use after its revocation.
    """
    if not SigningKey.objects.filter(pk=statement.signing_key.pk, revoked_at=None).exists():
        raise InvalidSignature("the signing key was revoked while this statement was processed")


def _signed_before(
    *, model: type[Stored], partner: Partner, statement: SignedStatement
) -> Stored | None:
    """The stored statement with this nonce: the same one again, or a refusal."""
    stored = model.objects.filter(partner=partner, nonce=statement.nonce).first()
    if stored is None:
        return None
    if stored.payload_sha256 != statement.payload_sha256:
        raise NonceReused(
            f"this partner's {model._meta.verbose_name} {stored.pk} was signed with nonce "
            f"{statement.nonce!r}; sign each statement with a new nonce",
            pointer="/nonce",
        )
    return stored


def _check_fresh(statement: SignedStatement) -> None:
    now = timezone.now()
    oldest = now - timedelta(seconds=settings.ENVELOPE_MAX_AGE)
    newest = now + timedelta(seconds=settings.ENVELOPE_MAX_SKEW)
    if not oldest <= statement.signed_at <= newest:
        raise StaleEnvelope(
            f"signed at {statement.signed_at.isoformat()}; the server accepts statements signed "
            f"from {settings.ENVELOPE_MAX_AGE} s before to {settings.ENVELOPE_MAX_SKEW} s after "
            f"its time ({now.isoformat()})",
            pointer="/timestamp",
        )
