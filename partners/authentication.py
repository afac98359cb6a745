"""Bearer API key authentication and scope checks for the API.

Every failure (unknown prefix, wrong secret, expired, revoked, suspended partner, address
outside the key's networks) gets the same answer, so a caller cannot tell which it hit;
the access log records the real reason for auditors.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from partners.apikeys import apikey_matches, apikey_prefix
from partners.models import ApiKey, Partner

INVALID_KEY_MESSAGE = "The API key is unknown, expired, revoked, or not usable from here."


def client_ip(request: HttpRequest | Request) -> str | None:
    """The caller's address: REMOTE_ADDR, or X-Forwarded-For behind NUM_PROXIES proxies."""
    from rest_framework.settings import api_settings

    remote = request.META.get("REMOTE_ADDR")
    proxies = api_settings.NUM_PROXIES or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        hop = hops[-min(proxies, len(hops))]
        # With fewer hops than proxies the value is the client's own text: anything but an
        # address is unknown (None), which no allow-list admits and the access log can hold.
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return None
    return remote


def _refuse(request: Request, reason: str, prefix: str) -> exceptions.AuthenticationFailed:
    # Kept on the Django request for the access event written after the response.
    setattr(request._request, "consortium_auth_failure", {"reason": reason, "prefix": prefix})  # noqa: B010
    return exceptions.AuthenticationFailed(INVALID_KEY_MESSAGE)


def network_allowed(api_key: ApiKey, address: str | None) -> bool:
    if not api_key.allowed_networks:
        return True
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(network) for network in api_key.allowed_networks)


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Partner, ApiKey] | None:
        try:
            header = get_authorization_header(request).split()
        except UnicodeEncodeError:
            # A header value no HTTP connection can carry (only a test client or a broken
            # gateway makes one); refused like any malformed header, not a 500.
            raise _refuse(request, "malformed-header", "") from None
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise _refuse(request, "malformed-header", "")
        full_key = header[1].decode("latin-1")
        prefix = apikey_prefix(full_key)
        if prefix is None:
            raise _refuse(request, "malformed-key", "")
        api_key = ApiKey.objects.select_related("partner").filter(prefix=prefix).first()
        if api_key is None:
            raise _refuse(request, "unknown-key", prefix)
        if not apikey_matches(full_key, api_key.digest):
            raise _refuse(request, "wrong-secret", prefix)
        if api_key.revoked_at is not None:
            raise _refuse(request, "revoked", prefix)
        if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
            raise _refuse(request, "expired", prefix)
        if not api_key.partner.is_active:
            raise _refuse(request, f"partner-{api_key.partner.status}", prefix)
        if not network_allowed(api_key, client_ip(request)):
            raise _refuse(request, "network-not-allowed", prefix)
        return api_key.partner, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="consortium"'


class HasScope(BasePermission):
    """Allow the request when the key carries the view's `required_scope` (None: any key)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated("Send an API key as 'Authorization: Bearer <key>'.")
        scope = getattr(view, "required_scope", None)
        if scope is not None and scope not in request.auth.scopes:
            self.message = f"This operation needs an API key with the '{scope}' scope."
            return False
        return True
