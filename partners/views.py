from __future__ import annotations

import base64
from typing import cast

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from consortium.api import ConsortiumView
from partners.models import ApiKey


class MeView(ConsortiumView):
    audit_action = "me.read"

    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        class KeySerializer(serializers.Serializer):
            prefix = serializers.CharField()
            scopes = serializers.ListField(child=serializers.CharField())
            expires_at = serializers.DateTimeField(allow_null=True)

        class SigningKeySerializer(serializers.Serializer):
            key_id = serializers.CharField()
            public_key = serializers.CharField(help_text="base64 of the raw 32 bytes")
            name = serializers.CharField()
            created_at = serializers.DateTimeField()
            revoked_at = serializers.DateTimeField(allow_null=True)

        name = serializers.CharField()
        display_name = serializers.CharField()
        kind = serializers.CharField()
        status = serializers.CharField()
        api_key = KeySerializer()
        signing_keys = SigningKeySerializer(many=True)

    @extend_schema(operation_id="me", responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        partner = self.partner
        api_key = cast(ApiKey, request.auth)
        self.audit_target = f"partner:{partner.name}"
        signing_keys = [
            {
                "key_id": key.key_id,
                "public_key": base64.b64encode(bytes(key.public_key)).decode(),
                "name": key.name,
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            }
            for key in partner.signing_keys.order_by("created_at")
        ]
        data = {
            "name": partner.name,
            "display_name": partner.display_name,
            "kind": partner.kind,
            "status": partner.status,
            "api_key": {
                "prefix": api_key.prefix,
                "scopes": api_key.scopes,
                "expires_at": api_key.expires_at,
            },
            "signing_keys": signing_keys,
        }
        self.audit_records = 1
        return Response(self.OutputSerializer(data).data)
