"""Shapes shared by several views (for the OpenAPI schema and rendering)."""

from __future__ import annotations

from rest_framework import serializers


class EnvelopeSerializer(serializers.Serializer):
    """A DSSE envelope. The server verifies and stores the exact bytes it receives."""

    class SignatureSerializer(serializers.Serializer):
        keyid = serializers.CharField(required=False, help_text="optional, unauthenticated hint")
        sig = serializers.CharField(help_text="base64 Ed25519 signature over DSSE PAE")

    payloadType = serializers.CharField()
    payload = serializers.CharField(help_text="base64 of the payload JSON")
    signatures = SignatureSerializer(many=True)


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
        ]
    )
    time = serializers.CharField()
    list = serializers.CharField(required=False)
    entry = serializers.IntegerField(required=False)
    algorithm = serializers.CharField(required=False)
    value = serializers.CharField(required=False)
    labels = serializers.ListField(child=serializers.CharField(), required=False)
    partner = serializers.CharField(required=False)
    key = serializers.CharField(required=False, allow_null=True)
    envelope = serializers.CharField(required=False, allow_null=True)
    revoked_by = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)


class FeedPageSerializer(serializers.Serializer):
    events = FeedEventSerializer(many=True)
    next = serializers.CharField(help_text="pass as `after` to continue")
    has_more = serializers.BooleanField()
