"""Shapes shared by several views (for the OpenAPI schema and rendering)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from hashes.models import Entry
from hashes.selectors import EntryShown


class EnvelopeSerializer(serializers.Serializer):
    """A DSSE envelope. The server verifies and stores the exact bytes it receives."""

    class SignatureSerializer(serializers.Serializer):
        keyid = serializers.CharField(required=False, help_text="optional, unauthenticated hint")
        sig = serializers.CharField(help_text="base64 Ed25519 signature over DSSE PAE")

    payloadType = serializers.CharField()
    payload = serializers.CharField(help_text="base64 of the payload JSON")
    signatures = SignatureSerializer(many=True)


class OpeningSerializer(serializers.Serializer):
    value = serializers.CharField(help_text="the hash value, lowercase hex")
    salt = serializers.CharField(help_text="32 lowercase hex characters")


class VariantSerializer(serializers.Serializer):
    """A variant of a PDQ entry: the PDQ hash of a named edit of the submitter's image."""

    name = serializers.CharField(help_text="one of consortium_client.variants.VARIANTS")
    commitment = serializers.CharField(help_text="as signed, and as the entry's leaf holds it")
    value = serializers.CharField(allow_null=True, help_text="null once the entry is erased")
    salt = serializers.CharField(allow_null=True, help_text="null once the entry is erased")


class SubmissionRequestSerializer(serializers.Serializer):
    """A submission: the signed envelope of commitments, and the values that open them."""

    class ValueSerializer(OpeningSerializer):
        variants = OpeningSerializer(
            many=True,
            required=False,
            help_text="opens the entry's signed variants, in the same order",
        )

    envelope = EnvelopeSerializer()
    values = ValueSerializer(many=True, help_text="values[i] opens the envelope's entries[i]")


class FeedEventSerializer(serializers.Serializer):
    """One log leaf, served verbatim. Fields beyond these depend on `type`."""

    v = serializers.IntegerField()
    index = serializers.IntegerField()
    type = serializers.ChoiceField(
        choices=[
            "entry_added",
            "entry_revoked",
            "signing_key_registered",
            "signing_key_revoked",
            "partner_suspended",
            "partner_reactivated",
            "entry_erased",
            "access_period_sealed",
            "entry_feedback",
            "entry_confirmed",
            "entry_quarantined",
            "entry_quarantine_resolved",
        ]
    )
    time = serializers.CharField()
    nonce = serializers.CharField(help_text="128 random bits chosen by the server, as hex")
    list = serializers.CharField(required=False)
    entry = serializers.IntegerField(required=False)
    algorithm = serializers.CharField(required=False)
    commitment = serializers.CharField(required=False, help_text="salted commitment to the value")
    labels = serializers.ListField(child=serializers.CharField(), required=False)
    partner = serializers.CharField(required=False)
    key = serializers.CharField(required=False, allow_null=True)
    envelope = serializers.CharField(required=False, allow_null=True)
    revoked_by = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)
    by = serializers.CharField(required=False, help_text="who erased: admin:<user> or command")
    variants = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        required=False,
        help_text="entry_added of a pdq entry with variants: [{name, commitment}]",
    )
    review = serializers.CharField(
        required=False, help_text="entry_added: pending, when the list requires review"
    )
    verdict = serializers.CharField(required=False, help_text="entry_feedback")
    grade = serializers.CharField(
        required=False, allow_null=True, help_text="entry_feedback, entry_confirmed"
    )
    status = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="entry_feedback: the entry's status after it (confirmed, disputed, pending)",
    )
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        required=False,
        help_text="entry_feedback: current verdicts after it, {agree, disagree, false_positive}",
    )
    confirmed_by = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="entry_confirmed"
    )
    false_positives = serializers.IntegerField(required=False, help_text="entry_quarantined")
    resolution = serializers.CharField(
        required=False, help_text="entry_quarantine_resolved: restored or revoked"
    )
    resolved_by = serializers.CharField(required=False, help_text="entry_quarantine_resolved")


