from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from audit.actors import Actor
from audit.services import EventDraft, access_event_record, log_append
from consortium.bulk import rows_insert
from consortium.errors import EntryExists
from consortium_client import leaves
from consortium_client.dsse import SUBMISSION_PAYLOAD_TYPE
from hashes.envelopes import envelope_open
from hashes.models import Entry, HashList, Submission
from hashes.payloads import EntryDraft, submission_payload_parse
from hashes.selectors import list_for_submission
from partners.models import SigningKey

ACTION = "submission.create"


@dataclass(frozen=True)
class SubmissionResult:
    submission: Submission
    entries: list[tuple[int, str, str]]  # (entry id = log index, algorithm, value)
    replayed: bool


def submission_create(*, actor: Actor, envelope: bytes) -> SubmissionResult:
    """Verify `envelope` against the partner's signing keys and append its entries to the log.

    All or nothing: the first problem refuses the whole batch and nothing is stored.
    Idempotent: the same envelope bytes from the same partner return the existing
    submission. Each entry's id is the log index of the event that added it.
    """
    partner, _ = actor.require_partner()
    digest = hashlib.sha256(envelope).hexdigest()
    existing = _replay(actor=actor, digest=digest)
    if existing is not None:
        return existing
    payload, signing_key = envelope_open(
        raw=envelope, partner=partner, payload_type=SUBMISSION_PAYLOAD_TYPE
    )
    parsed = submission_payload_parse(payload)
    hash_list = list_for_submission(partner=partner, name=parsed.list_name)
    try:
        return _store(
            actor=actor,
            envelope=envelope,
            digest=digest,
            hash_list=hash_list,
            signing_key=signing_key,
            drafts=parsed.entries,
        )
    except IntegrityError:
        # Two cases reach here: the same envelope committed concurrently (replay), or a
        # hash this partner already holds active in the list (refused, naming it).
        replay = _replay(actor=actor, digest=digest)
        if replay is not None:
            return replay
        _raise_first_existing(actor=actor, hash_list=hash_list, drafts=parsed.entries)
        raise


@transaction.atomic
def _store(
    *,
    actor: Actor,
    envelope: bytes,
    digest: str,
    hash_list: HashList,
    signing_key: SigningKey,
    drafts: list[EntryDraft],
) -> SubmissionResult:
    partner, api_key = actor.require_partner()
    submission = Submission.objects.create(
        partner=partner,
        api_key=api_key,
        signing_key=signing_key,
        hash_list=hash_list,
        envelope=envelope,
        envelope_sha256=digest,
        entry_count=len(drafts),
    )
    events = log_append(
        drafts=[
            EventDraft(
                leaves.ENTRY_ADDED,
                {
                    "list": hash_list.name,
                    "algorithm": draft.algorithm,
                    "value": draft.value,
                    "labels": draft.labels,
                    "partner": partner.name,
                    "key": signing_key.key_id,
                    "envelope": digest,
                    "submission": submission.pk,
                    # Only PDQ entries may carry a quality; other leaves stay as they were.
                    **({"quality": draft.quality} if draft.quality is not None else {}),
                },
                hash_list_id=hash_list.pk,
                partner_id=partner.pk,
            )
            for draft in drafts
        ]
    )
    # The leaf names the entry by its log index, which is also the entry's id.
    rows_insert(
        Entry,
        (
            "id",
            "hash_list_id",
            "algorithm",
            "value",
            "labels",
            "note",
            "quality",
            "partner_id",
            "submission_id",
            "created_at",
        ),
        [
            (
                event.index,
                hash_list.pk,
                draft.algorithm,
                draft.value,
                draft.labels,
                draft.note,
                draft.quality,
                partner.pk,
                submission.pk,
                event.time,
            )
            for draft, event in zip(drafts, events, strict=True)
        ],
    )
    access_event_record(
        actor=actor,
        action=ACTION,
        status=201,
        target=f"list:{hash_list.name}",
        records=len(drafts),
        detail={"submission": submission.pk, "envelope": digest},
    )
    return SubmissionResult(
        submission,
        [(event.index, d.algorithm, d.value) for d, event in zip(drafts, events, strict=True)],
        replayed=False,
    )


@transaction.atomic
def _replay(*, actor: Actor, digest: str) -> SubmissionResult | None:
    submission = (
        Submission.objects.select_related("hash_list")
        .filter(partner=actor.partner, envelope_sha256=digest)
        .first()
    )
    if submission is None:
        return None
    entries = list(submission.entries.order_by("id").values_list("id", "algorithm", "value"))
    access_event_record(
        actor=actor,
        action=ACTION,
        status=200,
        target=f"list:{submission.hash_list.name}",
        records=len(entries),
        detail={"submission": submission.pk, "replayed": True},
    )
    return SubmissionResult(submission, entries, replayed=True)


def _raise_first_existing(*, actor: Actor, hash_list: HashList, drafts: list[EntryDraft]) -> None:
    held = set(
        Entry.objects.filter(
            hash_list=hash_list,
            partner=actor.partner,
            status=Entry.Status.ACTIVE,
            value__in=[draft.value for draft in drafts],
        ).values_list("algorithm", "value", "id")
    )
    by_hash = {(algorithm, value): entry_id for algorithm, value, entry_id in held}
    for position, draft in enumerate(drafts):
        entry_id = by_hash.get((draft.algorithm, draft.value))
        if entry_id is not None:
            raise EntryExists(
                f"entry {entry_id} already holds this {draft.algorithm} hash in "
                f"{hash_list.name!r}; revoke it first to replace it",
                pointer=f"/entries/{position}",
                entry=entry_id,
            )
