"""Staff logins are access events, and start the session's clocks (staff.middleware)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest

from staff.middleware import session_clocks_start
from staff.services import staff_login_recorded


@receiver(user_logged_in, dispatch_uid="staff-login")
def _staff_logged_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    if request is None:
        return
    session_clocks_start(request)
    if getattr(user, "otp_device", None) is not None:
        staff_login_recorded(request=request, user=user)
