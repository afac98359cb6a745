from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.actors import Actor
from audit.services import EventDraft, access_event_record, checkpoint_soon, log_append
from consortium.errors import (
    EntryAlreadyRevoked,
    EntryErased,
    NotEntrySubmitter,
    UnknownEntry,
)
from consortium_client import leaves
from consortium_client.dsse import REVOCATION_PAYLOAD_TYPE
from hashes.models import Entry, QuarantineResolution, Revocation
from hashes.payloads import revocation_payload_parse
from hashes.selectors import entries_revocable
from hashes.services.feedback import quarantines_resolve
from hashes.statements import SignedStatement, statement_key_check, statement_take_effect

ACTION = "revocation.create"


@dataclass(frozen=True)
class RevocationResult:
    revocation: Revocation
    events: list[tuple[int, int]]  # (entry id, log index of its tombstone)
    replayed: bool


def revocation_create(*, actor: Actor, envelope: bytes) -> RevocationResult:
    """Revoke entries by a signed envelope of their submitter.

    Only the partner that submitted an entry may revoke it (with any of its active signing
    keys). All or nothing, and taking effect once like submissions (hashes.statements).
    """
    return statement_take_effect(
        actor=actor,
        envelope=envelope,
        payload_type=REVOCATION_PAYLOAD_TYPE,
        model=Revocation,
        store=lambda statement: _store(actor=actor, statement=statement),
        replay=lambda revocation: _replay(actor=actor, revocation=revocation),
    )


@transaction.atomic
def _store(*, actor: Actor, statement: SignedStatement) -> RevocationResult:
    partner, api_key = actor.require_partner()
    parsed = revocation_payload_parse(statement.payload)
    entries = _entries_lock(actor=actor, entry_ids=parsed.entry_ids)
    revocation = Revocation.objects.create(
        partner=partner, api_key=api_key, reason=parsed.reason, **statement.stored_fields()
    )
    result = _revoke(actor=actor, revocation=revocation, entries=entries)
    statement_key_check(statement)
    return result


@transaction.atomic
def revocation_by_administrator(
    *, actor: Actor, entries: Sequence[Entry], reason: str
) -> RevocationResult:
    """A consortium administrator's revocation: no envelope, recorded as theirs, with a reason."""
    if actor.user is None:
        raise ValueError("an administrator's revocation needs the administrator")
    if not reason.strip():
        raise ValueError("an administrator's revocation needs a reason")
    locked = _entries_lock(actor=actor, entry_ids=[entry.pk for entry in entries])
    revocation = Revocation.objects.create(administrator=actor.user, reason=reason.strip())
    return _revoke(actor=actor, revocation=revocation, entries=locked)


def _entries_lock(*, actor: Actor, entry_ids: list[int]) -> list[Entry]:
    """Lock the entries and check that the actor may revoke each one, in the order named.

    The lock order is the one log_append documents: entries in id order, then the log head.
    Only the entry rows are locked, FOR NO KEY UPDATE: a plain FOR UPDATE would also lock
    the joined list and partner rows, and block every submission (whose inserts take KEY
    SHARE on them) while it waits for the log head those submissions hold: a deadlock."""
    source = (
        Entry.objects.all() if actor.partner is None else entries_revocable(partner=actor.partner)
    )
    found = {
        entry.pk: entry
        for entry in Entry.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk__in=source.filter(pk__in=entry_ids).values("pk"))
        .select_related("hash_list", "partner")
        .order_by("pk")
    }
    for position, entry_id in enumerate(entry_ids):
        entry = found.get(entry_id)
        pointer = f"/entries/{position}"
        if entry is None:
            raise UnknownEntry(f"no entry {entry_id} is visible to this partner", pointer=pointer)
        if actor.partner is not None and entry.partner_id != actor.partner.pk:
            raise NotEntrySubmitter(
                f"entry {entry_id} was submitted by another partner", pointer=pointer
            )
        if entry.status == Entry.Status.REVOKED:
            raise EntryAlreadyRevoked(f"entry {entry_id} is already revoked", pointer=pointer)
        if entry.status == Entry.Status.ERASED:
            raise EntryErased(f"entry {entry_id} was erased", pointer=pointer)
    return [found[entry_id] for entry_id in entry_ids]


def _revoke(*, actor: Actor, revocation: Revocation, entries: list[Entry]) -> RevocationResult:
    events = log_append(
        drafts=[
            EventDraft(
                leaves.ENTRY_REVOKED,
                {
                    "entry": entry.pk,
                    "list": entry.hash_list.name,
                    # No algorithm and no value: the entry's index names its entry_added leaf.
                    "partner": entry.partner.name,
                    "revoked_by": revocation.revoked_by,
                    "reason": revocation.reason,
                    "key": revocation.signing_key.key_id if revocation.signing_key else None,
                    "envelope": revocation.envelope_sha256,
                    "revocation": revocation.pk,
                },
                hash_list_id=entry.hash_list_id,
                partner_id=revocation.partner_id,
            )
            for entry in entries
        ]
    )
    # A checkpoint of a size that includes these events, signed once they commit.
    checkpoint_soon()
    now = timezone.now()
    for entry, event in zip(entries, events, strict=True):
        entry.status = Entry.Status.REVOKED
        entry.revocation = revocation
        entry.revoked_at = now
        entry.revoked_log_index = event.index
    Entry.objects.bulk_update(
        entries, ["status", "revocation", "revoked_at", "revoked_log_index"], batch_size=1000
    )
    # After every tombstone (a revocation's tombstones are consecutive in the log): a
    # quarantined entry's quarantine ends with it, as `revoked`.
    quarantines_resolve(
        actor=actor,
        entries=entries,
        outcome=QuarantineResolution.Outcome.REVOKED,
        reason=revocation.reason,
    )
    access_event_record(
        actor=actor,
        action=ACTION if actor.partner else "entry.revoke",
        status=201,
        target=f"revocation:{revocation.pk}",
        records=len(entries),
        detail={"entries": [entry.pk for entry in entries][:100]},
    )
    return RevocationResult(
        revocation,
        [(entry.pk, event.index) for entry, event in zip(entries, events, strict=True)],
        replayed=False,
    )


@transaction.atomic
def _replay(*, actor: Actor, revocation: Revocation) -> RevocationResult:
    events = [
        (entry_id, log_index)
        for entry_id, log_index in revocation.entries.order_by("revoked_log_index").values_list(
            "pk", "revoked_log_index"
        )
        if log_index is not None  # always set on a revoked entry
    ]
    access_event_record(
        actor=actor,
        action=ACTION,
        status=200,
        target=f"revocation:{revocation.pk}",
        records=len(events),
        detail={"revocation": revocation.pk, "replayed": True},
    )
    return RevocationResult(revocation, events, replayed=True)
