"""Validation of signed payloads. Each function names the first problem it finds, with a
JSON-pointer-like path, and never returns a partially valid result."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from consortium.errors import (
    BatchTooLarge,
    CommitmentMismatch,
    DuplicateInBatch,
    DuplicateVariant,
    EmptyBatch,
    InvalidHashValue,
    InvalidPayload,
    TooManyVariants,
    UnknownAlgorithm,
    UnknownVariant,
)
from consortium_client import feedback
from consortium_client.commitments import (
    CommitmentError,
    commitment_check,
    commitment_parse,
    salt_parse,
)
from consortium_client.hashvalues import ALGORITHMS, HashValueError, hash_value_parse
from consortium_client.strictjson import string_pointer
from consortium_client.variants import MAX_VARIANTS, VARIANT_NAMES

# Used with fullmatch: `$` would also accept a label ending in a newline.
LABEL_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
MAX_LABELS = 32
MAX_NOTE = 2000
MAX_REASON = 1000
MAX_NONCE = 128
NONCE_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MAX_NONCE}}}")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class StatementHeader:
    signed_at: datetime
    nonce: str


@dataclass(frozen=True)
class SignedVariant:
    """A variant of a PDQ entry (an edit of the submitter's image, named in
    `consortium_client.variants.VARIANTS`) as the payload signs it: a commitment."""

    name: str
    commitment: str


@dataclass(frozen=True)
class VariantDraft:
    """A signed variant with the value and salt that open its commitment."""

    name: str
    commitment: str
    value: str
    salt: str


@dataclass(frozen=True)
class SignedEntry:
    """An entry as a version 2 payload signs it: a commitment, never the value."""

    algorithm: str
    commitment: str
    labels: list[str]
    note: str
    quality: int | None = None
    variants: tuple[SignedVariant, ...] = ()


@dataclass(frozen=True)
class EntryDraft:
    """A signed entry with the value and salt that open its commitment."""

    algorithm: str
    commitment: str
    value: str
    salt: str
    labels: list[str]
    note: str
    quality: int | None = None
    variants: tuple[VariantDraft, ...] = ()


@dataclass(frozen=True)
class SubmissionPayload:
    list_name: str
    entries: list[SignedEntry]


@dataclass(frozen=True)
class RevocationPayload:
    entry_ids: list[int]
    reason: str


def _storable_text(payload: dict[str, Any]) -> None:
    """Every string of a signed payload, names included, must be text PostgreSQL can hold
    and UTF-8 can encode: a NUL or a lone surrogate would fail at the database (a 500)
    after the signature was accepted, so it is refused here, first, with its pointer."""
    pointer = string_pointer(payload, _UNSTORABLE.search)
    if pointer is not None:
        raise InvalidPayload(
            "text must not contain NUL (\\u0000) or a lone surrogate", pointer=pointer
        )


def statement_header_parse(payload: dict[str, Any]) -> StatementHeader:
    """The fields every signed statement carries: when it was signed, and its nonce. Every
    string of the payload is checked storable first, so no kind can forget it."""
    _storable_text(payload)
    timestamp = payload.get("timestamp")
    if not isinstance(timestamp, str):
        raise InvalidPayload("timestamp must be an RFC 3339 date-time string", pointer="/timestamp")
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError as exc:
        raise InvalidPayload(
            "timestamp is not an RFC 3339 date-time", pointer="/timestamp"
        ) from exc
    if moment.tzinfo is None:
        raise InvalidPayload("timestamp must carry a time zone", pointer="/timestamp")
    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce):
        raise InvalidPayload(
            f"nonce must be 1 to {MAX_NONCE} printable ASCII characters", pointer="/nonce"
        )
    return StatementHeader(signed_at=moment, nonce=nonce)


def _batch_size(items: Any, pointer: str) -> list[Any]:
    if not isinstance(items, list):
        raise InvalidPayload(f"{pointer[1:]} must be a list", pointer=pointer)
    if not items:
        raise EmptyBatch("the batch has no entries", pointer=pointer)
    limit = settings.SUBMISSION_MAX_ENTRIES
    if len(items) > limit:
        raise BatchTooLarge(
            f"the batch has {len(items)} entries; the limit is {limit}",
            pointer=pointer,
            limit=limit,
        )
    return items


def hash_item_parse(item: Any, pointer: str) -> tuple[str, str]:
    """The (algorithm, normalised value) of an object such as an entry or a match query."""
    if not isinstance(item, dict):
        raise InvalidPayload("an entry must be an object", pointer=pointer)
    algorithm = item.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise UnknownAlgorithm(
            f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}",
            pointer=f"{pointer}/algorithm",
        )
    try:
        value = hash_value_parse(algorithm, item.get("value"))
    except HashValueError as exc:
        raise InvalidHashValue(str(exc), pointer=f"{pointer}/value") from exc
    return algorithm, value


def _algorithm(item: Any, pointer: str) -> str:
    if not isinstance(item, dict):
        raise InvalidPayload("an entry must be an object", pointer=pointer)
    algorithm = item.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise UnknownAlgorithm(
            f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}",
            pointer=f"{pointer}/algorithm",
        )
    return algorithm


def _entry(item: Any, pointer: str) -> SignedEntry:
    algorithm = _algorithm(item, pointer)
    if "value" in item:
        # A version 1 habit that would put the value under the signature, where erasing it
        # would break the signature over the whole batch.
        raise InvalidPayload(
            "a signed entry carries a commitment, never its value; send the value beside "
            "the envelope in `values`",
            pointer=f"{pointer}/value",
        )
    try:
        commitment = commitment_parse(item.get("commitment"))
    except CommitmentError as exc:
        raise InvalidPayload(str(exc), pointer=f"{pointer}/commitment") from exc
    labels = item.get("labels", [])
    if not isinstance(labels, list) or len(labels) > MAX_LABELS:
        raise InvalidPayload(
            f"labels must be a list of at most {MAX_LABELS}", pointer=f"{pointer}/labels"
        )
    for position, label in enumerate(labels):
        if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
            raise InvalidPayload(
                "a label is 1-64 characters of a-z, 0-9, '_', '.', ':', '-'",
                pointer=f"{pointer}/labels/{position}",
            )
    note = item.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise InvalidPayload(
            f"note must be text of at most {MAX_NOTE} characters", pointer=f"{pointer}/note"
        )
    quality = item.get("quality")
    if quality is not None and (
        algorithm != "pdq"
        or not isinstance(quality, int)
        or isinstance(quality, bool)
        or not 0 <= quality <= 100
    ):
        raise InvalidPayload(
            "quality is PDQ's 0-100 score, for pdq entries only", pointer=f"{pointer}/quality"
        )
    variants = _variants(item.get("variants"), algorithm, f"{pointer}/variants")
    return SignedEntry(algorithm, commitment, sorted(set(labels)), note, quality, variants)


def _variants(items: Any, algorithm: str, pointer: str) -> tuple[SignedVariant, ...]:
    """An entry's signed variants: named edits of a PDQ entry's image, each committed like
    the entry's value. Absent (or empty) for an entry without variants."""
    if items is None or items == []:
        return ()
    if algorithm != "pdq":
        raise InvalidPayload("only pdq entries carry variants", pointer=pointer)
    if not isinstance(items, list):
        raise InvalidPayload('variants must be a list of {"name", "commitment"}', pointer=pointer)
    if len(items) > MAX_VARIANTS:
        raise TooManyVariants(
            f"the entry has {len(items)} variants; the limit is {MAX_VARIANTS}",
            pointer=pointer,
            limit=MAX_VARIANTS,
        )
    variants: list[SignedVariant] = []
    seen: dict[str, int] = {}
    for position, item in enumerate(items):
        at = f"{pointer}/{position}"
        if not isinstance(item, dict) or set(item) != {"name", "commitment"}:
            raise InvalidPayload('a variant is an object {"name", "commitment"}', pointer=at)
        name = item["name"]
        if not isinstance(name, str) or name not in VARIANT_NAMES:
            raise UnknownVariant(
                f"unknown variant {name!r}; known: {', '.join(VARIANT_NAMES)}",
                pointer=f"{at}/name",
            )
        if name in seen:
            raise DuplicateVariant(
                f"variants {seen[name]} and {position} are both {name!r}", pointer=f"{at}/name"
            )
        seen[name] = position
        try:
            commitment = commitment_parse(item["commitment"])
        except CommitmentError as exc:
            raise InvalidPayload(str(exc), pointer=f"{at}/commitment") from exc
        variants.append(SignedVariant(name, commitment))
    return tuple(variants)


