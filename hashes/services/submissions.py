from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models.functions import MD5

from audit.actors import Actor
from audit.services import EventDraft, access_event_record, checkpoint_soon, log_append
from consortium.bulk import rows_insert
from consortium.errors import EntryExists, SignedBeforeRevocation
from consortium_client import leaves
from consortium_client.dsse import SUBMISSION_PAYLOAD_TYPE
from hashes.envelopes import submission_request_parse
from hashes.models import Entry, EntryVariant, HashList, Submission
from hashes.payloads import EntryDraft, submission_payload_parse, submission_values_open
from hashes.selectors import list_for_submission
from hashes.statements import SignedStatement, statement_key_check, statement_take_effect

ACTION = "submission.create"


@dataclass(frozen=True)
class StoredVariant:
    """A variant as a submission's answer shows it; value and salt are None once erased."""

    name: str
    commitment: str
    value: str | None
    salt: str | None


@dataclass(frozen=True)
class StoredEntry:
    """An entry as a submission's answer shows it; value and salt are None once erased."""

    id: int  # also the log index of its entry_added event
    algorithm: str
    commitment: str
    value: str | None
    salt: str | None
    variants: tuple[StoredVariant, ...] = ()


@dataclass(frozen=True)
class SubmissionResult:
    submission: Submission
    entries: list[StoredEntry]
    replayed: bool


def submission_create(*, actor: Actor, body: bytes) -> SubmissionResult:
    """Verify the request `body` ({"envelope", "values"}) and append its entries to the log.

    The envelope signs salted commitments; `values[i]` must open `entries[i]`'s commitment
    (commitment-mismatch otherwise). All or nothing: the first problem refuses the whole
    batch and nothing is stored. A signed submission takes effect once (hashes.statements):
    sent again, however re-encoded, it returns the existing submission (its values are not
    read again: the stored entries opened its commitments already, and an erased one stays
    erased). A hash the partner held in the list and that was revoked after the envelope
    was signed is refused: only a newer signature can add it back. Each entry's id is the
    log index of the event that added it, and its leaf holds the commitment, never the value.
    """
    request = submission_request_parse(body)
    return statement_take_effect(
        actor=actor,
        envelope=request.envelope,
        payload_type=SUBMISSION_PAYLOAD_TYPE,
        model=Submission,
        store=lambda statement: _store(actor=actor, statement=statement, values=request.values),
        replay=lambda submission: _replay(actor=actor, submission=submission),
        explain_conflict=lambda statement: _raise_first_existing(
            actor=actor, statement=statement, values=request.values
        ),
    )


def _drafts(
    *, actor: Actor, statement: SignedStatement, values: Any
) -> tuple[HashList, list[EntryDraft]]:
    partner, _ = actor.require_partner()
    parsed = submission_payload_parse(statement.payload)
    hash_list = list_for_submission(partner=partner, name=parsed.list_name)
    return hash_list, submission_values_open(parsed.entries, values)


def _store(*, actor: Actor, statement: SignedStatement, values: Any) -> SubmissionResult:
    hash_list, drafts = _drafts(actor=actor, statement=statement, values=values)
    return _store_entries(actor=actor, statement=statement, hash_list=hash_list, drafts=drafts)


