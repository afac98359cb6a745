"""Feedback on entries, the review policy that confirms pending entries, and quarantine.

A verdict is a signed statement (hashes.statements): it takes effect once, however re-encoded,
and is stored as received. Each verdict, confirmation, quarantine and resolution is a log
event, appended in the transaction that changes the entry, with the entry row locked first
(the lock order log_append documents), so concurrent verdicts on one entry are counted one
after the other and the Nth false positive quarantines exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from audit.actors import Actor
from audit.services import EventDraft, access_event_record, checkpoint_soon, log_append
from consortium.errors import (
    EntryAlreadyRevoked,
    EntryErased,
    EntryNotQuarantined,
    FeedbackOnOwnEntry,
    InvalidPayload,
    NotEntrySubmitter,
    UnknownEntry,
    UnknownGrade,
)
from consortium_client import feedback as rules
from consortium_client import leaves
from consortium_client.dsse import FEEDBACK_PAYLOAD_TYPE
from hashes.models import Entry, Feedback, HashList, QuarantineResolution
from hashes.payloads import feedback_payload_parse
from hashes.selectors import entries_revocable, lists_visible_ids
from hashes.statements import SignedStatement, statement_key_check, statement_take_effect

ACTION = "feedback.create"
QUARANTINE_REASON = "false_positive_threshold"
_COUNT_FIELD = {
    rules.AGREE: "agree_count",
    rules.DISAGREE: "disagree_count",
    rules.FALSE_POSITIVE: "false_positive_count",
}


@dataclass(frozen=True)
class FeedbackResult:
    feedback: Feedback
    entry: Entry
    log_indexes: list[int]  # the entry_feedback event, then any confirmation or quarantine
    replayed: bool


def feedback_create(*, actor: Actor, entry_id: int, envelope: bytes) -> FeedbackResult:
    """A partner's signed verdict on entry `entry_id` (which the envelope must name).

    Refused, with nothing stored, for an entry the partner cannot see (as for a missing one),
    its own entry, and a revoked or erased one. The partner's previous verdict on the entry
    stops being current; the entry's counts, review and quarantine follow in the same
    transaction (`_policies_apply`).
    """
    return statement_take_effect(
        actor=actor,
        envelope=envelope,
        payload_type=FEEDBACK_PAYLOAD_TYPE,
        model=Feedback,
        store=lambda statement: _store(actor=actor, entry_id=entry_id, statement=statement),
        replay=lambda stored: _replay(actor=actor, feedback=stored),
    )


def _entry_lock(*, entry_id: int, visible_to: list[int] | None) -> Entry | None:
    """The entry row, locked FOR NO KEY UPDATE without its joined rows (see log_append)."""
    entries = Entry.objects.select_for_update(of=("self",), no_key=True).filter(pk=entry_id)
    if visible_to is not None:
        entries = entries.filter(hash_list_id__in=visible_to)
    return entries.select_related("hash_list", "partner").first()


@transaction.atomic
def _store(*, actor: Actor, entry_id: int, statement: SignedStatement) -> FeedbackResult:
    partner, api_key = actor.require_partner()
    parsed = feedback_payload_parse(statement.payload)
    if parsed.entry_id != entry_id:
        raise InvalidPayload(
            f"the envelope gives a verdict on entry {parsed.entry_id}, not {entry_id}",
            pointer="/entry",
        )
    entry = _entry_lock(entry_id=entry_id, visible_to=lists_visible_ids(partner=partner))
    if entry is None:
        raise UnknownEntry(f"no entry {entry_id} is visible to this partner")
    if entry.partner_id == partner.pk:
        raise FeedbackOnOwnEntry(
            f"entry {entry_id} is this partner's own; revoke it instead of judging it"
        )
    if entry.status == Entry.Status.REVOKED:
        raise EntryAlreadyRevoked(f"entry {entry_id} is revoked")
    if entry.status == Entry.Status.ERASED:
        raise EntryErased(f"entry {entry_id} was erased")
    hash_list = entry.hash_list
    if parsed.grade and parsed.grade not in hash_list.grades:
        scale = ", ".join(hash_list.grades) or "none"
        raise UnknownGrade(
            f"{parsed.grade!r} is not a grade of list {hash_list.name!r} (its scale: {scale})",
            pointer="/grade",
        )
    previous = Feedback.objects.filter(entry=entry, partner=partner, current=True).first()
    if previous is not None:
        Feedback.objects.filter(pk=previous.pk).update(current=False)
        field = _COUNT_FIELD[previous.verdict]
        setattr(entry, field, getattr(entry, field) - 1)
    field = _COUNT_FIELD[parsed.verdict]
    setattr(entry, field, getattr(entry, field) + 1)
    confirmed_by = _confirmation(
        entry=entry, hash_list=hash_list, verdict=parsed.verdict, by=(partner.pk, partner.name)
    )
    if confirmed_by is not None:
        entry.review = rules.CONFIRMED
        entry.grade = parsed.grade
    false_positives = _quarantine_due(entry=entry, hash_list=hash_list, verdict=parsed.verdict)
    drafts = [
        EventDraft(
            leaves.ENTRY_FEEDBACK,
            {
                "entry": entry.pk,
                "list": hash_list.name,
                "partner": partner.name,
                "submitter": entry.partner.name,
                "key": statement.signing_key.key_id,
                "envelope": statement.envelope_sha256,
                "verdict": parsed.verdict,
                "reason": parsed.reason,
                **({"grade": parsed.grade} if parsed.grade else {}),
                "status": entry.feedback_status,
                "counts": {
                    "agree": entry.agree_count,
                    "disagree": entry.disagree_count,
                    "false_positive": entry.false_positive_count,
                },
            },
            hash_list_id=hash_list.pk,
            partner_id=partner.pk,
        )
    ]
    if confirmed_by is not None:
        drafts.append(
            EventDraft(
                leaves.ENTRY_CONFIRMED,
                {
                    "entry": entry.pk,
                    "list": hash_list.name,
                    "partner": entry.partner.name,
                    "grade": parsed.grade or None,
                    "confirmed_by": confirmed_by,
                },
                hash_list_id=hash_list.pk,
                partner_id=entry.partner_id,
            )
        )
    if false_positives is not None:
        drafts.append(
            EventDraft(
                leaves.ENTRY_QUARANTINED,
                {
                    "entry": entry.pk,
                    "list": hash_list.name,
                    "partner": entry.partner.name,
                    "reason": QUARANTINE_REASON,
                    "false_positives": false_positives,
                },
                hash_list_id=hash_list.pk,
                partner_id=entry.partner_id,
            )
        )
    events = log_append(drafts=drafts)
    checkpoint_soon()
    for event in events[1:]:
        if event.event_type == leaves.ENTRY_CONFIRMED:
            entry.confirmed_log_index = event.index
        else:
            entry.quarantined_log_index = event.index
            entry.quarantine_reason = QUARANTINE_REASON
    entry.save(
        update_fields=[
            "agree_count",
            "disagree_count",
            "false_positive_count",
            "review",
            "grade",
            "confirmed_log_index",
            "quarantined_log_index",
            "quarantine_reason",
        ]
    )
    feedback = Feedback.objects.create(
        partner=partner,
        api_key=api_key,
        entry=entry,
        verdict=parsed.verdict,
        reason=parsed.reason,
        grade=parsed.grade,
        note=parsed.note,
        log_index=events[0].index,
        **statement.stored_fields(),
    )
    statement_key_check(statement)
    access_event_record(
        actor=actor,
        action=ACTION,
        status=201,
        target=f"entry:{entry.pk}",
        records=1,
        detail={
            "feedback": feedback.pk,
            "verdict": parsed.verdict,
            "events": [event.index for event in events],
        },
    )
    return FeedbackResult(feedback, entry, [event.index for event in events], replayed=False)


def _confirmation(
    *, entry: Entry, hash_list: HashList, verdict: str, by: tuple[int, str]
) -> list[str] | None:
    """The partners whose agree confirms a pending entry with this verdict, or None.

    Counted: current agree verdicts (this one included), from the list's designated reviewers
    if it has any, else from any partner; `reviews_needed` of them confirm."""
    if entry.review != rules.PENDING or verdict != rules.AGREE:
        return None
    reviewers = set(hash_list.reviewers.values_list("pk", flat=True))
    if reviewers and by[0] not in reviewers:
        return None
    agreeing = Feedback.objects.filter(entry=entry, current=True, verdict=rules.AGREE)
    if reviewers:
        agreeing = agreeing.filter(partner_id__in=reviewers)
    # This verdict's row is written after its log event: its partner is added here.
    names = sorted({*agreeing.values_list("partner__name", flat=True), by[1]})
    return names if len(names) >= hash_list.reviews_needed else None


def _quarantine_due(*, entry: Entry, hash_list: HashList, verdict: str) -> int | None:
    """The number of current false_positive verdicts if this one quarantines the entry.

    Only verdicts signed after the entry's last resolution count: a resolved quarantine
    starts a new count. An entry already quarantined stays so whatever verdicts change."""
    threshold = hash_list.quarantine_after
    if threshold is None or verdict != rules.FALSE_POSITIVE or entry.quarantined:
        return None
    counted = Feedback.objects.filter(entry=entry, current=True, verdict=rules.FALSE_POSITIVE)
    if entry.quarantine_resolved_log_index is not None:
        counted = counted.filter(log_index__gt=entry.quarantine_resolved_log_index)
    found = counted.count() + 1  # this verdict's row is written after its log event
    return found if found >= threshold else None


@transaction.atomic
def _replay(*, actor: Actor, feedback: Feedback) -> FeedbackResult:
    access_event_record(
        actor=actor,
        action=ACTION,
        status=200,
        target=f"entry:{feedback.entry_id}",
        records=1,
        detail={"feedback": feedback.pk, "replayed": True},
    )
    return FeedbackResult(feedback, feedback.entry, [feedback.log_index], replayed=True)


@dataclass(frozen=True)
class ResolutionResult:
    resolution: QuarantineResolution
    entry: Entry


@transaction.atomic
def quarantine_restore(*, actor: Actor, entry_id: int, reason: str) -> ResolutionResult:
    """End an entry's quarantine and let it match again: by its submitter (a partner), an
    administrator or an operator's command, with a reason every partner who sees the list
    reads. (To end it the other way, revoke the entry: the revocation resolves the quarantine
    as `revoked`.)"""
    reason = reason.strip()
    if not reason:
        raise InvalidPayload("a resolution needs a reason", pointer="/reason")
    if len(reason) > 1000:
        raise InvalidPayload("a reason is at most 1000 characters", pointer="/reason")
    if actor.partner is not None:
        visible = entries_revocable(partner=actor.partner).filter(pk=entry_id)
        entry = _entry_lock(entry_id=entry_id, visible_to=None) if visible.exists() else None
        if entry is None:
            raise UnknownEntry(f"no entry {entry_id} is visible to this partner")
        if entry.partner_id != actor.partner.pk:
            raise NotEntrySubmitter(f"entry {entry_id} was submitted by another partner")
    else:  # an administrator, or an operator's command
        entry = _entry_lock(entry_id=entry_id, visible_to=None)
        if entry is None:
            raise UnknownEntry(f"no entry {entry_id}")
    if entry.status == Entry.Status.ERASED:
        raise EntryErased(f"entry {entry_id} was erased: it cannot match again")
    if not entry.quarantined:
        raise EntryNotQuarantined(f"entry {entry_id} is not quarantined")
    resolutions = quarantines_resolve(
        actor=actor, entries=[entry], outcome=QuarantineResolution.Outcome.RESTORED, reason=reason
    )
    access_event_record(
        actor=actor,
        action="quarantine.resolve",
        status=201,
        target=f"entry:{entry.pk}",
        records=1,
        detail={"resolution": resolutions[0].pk, "outcome": "restored"},
    )
    return ResolutionResult(resolutions[0], entry)


def quarantines_resolve(
    *, actor: Actor, entries: list[Entry], outcome: str, reason: str
) -> list[QuarantineResolution]:
    """Append one entry_quarantine_resolved event per quarantined entry of `entries` (locked
    by the caller, in id order) and record it. Runs in the caller's transaction: a revocation
    calls it after its tombstones, so a revoked entry's quarantine ends with it."""
    quarantined = [entry for entry in entries if entry.quarantined]
    if not quarantined:
        return []
    # A partner by its name, as tombstones name it; otherwise admin:<user> or command:<name>.
    resolved_by = actor.partner.name if actor.partner is not None else actor.label
    events = log_append(
        drafts=[
            EventDraft(
                leaves.ENTRY_QUARANTINE_RESOLVED,
                {
                    "entry": entry.pk,
                    "list": entry.hash_list.name,
                    "partner": entry.partner.name,
                    "resolution": outcome,
                    "resolved_by": resolved_by,
                    "reason": reason,
                },
                hash_list_id=entry.hash_list_id,
                partner_id=entry.partner_id,
            )
            for entry in quarantined
        ]
    )
    checkpoint_soon()
    resolutions = []
    for entry, event in zip(quarantined, events, strict=True):
        entry.quarantined_log_index = None
        entry.quarantine_resolved_log_index = event.index
        resolutions.append(
            QuarantineResolution(
                entry=entry,
                outcome=outcome,
                partner=actor.partner,
                administrator=actor.user if actor.partner is None else None,
                resolved_by=resolved_by,
                reason=reason,
                log_index=event.index,
                created_at=event.time,
            )
        )
    Entry.objects.bulk_update(
        quarantined, ["quarantined_log_index", "quarantine_resolved_log_index"]
    )
    return QuarantineResolution.objects.bulk_create(resolutions)
