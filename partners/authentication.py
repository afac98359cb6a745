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


def apikey_refusal(api_key: ApiKey, address: str | None) -> str | None:
    """Why `api_key` (its secret already checked) may not be used now from `address`, or
    None: the one list of reasons, for the API and for the auditors' pages, which check a
    signed-in key again on every request."""
    if api_key.revoked_at is not None:
        return "revoked"
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        return "expired"
    if not api_key.partner.is_active:
        return f"partner-{api_key.partner.status}"
    if not network_allowed(api_key, address):
        return "network-not-allowed"
    return None


def apikey_find(full_key: str) -> tuple[ApiKey | None, str, str]:
    """The key whose secret is `full_key` (None if there is none), its prefix, and the
    reason it was not found ("" when found): malformed-key, unknown-key, wrong-secret."""
    prefix = apikey_prefix(full_key)
    if prefix is None:
        return None, "", "malformed-key"
    api_key = ApiKey.objects.select_related("partner").filter(prefix=prefix).first()
    if api_key is None:
        return None, prefix, "unknown-key"
    if not apikey_matches(full_key, api_key.digest):
        return None, prefix, "wrong-secret"
    return api_key, prefix, ""


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
        api_key, prefix, reason = apikey_find(header[1].decode("latin-1"))
        if api_key is None:
            raise _refuse(request, reason, prefix)
        refusal = apikey_refusal(api_key, client_ip(request))
        if refusal is not None:
            raise _refuse(request, refusal, prefix)
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
