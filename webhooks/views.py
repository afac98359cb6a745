"""/api/v1/webhooks: a partner's own subscriptions, their delivery log, and test messages.

Scope `read` (a webhook delivers what the feed serves). Every request is an access event:
writes record theirs in their service's transaction, reads and refusals here.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.selectors import CURSOR_PATTERN
from consortium.api import ConsortiumView
from consortium.errors import InvalidCursor, LimitOutOfRange
from webhooks import selectors, services
from webhooks.events import ROUTES, WEBHOOK_TYPES
from webhooks.models import Delivery, Subscription

DELIVERIES_PAGE_MAX = 1000
EVENT_TYPES_HELP = "; ".join(f"`{route.webhook_type}`: {route.description}" for route in ROUTES)


@extend_schema_serializer(component_name="Webhook")
class WebhookOut(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_TYPES))
    description = serializers.CharField()
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField(
        help_text="why it is disabled: by the partner, or after failing deliveries; "
        "empty while enabled"
    )
    disabled_at = serializers.DateTimeField(allow_null=True)
    position = serializers.IntegerField(
        help_text="log index up to which every event for it was delivered or passed over"
    )
    failing_attempts = serializers.IntegerField(help_text="failed attempts of the next message")
    retry_at = serializers.DateTimeField(allow_null=True, help_text="when it is tried again")
    failing_since = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="WebhookCreated")
class WebhookCreatedOut(WebhookOut):
    secret = serializers.CharField(
        help_text="`whsec_<base64>`: the HMAC key of `webhook-signature`, shown only now"
    )


def _out(subscription: Subscription) -> dict[str, Any]:
    cursor = subscription.cursor
    return {
        "id": subscription.pk,
        "url": subscription.url,
        "event_types": subscription.event_types,
        "description": subscription.description,
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason,
        "disabled_at": subscription.disabled_at,
        "position": cursor.position,
        "failing_attempts": cursor.attempts,
        "retry_at": cursor.retry_at,
        "failing_since": cursor.failing_since,
        "created_at": subscription.created_at,
    }


class WebhooksView(ConsortiumView):
    required_scope = "read"

    @property
    def audit_action(self) -> str:  # type: ignore[override]
        return "webhook.create" if self.request.method == "POST" else "webhooks.list"

    @extend_schema_serializer(component_name="WebhookCreate")
    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2048, help_text="https (see docs/webhooks.md)")
        event_types = serializers.ListField(
            child=serializers.CharField(max_length=40),
            min_length=1,
            max_length=len(WEBHOOK_TYPES),
            help_text=EVENT_TYPES_HELP,
        )
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)

    @extend_schema(
        operation_id="webhooks",
        responses=WebhookOut(many=True),
        description="This partner's webhook subscriptions, oldest first (at most "
        "WEBHOOK_MAX_PER_PARTNER).",
    )
    def get(self, request: Request) -> Response:
        found = [_out(item) for item in selectors.subscriptions_of(partner=self.partner)]
        self.audit_records = len(found)
        return Response(WebhookOut(found, many=True).data)

    @extend_schema(
        operation_id="webhook_create",
        request=InputSerializer,
        responses={201: WebhookCreatedOut},
        description="Subscribe an HTTPS endpoint to event types. It receives, signed the "
        "Standard Webhooks way, every event appended from now on that this partner may "
        "see and subscribed to, in log order. The secret is shown in this answer only. "
        "The URL's host must resolve to public addresses only.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        subscription, secret = services.webhook_create(
            actor=self.actor(),
            url=data.validated_data["url"],
            event_types=data.validated_data["event_types"],
            description=data.validated_data.get("description", ""),
        )
        self.access_recorded = True
        subscription = selectors.subscription_get(
            partner=self.partner, subscription_id=subscription.pk
        )
        return Response(WebhookCreatedOut({**_out(subscription), "secret": secret}).data, 201)


class WebhookDetailView(ConsortiumView):
    required_scope = "read"

    @property
    def audit_action(self) -> str:  # type: ignore[override]
        return {"PATCH": "webhook.update", "DELETE": "webhook.delete"}.get(
            self.request.method or "", "webhook.read"
        )

    @extend_schema_serializer(component_name="WebhookUpdate")
    class UpdateSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2048, required=False)
        event_types = serializers.ListField(
            child=serializers.CharField(max_length=40),
            min_length=1,
            max_length=len(WEBHOOK_TYPES),
            required=False,
        )
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)
        enabled = serializers.BooleanField(
            required=False,
            help_text="false pauses delivery; true resumes it (also after an automatic "
            "disable) from where it stopped",
        )

    @extend_schema(operation_id="webhook", responses=WebhookOut)
    def get(self, request: Request, webhook_id: int) -> Response:
        self.audit_target = f"webhook:{webhook_id}"
        subscription = selectors.subscription_get(partner=self.partner, subscription_id=webhook_id)
        self.audit_records = 1
        return Response(WebhookOut(_out(subscription)).data)

    @extend_schema(
        operation_id="webhook_update",
        request=UpdateSerializer,
        responses=WebhookOut,
        description="Change the URL, event types or description, or disable and enable.",
    )
    def patch(self, request: Request, webhook_id: int) -> Response:
        self.audit_target = f"webhook:{webhook_id}"
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = selectors.subscription_get(partner=self.partner, subscription_id=webhook_id)
        services.webhook_update(
            actor=self.actor(), subscription=subscription, **data.validated_data
        )
        self.access_recorded = True
        subscription = selectors.subscription_get(partner=self.partner, subscription_id=webhook_id)
        return Response(WebhookOut(_out(subscription)).data)

    @extend_schema(
        operation_id="webhook_delete",
        responses={204: OpenApiResponse(description="deleted")},
        description="Delete the subscription and its delivery log.",
    )
    def delete(self, request: Request, webhook_id: int) -> Response:
        self.audit_target = f"webhook:{webhook_id}"
        subscription = selectors.subscription_get(partner=self.partner, subscription_id=webhook_id)
        services.webhook_delete(actor=self.actor(), subscription=subscription)
        self.access_recorded = True
        return Response(status=204)


@extend_schema_serializer(component_name="WebhookDelivery")
class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.CharField(help_text="the `webhook-id` header sent")
    event_type = serializers.CharField()
    log_index = serializers.IntegerField(allow_null=True, help_text="null for a test message")
    attempt = serializers.IntegerField(help_text="1 for the first attempt of the message")
    succeeded = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no answer")
    duration_ms = serializers.IntegerField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookDeliveriesView(ConsortiumView):
    audit_action = "webhook.deliveries.read"
    required_scope = "read"

    @extend_schema_serializer(component_name="WebhookDeliveryPage")
    class OutputSerializer(serializers.Serializer):
        deliveries = DeliveryOut(many=True)
        next = serializers.CharField(allow_null=True, help_text="pass as `before` to go on")

    @extend_schema(
        operation_id="webhook_deliveries",
        parameters=[
            OpenApiParameter("before", int, description="cursor: `next` of the previous page"),
            OpenApiParameter("limit", int, description=f"1 to {DELIVERIES_PAGE_MAX}"),
        ],
        responses=OutputSerializer,
        description="Delivery attempts to this subscription, newest first.",
    )
    def get(self, request: Request, webhook_id: int) -> Response:
        self.audit_target = f"webhook:{webhook_id}"
        raw_before = request.query_params.get("before")
        if raw_before is not None and not CURSOR_PATTERN.fullmatch(raw_before):
            raise InvalidCursor("before must be a delivery id", parameter="before")
        raw_limit = request.query_params.get("limit", "100")
        if not CURSOR_PATTERN.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= (
            DELIVERIES_PAGE_MAX
        ):
            raise LimitOutOfRange(
                f"limit must be between 1 and {DELIVERIES_PAGE_MAX}", parameter="limit"
            )
        subscription = selectors.subscription_get(partner=self.partner, subscription_id=webhook_id)
        before = None if raw_before is None else min(int(raw_before), 2**63 - 1)
        rows, next_cursor = selectors.deliveries_page(
            subscription=subscription, before=before, limit=int(raw_limit)
        )
        self.audit_records = len(rows)
        body = {
            "deliveries": [_delivery_out(row) for row in rows],
            "next": None if next_cursor is None else str(next_cursor),
        }
        return Response(self.OutputSerializer(body).data)


def _delivery_out(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.pk,
        "message_id": row.message_id,
        "event_type": row.event_type,
        "log_index": row.log_index,
        "attempt": row.attempt,
        "succeeded": row.succeeded,
        "status_code": row.status_code,
        "duration_ms": row.duration_ms,
        "error": row.error,
        "created_at": row.created_at,
    }


class WebhookTestView(ConsortiumView):
    audit_action = "webhook.test"
    required_scope = "read"

    @extend_schema_serializer(component_name="WebhookTestQueued")
    class OutputSerializer(serializers.Serializer):
        message_id = serializers.CharField(help_text="find its attempt in the deliveries")

    @extend_schema(
        operation_id="webhook_test",
        request=None,
        responses={202: OutputSerializer},
        description="Send a `webhook.test` message now, signed like every other, outside "
        "the subscription's ordered queue (also while it is disabled, to check the "
        "endpoint before enabling it again).",
    )
    def post(self, request: Request, webhook_id: int) -> Response:
        self.audit_target = f"webhook:{webhook_id}"
        subscription = selectors.subscription_get(partner=self.partner, subscription_id=webhook_id)
        message_id = services.webhook_test(actor=self.actor(), subscription=subscription)
        self.access_recorded = True
        return Response(self.OutputSerializer({"message_id": message_id}).data, status=202)