@transaction.atomic
def _store_entries(
    *,
    actor: Actor,
    statement: SignedStatement,
    hash_list: HashList,
    drafts: list[EntryDraft],
) -> SubmissionResult:
    partner, api_key = actor.require_partner()
    signing_key = statement.signing_key
    submission = Submission.objects.create(
        partner=partner,
        api_key=api_key,
        hash_list=hash_list,
        entry_count=len(drafts),
        **statement.stored_fields(),
    )
    events = log_append(
        drafts=[
            EventDraft(
                leaves.ENTRY_ADDED,
                {
                    "list": hash_list.name,
                    "algorithm": draft.algorithm,
                    "commitment": draft.commitment,
                    "labels": draft.labels,
                    "partner": partner.name,
                    "key": signing_key.key_id,
                    "envelope": statement.envelope_sha256,
                    "submission": submission.pk,
                    # Only PDQ entries may carry a quality; other leaves stay as they were.
                    **({"quality": draft.quality} if draft.quality is not None else {}),
                    # Likewise variants: a leaf without them is byte for byte as before.
                    **(
                        {
                            "variants": [
                                {"name": variant.name, "commitment": variant.commitment}
                                for variant in draft.variants
                            ]
                        }
                        if draft.variants
                        else {}
                    ),
                    # Only a list that requires review marks its adds; others stay as before.
                    **({"review": "pending"} if hash_list.review_required else {}),
                },
                hash_list_id=hash_list.pk,
                partner_id=partner.pk,
            )
            for draft in drafts
        ]
    )
    # A checkpoint of a size that includes these events, signed once they commit.
    checkpoint_soon()
    review = "pending" if hash_list.review_required else None
    # The leaf names the entry by its log index, which is also the entry's id.
    rows_insert(
        Entry,
        (
            "id",
            "hash_list_id",
            "algorithm",
            "value",
            "salt",
            "commitment",
            "labels",
            "note",
            "quality",
            "partner_id",
            "submission_id",
            "created_at",
            "review",
        ),
        [
            (
                event.index,
                hash_list.pk,
                draft.algorithm,
                draft.value,
                draft.salt,
                draft.commitment,
                draft.labels,
                draft.note,
                draft.quality,
                partner.pk,
                submission.pk,
                event.time,
                review,
            )
            for draft, event in zip(drafts, events, strict=True)
        ],
    )
    variant_rows = [
        (event.index, position, variant.name, variant.value, variant.salt, variant.commitment)
        for draft, event in zip(drafts, events, strict=True)
        for position, variant in enumerate(draft.variants)
    ]
    if variant_rows:  # most batches carry none: no round trip for them
        rows_insert(
            EntryVariant,
            ("entry_id", "position", "name", "value", "salt", "commitment"),
            variant_rows,
        )
    # After log_append: it holds the log head until commit, and every revocation takes it
    # too, so a revocation that committed before this point is visible here, and one that
    # has not cannot commit before this submission does.
    statement_key_check(statement)
    _refuse_signed_before_revocation(
        partner_id=partner.pk, hash_list=hash_list, drafts=drafts, signed_at=statement.signed_at
    )
    access_event_record(
        actor=actor,
        action=ACTION,
        status=201,
        target=f"list:{hash_list.name}",
        records=len(drafts),
        detail={"submission": submission.pk, "envelope": statement.envelope_sha256},
    )
    return SubmissionResult(
        submission,
        [
            StoredEntry(
                event.index,
                d.algorithm,
                d.commitment,
                d.value,
                d.salt,
                tuple(StoredVariant(v.name, v.commitment, v.value, v.salt) for v in d.variants),
            )
            for d, event in zip(drafts, events, strict=True)
        ],
        replayed=False,
    )


@transaction.atomic
def _replay(*, actor: Actor, submission: Submission) -> SubmissionResult:
    variants: dict[int, list[StoredVariant]] = {}
    for entry_id, name, commitment, value, salt in (
        EntryVariant.objects.filter(entry__submission=submission)
        .order_by("entry_id", "position")
        .values_list("entry_id", "name", "commitment", "value", "salt")
    ):
        variants.setdefault(entry_id, []).append(StoredVariant(name, commitment, value, salt))
    entries = [
        StoredEntry(*row, variants=tuple(variants.get(row[0], ())))
        for row in submission.entries.order_by("id").values_list(
            "id", "algorithm", "commitment", "value", "salt"
        )
    ]
    access_event_record(
        actor=actor,
        action=ACTION,
        status=200,
        target=f"list:{submission.hash_list.name}",
        records=len(entries),
        detail={"submission": submission.pk, "replayed": True},
    )
    return SubmissionResult(submission, entries, replayed=True)


def _refuse_signed_before_revocation(
    *, partner_id: int, hash_list: HashList, drafts: list[EntryDraft], signed_at: datetime
) -> None:
    """An old signature never brings back what its partner's hash lost to a revocation."""
    revoked = (
        Entry.objects.filter(
            hash_list=hash_list,
            partner_id=partner_id,
            status=Entry.Status.REVOKED,
            algorithm__in={draft.algorithm for draft in drafts},
            revoked_at__gte=signed_at,
        )
        .alias(value_md5=MD5("value"))
        .filter(value_md5__in=_md5s(drafts))
        .order_by("revoked_at")  # the latest revocation of a hash names it
        .values_list("algorithm", "value", "id", "revoked_at")
    )
    by_hash = {(algorithm, value): (entry_id, at) for algorithm, value, entry_id, at in revoked}
    for position, draft in enumerate(drafts):
        found = by_hash.get((draft.algorithm, draft.value))
        if found is not None:
            entry_id, revoked_at = found
            raise SignedBeforeRevocation(
                f"entry {entry_id} with this {draft.algorithm} hash was revoked at "
                f"{revoked_at}, after this envelope was signed "
                f"({signed_at}); sign a new submission to add it again",
                pointer=f"/entries/{position}",
                entry=entry_id,
            )


def _raise_first_existing(*, actor: Actor, statement: SignedStatement, values: Any) -> None:
    hash_list, drafts = _drafts(actor=actor, statement=statement, values=values)
    held = set(
        Entry.objects.filter(
            hash_list=hash_list,
            partner=actor.partner,
            status=Entry.Status.ACTIVE,
        )
        .alias(value_md5=MD5("value"))
        .filter(value_md5__in=_md5s(drafts))
        .values_list("algorithm", "value", "id")
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


def _md5s(drafts: list[EntryDraft]) -> list[str]:
    """The MD5s of the drafts' values, as the entries' indexes key on them (a vpdq value is
    too long for a B-tree row): a lookup by MD5(value) uses the index, one by value would
    not. Equal MD5s of different values are told apart by the value compared after."""
    return sorted(
        {hashlib.md5(d.value.encode(), usedforsecurity=False).hexdigest() for d in drafts}
    )