class FeedValueSerializer(serializers.Serializer):
    """What opens one entry_added leaf of the page: its value and salt, or `erased`."""

    index = serializers.IntegerField(help_text="the log index of the entry_added event")
    value = serializers.CharField(required=False)
    salt = serializers.CharField(required=False)
    erased = serializers.BooleanField(required=False)
    variants = OpeningSerializer(
        many=True,
        required=False,
        help_text="opens the leaf's variants, in order; only for a leaf that has variants",
    )


class FeedPageSerializer(serializers.Serializer):
    events = FeedEventSerializer(many=True)
    values = FeedValueSerializer(many=True, help_text="one per entry_added event, in order")
    next = serializers.CharField(help_text="pass as `after` to continue")
    has_more = serializers.BooleanField()


class FeedbackSummarySerializer(serializers.Serializer):
    """What partners' current verdicts on an entry add up to (docs/api.md, the status rule)."""

    agree = serializers.IntegerField()
    disagree = serializers.IntegerField()
    false_positive = serializers.IntegerField()
    status = serializers.CharField(
        allow_null=True, help_text="confirmed, disputed, pending, or null"
    )
    review = serializers.CharField(
        allow_null=True,
        help_text="pending or confirmed when the list required review; null otherwise",
    )
    grade = serializers.CharField(allow_null=True, help_text="the confirming reviewer's grade")
    quarantined = serializers.BooleanField(help_text="held out of matching until resolved")


class EntryProvenanceSerializer(serializers.Serializer):
    """What every view that shows an entry shows: its hash, status and who vouches for it."""

    list = serializers.CharField()
    algorithm = serializers.CharField()
    commitment = serializers.CharField(help_text="the salted commitment its log leaf holds")
    value = serializers.CharField(allow_null=True, help_text="null once erased")
    salt = serializers.CharField(
        allow_null=True, help_text="opens the commitment; null once erased"
    )
    erased = serializers.BooleanField()
    labels = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField(help_text="active, revoked or erased")
    quality = serializers.IntegerField(allow_null=True, help_text="PDQ quality, if given")
    low_quality = serializers.BooleanField(help_text="quality below PDQ_QUALITY_FLOOR")
    partner = serializers.CharField(help_text="the submitter")
    signing_key = serializers.CharField(help_text="id of the key that signed the submission")
    submission = serializers.IntegerField()
    envelope_sha256 = serializers.CharField()
    log_index = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    feedback = FeedbackSummarySerializer()


def quality_is_low(quality: int | None) -> bool:
    return quality is not None and quality < settings.PDQ_QUALITY_FLOOR


def entry_provenance(entry: Entry) -> dict[str, Any]:
    """The EntryProvenanceSerializer fields of `entry` (loaded with entries_with_provenance)."""
    return shown_provenance(EntryShown.of(entry))


def shown_provenance(entry: EntryShown) -> dict[str, Any]:
    """The EntryProvenanceSerializer fields of an entry as a selector shows it."""
    return {
        "list": entry.list_name,
        "algorithm": entry.algorithm,
        "commitment": entry.commitment,
        "value": entry.value,
        "salt": entry.salt,
        "erased": entry.status == Entry.Status.ERASED,
        "labels": entry.labels,
        "status": entry.status,
        "quality": entry.quality,
        "low_quality": quality_is_low(entry.quality),
        "partner": entry.partner_name,
        "signing_key": entry.signing_key,
        "submission": entry.submission_id,
        "envelope_sha256": entry.envelope_sha256,
        "log_index": entry.id,  # an entry's id is the log index of its entry_added event
        "created_at": entry.created_at,
        "feedback": feedback_summary(entry),
    }


def feedback_summary(entry: Entry | EntryShown) -> dict[str, Any]:
    return {
        "agree": entry.agree_count,
        "disagree": entry.disagree_count,
        "false_positive": entry.false_positive_count,
        "status": entry.feedback_status,
        "review": entry.review,
        "grade": entry.grade or None,
        "quarantined": entry.quarantined,
    }