def _opening(algorithm: str, item: Any, pointer: str) -> tuple[str, str]:
    """The (normalised value, salt) of an opening `{"value", "salt"}`, well formed."""
    if not isinstance(item, dict):
        raise InvalidPayload('a value is an object {"value", "salt"}', pointer=pointer)
    try:
        value = hash_value_parse(algorithm, item.get("value"))
    except HashValueError as exc:
        raise InvalidHashValue(str(exc), pointer=f"{pointer}/value") from exc
    salt = item.get("salt")
    try:
        salt_parse(salt)
    except CommitmentError as exc:
        raise InvalidPayload(str(exc), pointer=f"{pointer}/salt") from exc
    assert isinstance(salt, str)  # noqa: S101 - salt_parse accepted it
    return value, salt


def _opening_check(
    algorithm: str, item: Any, commitment: str, pointer: str, signed: str
) -> tuple[str, str]:
    """The (value, salt) of an opening once it opens `commitment`; `signed` says where the
    commitment was signed, for the refusal."""
    value, salt = _opening(algorithm, item, pointer)
    try:
        commitment_check(algorithm, value, salt, commitment)
    except CommitmentError as exc:
        raise CommitmentMismatch(f"{exc} {signed}", pointer=pointer) from exc
    return value, salt


def _variants_open(
    entry: SignedEntry, item: dict[str, Any], position: int, pointer: str
) -> tuple[VariantDraft, ...]:
    """Open each signed variant of `entry` with `item["variants"][j]`, in the same order."""
    openings = item.get("variants")
    if not entry.variants:
        if openings not in (None, []):
            raise InvalidPayload(
                f"entries[{position}] signs no variants", pointer=f"{pointer}/variants"
            )
        return ()
    if not isinstance(openings, list) or len(openings) != len(entry.variants):
        raise InvalidPayload(
            f"variants must be a list of {len(entry.variants)} openings, in the order "
            f"entries[{position}] signs them",
            pointer=f"{pointer}/variants",
        )
    drafts: list[VariantDraft] = []
    for index, (variant, opening) in enumerate(zip(entry.variants, openings, strict=True)):
        value, salt = _opening_check(
            entry.algorithm,
            opening,
            variant.commitment,
            f"{pointer}/variants/{index}",
            f"of variant {variant.name!r} signed in entries[{position}]",
        )
        drafts.append(VariantDraft(variant.name, variant.commitment, value, salt))
    return tuple(drafts)


