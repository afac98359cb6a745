"""The base of every API view: problem+json errors and one access event per request."""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actors import Actor
from audit.services import access_event_record
from consortium.errors import TYPE_PREFIX, RequestTooLarge, Throttled
from consortium.throttling import ScopeRateThrottle, penalty_set
from partners.authentication import client_ip
from partners.models import ApiKey, Partner


def request_actor(request: Request) -> Actor:
    address = client_ip(request)
    if isinstance(request.auth, ApiKey):
        return Actor.for_api_key(request.auth, client_ip=address)
    failure = getattr(request._request, "consortium_auth_failure", None) or {}
    return Actor.anonymous(key_prefix=failure.get("prefix", ""), client_ip=address)


class ConsortiumView(APIView):
    """Subclasses set `audit_action` and `required_scope`, and may set, while handling,
    `audit_target` and `audit_records`. Write services record their own access event in
    their transaction and the view then sets `access_recorded`; everything else (reads and
    refusals) is recorded here, after the response is made."""

    audit_action: ClassVar[str]
    required_scope: ClassVar[str | None] = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.audit_target = ""
        self.audit_records = 0
        self.access_recorded = False
        super().initial(request, *args, **kwargs)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        # Limits are checked here, before the scope check (DRF checks them after it): a key
        # flooding an operation it lacks the scope for costs the server as much, so it
        # counts too. A request without a usable key is refused next, uncounted.
        self._rate_limit(request, cost=1)

    def rate_limit_charge(self, cost: int) -> None:
        """Count `cost` more against this request's limits, for an operation whose cost is
        known only once its input is read (a match counts each of its hashes)."""
        if cost > 0:
            self._rate_limit(self.request, cost=cost)

    def _rate_limit(self, request: Request, *, cost: int) -> None:
        refusals = [
            refusal
            for throttle in self.get_throttles()
            if isinstance(throttle, ScopeRateThrottle)
            and (refusal := throttle.check(request, self, cost))
        ]
        if refusals:
            refusal = max(refusals, key=lambda found: found.retry_after)
            penalty_set(api_key=cast(ApiKey, request.auth), refusal=refusal)
            raise Throttled(refusal.describe(), **refusal.extensions())

    def check_throttles(self, request: Request) -> None:
        """Done in perform_authentication, before the scope check."""

    def actor(self) -> Actor:
        return request_actor(self.request)

    def body(self) -> bytes:
        """The request body as received, or a 413 problem past DATA_UPLOAD_MAX_MEMORY_SIZE."""
        try:
            return self.request.body
        except RequestDataTooBig:
            raise RequestTooLarge(
                f"the body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
            ) from None

    @property
    def partner(self) -> Partner:
        """The authenticated partner (HasScope has refused the request otherwise)."""
        return cast(Partner, self.request.user)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if not getattr(self, "access_recorded", False):
            self._record_access(request, response)
        return response

    def _record_access(self, request: Request, response: Response) -> None:
        detail: dict[str, Any] = {"method": request.method, "path": request.path}
        data = getattr(response, "data", None)
        if response.status_code >= 400 and isinstance(data, dict):
            detail["problem"] = str(data.get("type", "")).removeprefix(TYPE_PREFIX)
        failure = getattr(request._request, "consortium_auth_failure", None)
        if failure:
            detail["auth_failure"] = failure["reason"]
        # Not caught: a read whose access event cannot be written must fail, not go unaudited.
        access_event_record(
            actor=request_actor(request),
            action=self.audit_action,
            status=response.status_code,
            target=getattr(self, "audit_target", ""),
            records=getattr(self, "audit_records", 0),
            detail=detail,
        )
