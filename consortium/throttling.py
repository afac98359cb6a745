"""Rate limits per API key and per partner, for each scope, counted in Redis.

Counting is the `limits` library's fixed window: one counter per key (or partner), scope and
window, raised and given its expiry by one Lua script, so a check is one atomic round trip
to Redis whatever the rate, and every gunicorn worker (and every machine behind the load
balancer) shares exact counts. DRF's own `SimpleRateThrottle` keeps a list of timestamps per
key in the cache and rewrites it on each request: at hundreds of requests a second the list
is large, and concurrent workers overwrite each other's increments, so a flood is
under-counted exactly when it matters. A window starts with its first request and lasts the
rate's period; every request of an authenticated key counts, refused ones too, so a client
that ignores `Retry-After` gains nothing. Without Redis (the quick start) the counters are
in memory, per process.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from partners.models import ApiKey

logger = logging.getLogger(__name__)

# The scope of views that need none (`/me`); settings.RATE_LIMITS has a rate for each.
ANY_SCOPE = "any"
_PERIOD_NAMES = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_ITEMS: dict[str, type[RateLimitItem]] = {
    "s": RateLimitItemPerSecond,
    "m": RateLimitItemPerMinute,
    "h": RateLimitItemPerHour,
    "d": RateLimitItemPerDay,
}


@functools.cache
def rate_limit_storage(url: str) -> Storage:
    """One storage (a Redis connection pool) per process and URL, made on first use, so
    after gunicorn has forked its workers."""
    return cast(Storage, storage_from_string(url, wrap_exceptions=True))


@functools.cache
def _item(rate: str) -> RateLimitItem:
    count, _, period = rate.partition("/")
    return _ITEMS[period](int(count))


@dataclass(frozen=True)
class Refusal:
    """Which limit refused a request, and when its window ends."""

    subject: str
    scope: str
    rate: str
    retry_after: int

    def extensions(self) -> dict[str, Any]:
        """What the 429 problem says, beside its `detail`."""
        return {
            "applies_to": self.subject,
            "scope": self.scope,
            "rate": self.rate,
            "retry_after": self.retry_after,
        }

    def describe(self) -> str:
        count, _, period = self.rate.partition("/")
        per = _PERIOD_NAMES[period]
        who = "API key" if self.subject == "key" else "partner"
        units = "hashes matched" if self.scope == "match" else f"'{self.scope}' requests"
        return f"This {who} has used its {count} {units} per {per}; retry in {self.retry_after} s."


def view_scope(view: Any) -> str:
    return getattr(view, "required_scope", None) or ANY_SCOPE


class ScopeRateThrottle(BaseThrottle):
    """Counts every request of an authenticated key against `RATE_LIMITS[subject][scope]`.

    Requests without a usable key are not counted here: they are refused with a 401, and a
    caller that can name a key without its secret must not be able to use up its limit.
    """

    subject: ClassVar[str]

    def ident(self, api_key: ApiKey) -> str:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        self.refusal = self.check(request, view, cost=1)
        return self.refusal is None

    def wait(self) -> float | None:
        return self.refusal.retry_after if self.refusal else None

    def check(self, request: Request, view: Any, cost: int) -> Refusal | None:
        """Count `cost` (1 for the request itself); the limit it exceeds, if any."""
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return None
        scope = view_scope(view)
        rate = settings.RATE_LIMITS[self.subject].get(scope)
        if rate is None or not settings.RATE_LIMIT_ENABLED:
            return None
        limiter = FixedWindowRateLimiter(rate_limit_storage(settings.RATE_LIMIT_STORAGE_URL))
        item, ident = _item(rate), (self.subject, scope, self.ident(api_key))
        try:
            if limiter.hit(item, *ident, cost=cost):
                return None
            # A second round trip, on refusals only: when this window ends.
            reset_at = limiter.get_window_stats(item, *ident).reset_time
        except StorageError:
            # Open, not closed: with Redis down, refusing every request would turn a lost
            # safeguard into an outage of the whole API. Logged, so it does not go unseen.
            logger.exception("rate limits not counted: their storage failed")
            return None
        return Refusal(self.subject, scope, rate, max(1, math.ceil(reset_at - time.time())))


class ApiKeyRateThrottle(ScopeRateThrottle):
    subject = "key"

    def ident(self, api_key: ApiKey) -> str:
        return str(api_key.pk)


class PartnerRateThrottle(ScopeRateThrottle):
    """All of a partner's keys together: more keys do not buy a partner more capacity."""

    subject = "partner"

    def ident(self, api_key: ApiKey) -> str:
        return str(api_key.partner_id)


