"""Erasure: forgetting an entry's hash value (a victim's or a court's request).

The log keeps the entry's leaf, which holds only a salted commitment, so every leaf, tile,
proof and checkpoint made before stays valid; the value and its salt are deleted, and
without the salt the commitment cannot be tested against a guessed value.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.actors import Actor
from audit.services import EventDraft, access_event_record, checkpoint_soon, log_append
from consortium.errors import EntryErased, UnknownEntry
from consortium_client import leaves
from hashes.models import Entry, EntryVariant, Submission

ACTION = "entry.erase"
MAX_REASON = 1000


@dataclass(frozen=True)
class ErasureResult:
    entry_id: int
    log_index: int  # of the entry_erased event
    redacted_submission: int | None  # a legacy submission whose envelope was redacted


@transaction.atomic
def entry_erase(*, actor: Actor, entry_id: int, reason: str) -> ErasureResult:
    """Erase entry `entry_id`: its value and salt, and those of its variants, are deleted
    (status `erased`), an `entry_erased` event is appended and an access event recorded, in
    one transaction.

    Only an administrator or a management command erases (never a partner's key). An erased
    entry never matches again and the feed shows it erased. A legacy (version 1) submission
    signed the values themselves, so the envelope of an erased legacy entry is redacted:
    its bytes are removed, its SHA-256 (in the log's leaves) kept, with when and why; its
    signature can no longer be checked (docs/security.md). Nothing here writes the value
    anywhere: not the event, not the access event, not a log line.
    """
    if actor.partner is not None:
        raise ValueError("entries are erased by an administrator or a command, not a partner")
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValueError(f"an erasure needs a reason of 1 to {MAX_REASON} characters")
    # Lock order as log_append documents: the entry, then its submission, then the log head.
    entry = (
        Entry.objects.select_for_update(of=("self",), no_key=True)
        .select_related("hash_list")
        .filter(pk=entry_id)
        .first()
    )
    if entry is None:
        raise UnknownEntry(f"no entry {entry_id}")
    if entry.status == Entry.Status.ERASED:
        raise EntryErased(f"entry {entry_id} was erased at {entry.erased_at}")
    submission = (
        Submission.objects.select_for_update(of=("self",), no_key=True)
        .defer("envelope")
        .get(pk=entry.submission_id)
    )
    by = actor.label if actor.user is not None else "command"
    (event,) = log_append(
        drafts=[
            EventDraft(
                leaves.ENTRY_ERASED,
                {"entry": entry.pk, "list": entry.hash_list.name, "by": by, "reason": reason},
                hash_list_id=entry.hash_list_id,
            )
        ]
    )
    now = timezone.now()
    Entry.objects.filter(pk=entry.pk).update(
        value=None,
        salt=None,
        status=Entry.Status.ERASED,
        erased_at=now,
        erased_log_index=event.index,
        erasure_reason=reason,
    )
    # Its variants are PDQ hashes of the same image: they go with it.
    EntryVariant.objects.filter(entry_id=entry.pk).update(value=None, salt=None)
    redacted = None
    if submission.payload_version == 1 and submission.redacted_at is None:
        Submission.objects.filter(pk=submission.pk).update(
            envelope=b"",
            redacted_at=now,
            redaction_reason=f"entry {entry.pk} erased: {reason}",
        )
        redacted = submission.pk
    access_event_record(
        actor=actor,
        action=ACTION,
        status=200,
        target=f"entry:{entry.pk}",
        records=1,
        detail={"entry": entry.pk, "log_index": event.index, "redacted_submission": redacted},
    )
    checkpoint_soon()
    return ErasureResult(entry.pk, event.index, redacted)