def submission_payload_parse(payload: dict[str, Any]) -> SubmissionPayload:
    """The list and signed entries of a version 2 submission payload."""
    list_name = payload.get("list")
    if not isinstance(list_name, str) or not list_name:
        raise InvalidPayload("list must name a list", pointer="/list")
    items = _batch_size(payload.get("entries"), "/entries")
    entries = [_entry(item, f"/entries/{position}") for position, item in enumerate(items)]
    return SubmissionPayload(list_name, entries)


def submission_values_open(entries: list[SignedEntry], values: Any) -> list[EntryDraft]:
    """Open each signed entry with `values[i]` ({"value", "salt"}), checking the value
    against its signed commitment; pointers are into the request body (`/values/<i>`).

    Duplicates are found by algorithm and value: two commitments under different salts may
    hide the same hash, and a batch must not hold one hash twice."""
    if not isinstance(values, list):
        raise InvalidPayload("values must be a list", pointer="/values")
    if len(values) != len(entries):
        raise InvalidPayload(
            f"values has {len(values)} items for {len(entries)} signed entries; "
            "values[i] opens entries[i]",
            pointer="/values",
        )
    drafts: list[EntryDraft] = []
    seen: dict[tuple[str, str], int] = {}
    for position, (entry, item) in enumerate(zip(entries, values, strict=True)):
        pointer = f"/values/{position}"
        value, salt = _opening_check(
            entry.algorithm, item, entry.commitment, pointer, f"signed in entries[{position}]"
        )
        key = (entry.algorithm, value)
        if key in seen:
            raise DuplicateInBatch(
                f"entries {seen[key]} and {position} are the same {entry.algorithm} hash",
                pointer=pointer,
            )
        seen[key] = position
        variants = _variants_open(entry, item, position, pointer)
        drafts.append(
            EntryDraft(
                entry.algorithm,
                entry.commitment,
                value,
                salt,
                entry.labels,
                entry.note,
                entry.quality,
                variants,
            )
        )
    return drafts


