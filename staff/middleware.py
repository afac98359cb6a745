"""Staff sessions end after STAFF_SESSION_IDLE_SECONDS without a request, and after
STAFF_SESSION_MAX_SECONDS whatever happens: a laptop left open, or a stolen cookie, stops
working on its own.

Only sessions are concerned: partners' API requests carry keys, not cookies. The times are
kept in the session itself (seconds since the epoch), set at login (staff.signals); a
logged-in session without them (made before this code, or by hand) counts as expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

STARTED = "staff_session_started"
SEEN = "staff_session_seen"
# The last-seen time is written at most this often, not on every request (each write is a
# database update of the session row); the idle timeout is as precise as that.
SEEN_RESOLUTION = 60


def session_clocks_start(request: HttpRequest) -> None:
    now = time.time()
    request.session[STARTED] = now
    request.session[SEEN] = now


def session_expired(request: HttpRequest, now: float) -> str | None:
    """Why this logged-in session has expired, or None."""
    started, seen = request.session.get(STARTED), request.session.get(SEEN)
    if not isinstance(started, int | float) or not isinstance(seen, int | float):
        return "no session times"
    if now - started > settings.STAFF_SESSION_MAX_SECONDS:
        return "session too old"
    if now - seen > settings.STAFF_SESSION_IDLE_SECONDS:
        return "session idle"
    return None


class StaffSessionExpiryMiddleware:
    """Logs out an expired staff session before the view runs (after AuthenticationMiddleware,
    OTPMiddleware and MessageMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.SESSION_COOKIE_NAME in request.COOKIES and request.user.is_authenticated:
            now = time.time()
            if session_expired(request, now):
                logout(request)
                messages.warning(request, "Your session has expired. Please log in again.")
            elif now - request.session[SEEN] >= SEEN_RESOLUTION:
                request.session[SEEN] = now
        return self.get_response(request)
