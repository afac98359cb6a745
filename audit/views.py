from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.selectors import (
    CURSOR_PATTERN,
    AccessEventFilter,
    access_events_page,
    access_period_get,
    access_periods_page,
)
from consortium.api import ConsortiumView
from consortium.errors import MalformedRequest, UnknownAccessPeriod

PAGE_MAX = 1000


class AccessEventsView(ConsortiumView):
    audit_action = "audit.read"
    required_scope = "audit"

    @extend_schema_serializer(component_name="AccessEventPage")
    class OutputSerializer(serializers.Serializer):
        class EventOut(serializers.Serializer):
            id = serializers.IntegerField()
            time = serializers.DateTimeField()
            actor = serializers.CharField()
            partner = serializers.CharField(source="partner.name", allow_null=True)
            key_prefix = serializers.CharField()
            user = serializers.CharField(source="user.get_username", allow_null=True)
            action = serializers.CharField()
            target = serializers.CharField()
            records = serializers.IntegerField()
            status = serializers.IntegerField()
            client_ip = serializers.IPAddressField(allow_null=True)
            detail = serializers.DictField()

        events = EventOut(many=True)
        next = serializers.CharField(allow_null=True, help_text="pass as `before` to go on")

    @extend_schema(
        operation_id="audit_events",
        parameters=[
            OpenApiParameter("partner", str),
            OpenApiParameter("action", str),
            OpenApiParameter(
                "since", str, description="ISO 8601, inclusive; offset ±15:59 at most"
            ),
            OpenApiParameter(
                "until", str, description="ISO 8601, exclusive; offset ±15:59 at most"
            ),
            OpenApiParameter("before", int, description="cursor"),
            OpenApiParameter("after_id", int, description="only ids above this one"),
            OpenApiParameter("last_id", int, description="only ids up to this one"),
            OpenApiParameter("limit", int, description=f"1 to {PAGE_MAX}"),
        ],
        responses=OutputSerializer,
        description=(
            "Access events of every partner, newest first. Needs the audit scope. With "
            "`after_id` and `last_id` of a sealed period, the period's events: each event "
            "is what `consortium_client.accesslog.access_event_encode` encodes."
        ),
    )
    def get(self, request: Request) -> Response:
        filters = AccessEventFilter(request.query_params)
        if not filters.is_valid():
            field, messages = next(iter(filters.errors.items()))
            raise MalformedRequest(f"{field}: {messages[0]}", parameter=field)
        limit = _limit(request)
        page = access_events_page(filters=filters, limit=limit)
        self.audit_records = len(page.events)
        self.audit_target = request.query_params.urlencode()[:255]
        next_cursor = None if page.next_cursor is None else str(page.next_cursor)
        return Response(self.OutputSerializer({"events": page.events, "next": next_cursor}).data)


def _limit(request: Request) -> int:
    raw_limit = request.query_params.get("limit", "100")
    if not CURSOR_PATTERN.fullmatch(raw_limit):
        raise MalformedRequest("limit must be an integer", parameter="limit")
    limit = int(raw_limit)
    if not 1 <= limit <= PAGE_MAX:
        raise MalformedRequest(f"limit must be between 1 and {PAGE_MAX}", parameter="limit")
    return limit


@extend_schema_serializer(component_name="AccessPeriod")
class AccessPeriodOut(serializers.Serializer):
    number = serializers.IntegerField()
    after_id = serializers.IntegerField(help_text="the period holds ids above this one")
    last_id = serializers.IntegerField(help_text="and up to this one")
    count = serializers.IntegerField()
    # Shadows Field.root only for the type checker: DRF's metaclass pops declared fields.
    root = serializers.CharField(  # type: ignore[assignment]
        help_text="hex RFC 9162 root of the events' encodings"
    )
    log_index = serializers.IntegerField(help_text="index of its access_period_sealed leaf")
    sealed_at = serializers.DateTimeField()


class AccessPeriodsView(ConsortiumView):
    audit_action = "audit.periods.read"
    required_scope = "audit"

    @extend_schema_serializer(component_name="AccessPeriodPage")
    class OutputSerializer(serializers.Serializer):
        periods = AccessPeriodOut(many=True)
        next = serializers.CharField(allow_null=True, help_text="pass as `before` to go on")

    @extend_schema(
        operation_id="audit_periods",
        parameters=[
            OpenApiParameter("before", int, description="cursor: a period number"),
            OpenApiParameter("limit", int, description=f"1 to {PAGE_MAX}"),
        ],
        responses=OutputSerializer,
        description="Sealed access-log periods, newest first. Needs the audit scope.",
    )
    def get(self, request: Request) -> Response:
        raw_before = request.query_params.get("before")
        if raw_before is not None and not CURSOR_PATTERN.fullmatch(raw_before):
            raise MalformedRequest("before must be a period number", parameter="before")
        limit = _limit(request)
        periods, next_cursor = access_periods_page(
            before=None if raw_before is None else int(raw_before), limit=limit
        )
        self.audit_records = len(periods)
        self.audit_target = request.query_params.urlencode()[:255]
        body = {"periods": periods, "next": None if next_cursor is None else str(next_cursor)}
        return Response(self.OutputSerializer(body).data)


class AccessPeriodDetailView(ConsortiumView):
    audit_action = "audit.period.read"
    required_scope = "audit"

    @extend_schema(
        operation_id="audit_period",
        responses=AccessPeriodOut,
        description=(
            "One sealed access-log period with the log index of its access_period_sealed "
            "leaf. Its events: `GET /api/v1/audit/events?after_id=&last_id=`. Needs the "
            "audit scope."
        ),
    )
    def get(self, request: Request, number: int) -> Response:
        self.audit_target = f"period:{number}"
        period = access_period_get(number=number)
        if period is None:
            raise UnknownAccessPeriod(f"no access period {number} is sealed")
        self.audit_records = 1
        return Response(AccessPeriodOut(period).data)
