"""The admin site: a password and a second factor for every staff user, superusers too."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.models import User
from django_otp.admin import OTPAdminSite
from django_otp.models import Device

from staff.services import staff_device_for_token, staff_devices, staff_login_refused

NOT_ENROLLED = (
    "Two-factor authentication is not set up for this account, so it cannot log in here. "
    "Ask an administrator to enrol you (manage.py staff_totp_enroll %(username)s)."
)
INVALID_CODE = "That code is not valid. Enter the current 6-digit code or an unused recovery code."
THROTTLED = "Too many wrong codes: wait a few seconds, then try again."


class StaffLoginForm(AdminAuthenticationForm):
    """Username, password and one code: a 6-digit TOTP code, or a recovery code.

    The code's form says which of the user's devices checks it, so a mistyped TOTP code
    never counts as a failure of the recovery codes (which django-otp throttles per device).
    """

    otp_token = forms.CharField(
        label="Authentication code",
        required=False,
        max_length=32,
        strip=True,
        help_text="The 6-digit code from your authenticator app, or a recovery code.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()  # the password, then active and staff
        user = self.get_user()
        if user is not None:
            # django-otp's user_logged_in handler puts this device in the session.
            user.otp_device = self._verified_device(  # type: ignore[attr-defined]
                user, cleaned.get("otp_token") or ""
            )
        return cleaned

    def _verified_device(self, user: User, token: str) -> Device:
        if not staff_devices(user):
            staff_login_refused(request=self.request, user=user, reason="not-enrolled")
            raise forms.ValidationError(
                NOT_ENROLLED, code="not_enrolled", params={"username": user.get_username()}
            )
        if not token:
            raise forms.ValidationError(
                "Enter the code from your authenticator app.", code="token_required"
            )
        device, outcome = staff_device_for_token(user=user, token=token)
        if device is None or outcome != "verified":
            throttled = outcome == "throttled"
            staff_login_refused(
                request=self.request, user=user, reason="throttled" if throttled else "wrong-code"
            )
            raise forms.ValidationError(
                THROTTLED if throttled else INVALID_CODE, code="invalid_token"
            )
        return device


class ConsortiumAdminSite(OTPAdminSite):
    """OTPAdminSite under the usual name, so that `admin:` URLs and templates still work.

    Its has_permission asks request.user.is_verified(): a session that logged in with a
    password alone (or whose device was reset) sees only the login page.
    """

    site_header = "Consortium administration"
    site_title = "Consortium admin"
    login_form = StaffLoginForm
    login_template = "staff/login.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
