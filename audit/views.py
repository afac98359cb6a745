from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.selectors import CURSOR_PATTERN, AccessEventFilter, access_events_page
from consortium.api import ConsortiumView
from consortium.errors import MalformedRequest

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
            OpenApiParameter("limit", int, description=f"1 to {PAGE_MAX}"),
        ],
        responses=OutputSerializer,
        description="Access events of every partner, newest first. Needs the audit scope.",
    )
    def get(self, request: Request) -> Response:
        filters = AccessEventFilter(request.query_params)
        if not filters.is_valid():
            field, messages = next(iter(filters.errors.items()))
            raise MalformedRequest(f"{field}: {messages[0]}", parameter=field)
        raw_limit = request.query_params.get("limit", "100")
        if not CURSOR_PATTERN.fullmatch(raw_limit):
            raise MalformedRequest("limit must be an integer", parameter="limit")
        limit = int(raw_limit)
        if not 1 <= limit <= PAGE_MAX:
            raise MalformedRequest(f"limit must be between 1 and {PAGE_MAX}", parameter="limit")
        page = access_events_page(filters=filters, limit=limit)
        self.audit_records = len(page.events)
        self.audit_target = request.query_params.urlencode()[:255]
        next_cursor = None if page.next_cursor is None else str(page.next_cursor)
        return Response(self.OutputSerializer({"events": page.events, "next": next_cursor}).data)