# --- Early refusal -------------------------------------------------------------------------
# A client that ignores 429s keeps the workers busy with refusals, each of which costs what a
# small read costs (the middleware, the key's database read, two Redis round trips, DRF):
# bench/flood.py measured another partner's p95 at 5-8x idle that way. So once this process
# has refused a key for a scope, it refuses the same key's further requests in that scope
# here, before any of that, until the limit's window ends, and at most for EARLY_REFUSAL_MAX
# seconds, so that a key revoked or a partner suspended meanwhile is answered with its 401 by
# the full path soon after. Only the key's holder is refused early: the presented key must
# match the stored digest, and a key limited to networks must be used from one of them; a
# caller that knows only the prefix gets the full path's 401. Each early refusal still writes
# its access event.
EARLY_REFUSAL_MAX = 1.0


@dataclass(frozen=True)
class Penalty:
    api_key: ApiKey  # as authenticated when the limit refused it, its partner loaded
    refusal: Refusal
    window_end: float  # time.time() when the limit's window ends
    until: float  # when early refusals stop: the window's end, or sooner


_penalties: dict[tuple[str, str], Penalty] = {}


def penalty_set(*, api_key: ApiKey, refusal: Refusal) -> None:
    """Refuse `api_key` early in `refusal.scope` until its window ends (EARLY_REFUSAL_MAX
    at most)."""
    now = time.time()
    window_end = now + refusal.retry_after
    until = min(window_end, now + EARLY_REFUSAL_MAX)
    # Ended penalties go here, not only when their key comes back: while any is held, every
    # request resolves its URL in the middleware.
    for ended in [key for key, penalty in _penalties.items() if penalty.until <= now]:
        del _penalties[ended]
    _penalties[(api_key.prefix, refusal.scope)] = Penalty(api_key, refusal, window_end, until)


def penalties_clear() -> None:
    _penalties.clear()


class EarlyRefusalMiddleware:
    """Answers a key's requests in a scope where this process has just refused it, before the
    rest of the stack runs (see the comment above `EARLY_REFUSAL_MAX`)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _penalties:
            refused = _refuse_early(request)
            if refused is not None:
                return refused
        return self.get_response(request)


def _refuse_early(request: HttpRequest) -> HttpResponse | None:
    from audit.actors import Actor
    from audit.services import access_event_record
    from consortium.errors import Throttled, problem_json_response
    from partners.apikeys import apikey_matches, apikey_prefix
    from partners.authentication import client_ip, network_allowed

    scheme, _, full_key = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    prefix = apikey_prefix(full_key.strip()) if scheme.lower() == "bearer" else None
    if prefix is None:
        return None
    try:
        view = resolve(request.path_info).func
    except Resolver404:
        return None
    view_class = getattr(view, "view_class", None)
    action = getattr(view_class, "audit_action", None)
    if action is None:
        return None
    penalty = _penalties.get((prefix, view_scope(view_class)))
    if penalty is None:
        return None
    if time.time() >= penalty.until:
        _penalties.pop((prefix, penalty.refusal.scope), None)
        return None
    address = client_ip(request)
    if not apikey_matches(full_key.strip(), penalty.api_key.digest) or not network_allowed(
        penalty.api_key, address
    ):
        return None
    refusal = penalty.refusal
    retry_after = max(1, math.ceil(penalty.window_end - time.time()))
    refusal = Refusal(refusal.subject, refusal.scope, refusal.rate, retry_after)
    error = Throttled(refusal.describe(), **refusal.extensions())
    access_event_record(
        actor=Actor.for_api_key(penalty.api_key, client_ip=address),
        action=action,
        status=429,
        detail={
            "method": request.method,
            "path": request.path,
            "problem": "throttled",
            "early": True,
        },
    )
    return problem_json_response(error, instance=request.path)
