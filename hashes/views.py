from __future__ import annotations

import dataclasses
import json
import re

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from consortium.api import ConsortiumView
from consortium.errors import InvalidCursor, MalformedRequest
from hashes import selectors, services
from hashes.models import Entry
from hashes.serializers import (
    EntryProvenanceSerializer,
    EnvelopeSerializer,
    FeedbackSummarySerializer,
    FeedPageSerializer,
    SubmissionRequestSerializer,
    VariantSerializer,
    entry_provenance,
    feedback_summary,
)

_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _int_param(
    request: Request,
    name: str,
    default: int,
    *,
    low: int,
    high: int,
    error: type = MalformedRequest,
) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits only: int() would also take '١٢', '1_000' and ' 7 ', so that one cursor
    # had many spellings (and a 5000-digit one costs a ValueError, not a 500, either way).
    if not _INTEGER.fullmatch(raw):
        raise error(f"{name} must be an integer", parameter=name)
    value = int(raw)
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}", parameter=name)
    return value


class ListsView(ConsortiumView):
    audit_action = "lists.read"
    required_scope = "read"

    @extend_schema_serializer(component_name="HashList")
    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        purpose = serializers.CharField()
        description = serializers.CharField()
        owner = serializers.CharField()
        visibility = serializers.CharField()
        contributors = serializers.CharField()
        may_submit = serializers.BooleanField()

    @extend_schema(operation_id="lists", responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        hash_lists = selectors.lists_visible(partner=self.partner).select_related("owner")
        data = [
            {
                "name": hash_list.name,
                "purpose": hash_list.purpose,
                "description": hash_list.description,
                "owner": hash_list.owner.name,
                "visibility": hash_list.visibility,
                "contributors": hash_list.contributors,
                "may_submit": selectors.list_may_submit(partner=self.partner, hash_list=hash_list),
            }
            for hash_list in hash_lists.order_by("name")
        ]
        self.audit_records = len(data)
        return Response(self.OutputSerializer(data, many=True).data)


class SubmissionsView(ConsortiumView):
    audit_action = "submission.create"
    required_scope = "submit"

    @extend_schema_serializer(component_name="SubmissionResult")
    class OutputSerializer(serializers.Serializer):
        class EntryRef(serializers.Serializer):
            id = serializers.IntegerField(help_text="also the log index of its entry_added event")
            log_index = serializers.IntegerField()
            algorithm = serializers.CharField()
            commitment = serializers.CharField(help_text="as signed, and as its leaf holds it")
            value = serializers.CharField(allow_null=True, help_text="null once erased")
            salt = serializers.CharField(allow_null=True, help_text="null once erased")
            erased = serializers.BooleanField()
            variants = VariantSerializer(
                many=True, required=False, help_text="only for an entry submitted with variants"
            )

        submission = serializers.IntegerField()
        list = serializers.CharField()
        envelope_sha256 = serializers.CharField()
        entries = EntryRef(many=True)

    @extend_schema(
        operation_id="submission_create",
        request=SubmissionRequestSerializer,
        responses={201: OutputSerializer, 200: OpenApiResponse(OutputSerializer, "a replay")},
        description="A DSSE envelope of type application/vnd.consortium.submission.v2+json, "
        "whose entries sign salted commitments, and beside it `values[i]` = {value, salt} "
        "opening `entries[i]`'s commitment (commitment-mismatch otherwise). Version 1 "
        "envelopes are refused (legacy-payload-version). The envelope is stored in canonical "
        "JSON (sorted keys, standard base64); the signed payload bytes are kept exactly. "
        f"At most {settings.SUBMISSION_MAX_ENTRIES} entries. A statement takes effect once: "
        "the same signed payload again, however re-encoded, returns the same result with "
        "status 200; its nonce with another payload is refused (nonce-reused), and so is a "
        "timestamp outside the accepted window (stale-envelope).",
    )
    def post(self, request: Request) -> Response:
        result = services.submission_create(actor=self.actor(), body=self.body())
        self.access_recorded = True
        submission = result.submission
        body = {
            "submission": submission.pk,
            "list": submission.hash_list.name,
            "envelope_sha256": submission.envelope_sha256,
            "entries": [
                {
                    "id": entry.id,
                    "log_index": entry.id,
                    "algorithm": entry.algorithm,
                    "commitment": entry.commitment,
                    "value": entry.value,
                    "salt": entry.salt,
                    "erased": entry.value is None,
                    **(
                        {"variants": [dataclasses.asdict(v) for v in entry.variants]}
                        if entry.variants
                        else {}
                    ),
                }
                for entry in result.entries
            ],
        }
        return Response(body, status=200 if result.replayed else 201)


class SubmissionEnvelopeView(ConsortiumView):
    audit_action = "submission.envelope.read"
    required_scope = "read"

    @extend_schema(
        operation_id="submission_envelope",
        responses={(200, "application/json"): OpenApiTypes.BINARY},
        description="The submission's DSSE envelope: canonical JSON for version 2 (the signed "
        "payload byte for byte), the bytes received for a legacy version 1 envelope. A legacy "
        "envelope redacted by an erasure is served empty (its SHA-256 stays in the leaves).",
    )
    def get(self, request: Request, submission_id: int) -> HttpResponse:
        submission = selectors.submission_get(partner=self.partner, submission_id=submission_id)
        self.audit_target = f"submission:{submission.pk}"
        self.audit_records = 1
        return HttpResponse(bytes(submission.envelope), content_type="application/json")


class RevocationEnvelopeView(ConsortiumView):
    audit_action = "revocation.envelope.read"
    required_scope = "read"

    @extend_schema(
        operation_id="revocation_envelope",
        responses={(200, "application/json"): OpenApiTypes.BINARY},
        description="A signed revocation's DSSE envelope, byte for byte as received, so a "
        "partner can check the signature behind a tombstone (its leaf's `envelope` is the "
        "SHA-256 of these bytes). Visible to the partners who see one of the entries it ended. "
        "An administrator's revocation has none (404 unknown-revocation).",
    )
    def get(self, request: Request, revocation_id: int) -> HttpResponse:
        revocation = selectors.revocation_signed_get(
            partner=self.partner, revocation_id=revocation_id
        )
        self.audit_target = f"revocation:{revocation.pk}"
        self.audit_records = 1
        # The selector returns signed revocations only: their envelope is never NULL.
        return HttpResponse(bytes(revocation.envelope or b""), content_type="application/json")


class EntryDetailView(ConsortiumView):
    audit_action = "entry.read"
    required_scope = "read"

    @extend_schema_serializer(component_name="Entry")
    class OutputSerializer(EntryProvenanceSerializer):
        class RevocationOut(serializers.Serializer):
            reason = serializers.CharField()
            revoked_by = serializers.CharField()
            log_index = serializers.IntegerField()
            revoked_at = serializers.DateTimeField()

        class VerdictOut(serializers.Serializer):
            partner = serializers.CharField()
            verdict = serializers.CharField()
            reason = serializers.CharField()
            grade = serializers.CharField(allow_null=True)
            note = serializers.CharField(
                allow_null=True,
                help_text="shown to the entry's submitter and the verdict's author; null to others",
            )
            log_index = serializers.IntegerField(help_text="its entry_feedback event")
            created_at = serializers.DateTimeField()

        id = serializers.IntegerField()
        note = serializers.CharField()
        revocation = RevocationOut(allow_null=True)
        variants = VariantSerializer(many=True, help_text="empty for an entry without variants")
        verdicts = VerdictOut(many=True, help_text="each partner's current verdict, by log index")

    @extend_schema(operation_id="entry", responses=OutputSerializer)
    def get(self, request: Request, entry_id: int) -> Response:
        entry: Entry = selectors.entry_get(partner=self.partner, entry_id=entry_id)
        self.audit_target = f"entry:{entry.pk}"
        self.audit_records = 1
        revocation = None
        if entry.revocation is not None:
            revocation = {
                "reason": entry.revocation.reason,
                "revoked_by": entry.revocation.revoked_by,
                "log_index": entry.revoked_log_index,
                "revoked_at": entry.revoked_at,
            }
        data = {
            "id": entry.pk,
            "note": entry.note,
            "revocation": revocation,
            "variants": list(
                entry.variants.order_by("position").values("name", "commitment", "value", "salt")
            ),
            "verdicts": [
                {
                    "partner": verdict.partner.name,
                    "verdict": verdict.verdict,
                    "reason": verdict.reason,
                    "grade": verdict.grade or None,
                    "note": verdict.note
                    if self.partner.pk in (entry.partner_id, verdict.partner_id)
                    else None,
                    "log_index": verdict.log_index,
                    "created_at": verdict.created_at,
                }
                for verdict in selectors.entry_verdicts(entry=entry)
            ],
            **entry_provenance(entry),
        }
        return Response(self.OutputSerializer(data).data)


class FeedbackView(ConsortiumView):
    audit_action = "feedback.create"
    required_scope = "read"

    @extend_schema_serializer(component_name="FeedbackResult")
    class OutputSerializer(serializers.Serializer):
        feedback = serializers.IntegerField()
        entry = serializers.IntegerField()
        verdict = serializers.CharField()
        reason = serializers.CharField()
        log_index = serializers.IntegerField(help_text="its entry_feedback event")
        log_indexes = serializers.ListField(
            child=serializers.IntegerField(),
            help_text="log indexes this verdict appended: entry_feedback, then entry_confirmed "
            "or entry_quarantined if it confirmed or quarantined the entry",
        )
        summary = FeedbackSummarySerializer(help_text="the entry's feedback after this verdict")

    @extend_schema(
        operation_id="feedback_create",
        request=EnvelopeSerializer,
        responses={201: OutputSerializer, 200: OpenApiResponse(OutputSerializer, "a replay")},
        description="A DSSE envelope of type application/vnd.consortium.feedback.v1+json: "
        "{entry, verdict, reason, note?, grade?, timestamp, nonce}, where `entry` is this path's "
        "entry, `verdict` agree, disagree or false_positive and `reason` a code the verdict "
        "allows (docs/formats.md). One current verdict per partner and entry: a new one replaces "
        "it, the old one stays in the history and the log. Refused for an entry this partner "
        "cannot see (unknown-entry, as for a missing one), its own entry "
        "(feedback-on-own-entry), a revoked or erased entry, a grade not on the list's scale "
        "(unknown-grade). Takes effect once, like a submission: the same signed payload again "
        "returns the same result with status 200.",
    )
    def post(self, request: Request, entry_id: int) -> Response:
        result = services.feedback_create(
            actor=self.actor(), entry_id=entry_id, envelope=self.body()
        )
        self.access_recorded = True
        feedback = result.feedback
        body = {
            "feedback": feedback.pk,
            "entry": feedback.entry_id,
            "verdict": feedback.verdict,
            "reason": feedback.reason,
            "log_index": feedback.log_index,
            "log_indexes": result.log_indexes,
            "summary": feedback_summary(result.entry),
        }
        return Response(body, status=200 if result.replayed else 201)


class QuarantineResolutionView(ConsortiumView):
    audit_action = "quarantine.resolve"
    required_scope = "submit"

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(help_text="why it may match again; every partner reads it")

    @extend_schema_serializer(component_name="QuarantineResolution")
    class OutputSerializer(serializers.Serializer):
        entry = serializers.IntegerField()
        resolution = serializers.CharField(help_text="restored")
        resolved_by = serializers.CharField()
        reason = serializers.CharField()
        log_index = serializers.IntegerField(help_text="its entry_quarantine_resolved event")

    @extend_schema(
        operation_id="quarantine_restore",
        request=InputSerializer,
        responses={201: OutputSerializer},
        description="The entry's submitter restores its quarantined entry (it matches again), "
        "with a reason, as an entry_quarantine_resolved event. To end it the other way, revoke "
        "the entry. Refused for another partner's entry (not-entry-submitter), one this "
        "partner cannot see (unknown-entry) and one not quarantined (entry-not-quarantined).",
    )
    def post(self, request: Request, entry_id: int) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        reason = data.get("reason")
        if not isinstance(reason, str):
            raise MalformedRequest("reason must be text", pointer="/reason")
        result = services.quarantine_restore(actor=self.actor(), entry_id=entry_id, reason=reason)
        self.access_recorded = True
        resolution = result.resolution
        body = {
            "entry": result.entry.pk,
            "resolution": resolution.outcome,
            "resolved_by": resolution.resolved_by,
            "reason": resolution.reason,
            "log_index": resolution.log_index,
        }
        return Response(body, status=201)


class RevocationsView(ConsortiumView):
    audit_action = "revocation.create"
    required_scope = "submit"

    @extend_schema_serializer(component_name="RevocationResult")
    class OutputSerializer(serializers.Serializer):
        class Tombstone(serializers.Serializer):
            entry = serializers.IntegerField()
            log_index = serializers.IntegerField()

        revocation = serializers.IntegerField()
        tombstones = Tombstone(many=True)

    @extend_schema(
        operation_id="revocation_create",
        request=EnvelopeSerializer,
        responses={201: OutputSerializer, 200: OpenApiResponse(OutputSerializer, "a replay")},
        description="A DSSE envelope of type application/vnd.consortium.revocation.v1+json "
        "naming entries this partner submitted, with a reason. Takes effect once, like a "
        "submission: the same signed payload again returns the same result with status 200.",
    )
    def post(self, request: Request) -> Response:
        result = services.revocation_create(actor=self.actor(), envelope=self.body())
        self.access_recorded = True
        body = {
            "revocation": result.revocation.pk,
            "tombstones": [{"entry": e, "log_index": i} for e, i in result.events],
        }
        return Response(body, status=200 if result.replayed else 201)


class FeedView(ConsortiumView):
    audit_action = "feed.read"
    required_scope = "read"

    @extend_schema(
        operation_id="feed",
        parameters=[
            OpenApiParameter(
                "after",
                int,
                description="cursor: `next` of the previous page; omit to start at the beginning",
            ),
            OpenApiParameter("limit", int, description=f"1 to {settings.FEED_PAGE_MAX}"),
        ],
        responses=FeedPageSerializer,
        description="Log events this partner may see, in log order: adds, tombstones, "
        "erasures, signing keys and partner status. Each event is its log leaf, verbatim. "
        "An entry_added leaf holds a salted commitment; `values` holds, for each entry_added "
        "event of the page in page order, the value and salt that open it (check them with "
        "the commitment), or `erased: true` once the value was erased. Keep calling with "
        "`after=next` while `has_more` is true; a page may hold fewer than `limit` events "
        "(it looks at a bounded range of the log, and ends early once its values would pass "
        "FEED_PAGE_MAX_BYTES; its first entry always comes).",
    )
    def get(self, request: Request) -> HttpResponse:
        after = _int_param(request, "after", -1, low=-1, high=2**62, error=InvalidCursor)
        limit = _int_param(request, "limit", 1000, low=1, high=settings.FEED_PAGE_MAX)
        page = selectors.feed_page(partner=self.partner, after=after, limit=limit)
        self.audit_target = f"after:{after}"
        self.audit_records = len(page.leaves)
        # The leaves are JSON already and are served verbatim: verifiers must hash exactly
        # what they receive, so they are spliced in rather than decoded and re-encoded.
        body = b'{"events":[%b],"values":%b,"next":%b,"has_more":%b}' % (
            b",".join(page.leaves),
            page.values,
            json.dumps(str(page.next_cursor)).encode(),
            b"true" if page.has_more else b"false",
        )
        return HttpResponse(body, content_type="application/json")
