"""One check for pages outside the admin that only staff may see (the auditor pages): the
same rule as the admin site, a staff user who logged in with a second factor in a session
that has not expired."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse


def staff_verified(request: HttpRequest) -> bool:
    """True for an active staff user verified by a second factor in this session.

    django-otp's OTPMiddleware gives request.user is_verified(); staff.middleware has
    already logged out an expired session, so it is anonymous here.
    """
    user = request.user
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and getattr(user, "is_verified", lambda: False)()
    )


def verified_staff_required(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """A view decorator: anyone else is sent to the admin login, and back afterwards."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not staff_verified(request):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return view(request, *args, **kwargs)

    return wrapped