def revocation_payload_parse(payload: dict[str, Any]) -> RevocationPayload:
    items = _batch_size(payload.get("entries"), "/entries")
    ids: list[int] = []
    seen: set[int] = set()
    for position, item in enumerate(items):
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise InvalidPayload(
                "an entry is named by its id, a non-negative integer",
                pointer=f"/entries/{position}",
            )
        if item in seen:
            raise DuplicateInBatch(f"entry {item} is named twice", pointer=f"/entries/{position}")
        seen.add(item)
        ids.append(item)
    reason = payload.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise InvalidPayload(
            f"reason must be text of 1 to {MAX_REASON} characters", pointer="/reason"
        )
    return RevocationPayload(ids, reason.strip())


@dataclass(frozen=True)
class FeedbackPayload:
    entry_id: int
    verdict: str
    reason: str
    note: str
    grade: str


def feedback_payload_parse(payload: dict[str, Any]) -> FeedbackPayload:
    """A verdict on one entry: `entry`, `verdict`, a `reason` code the verdict allows, and
    optionally a `note` (capped) and, on an agree, a `grade` (checked against the list's
    scale by the service, which knows the list)."""
    unknown = sorted(set(payload) - _FEEDBACK_FIELDS)
    if unknown:
        raise InvalidPayload(f"unknown field {unknown[0]!r}", pointer=f"/{unknown[0]}")
    entry_id = payload.get("entry")
    if not isinstance(entry_id, int) or isinstance(entry_id, bool) or entry_id < 0:
        raise InvalidPayload("entry is the entry's id, a non-negative integer", pointer="/entry")
    verdict = payload.get("verdict")
    if verdict not in feedback.VERDICTS:
        raise InvalidPayload(
            f"verdict must be one of {', '.join(feedback.VERDICTS)}", pointer="/verdict"
        )
    reason = payload.get("reason")
    if reason not in feedback.REASONS[verdict]:
        raise InvalidPayload(
            f"a {verdict} verdict takes a reason of {', '.join(feedback.REASONS[verdict])}",
            pointer="/reason",
        )
    note = payload.get("note", "")
    if not isinstance(note, str) or len(note) > feedback.NOTE_MAX:
        raise InvalidPayload(
            f"note must be text of at most {feedback.NOTE_MAX} characters", pointer="/note"
        )
    grade = payload.get("grade")
    if grade is not None and (verdict != feedback.AGREE or not isinstance(grade, str)):
        raise InvalidPayload("only an agree verdict carries a grade, as text", pointer="/grade")
    return FeedbackPayload(entry_id, verdict, reason, note, grade or "")


_FEEDBACK_FIELDS = frozenset({"entry", "verdict", "reason", "note", "grade", "timestamp", "nonce"})
