"""Staff users' second factor: enrolment, reset, verification, and their access events."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.actors import Actor
from audit.services import access_event_record
from staff.models import RecoveryCodeDevice, is_recovery_code

RECOVERY_CODES = 10


class StaffTwoFactorError(ValueError):
    """A refused enrolment; only management commands enrol, so this never reaches HTTP."""


class StaffNotEligible(StaffTwoFactorError):
    pass


class StaffAlreadyEnrolled(StaffTwoFactorError):
    pass


@dataclass(frozen=True)
class Enrolment:
    """What the staff user must be given once: the authenticator's URI and recovery codes."""

    uri: str
    recovery_codes: list[str]


def staff_devices(user: User) -> list[Device]:
    """The user's confirmed second-factor devices (TOTP and recovery codes)."""
    return [
        *TOTPDevice.objects.devices_for_user(user, confirmed=True),
        *RecoveryCodeDevice.objects.devices_for_user(user, confirmed=True),
    ]


def staff_device_for_token(*, user: User, token: str) -> tuple[Device | None, str]:
    """The one device of `user` that a token of this form belongs to, and what it made of
    the token: "verified", "wrong" or "throttled" (too many wrong codes lately; not checked).

    Six digits are a TOTP code, sixteen base32 characters a recovery code. The device row is
    locked while it checks, so a code is accepted once even by two logins at the same moment
    (TOTP refuses a time step it has already accepted; a recovery code is deleted).
    """
    token = token.strip()
    if token.isdigit() and len(token) == 6:
        model: type[Device] = TOTPDevice
    elif is_recovery_code(token):
        model = RecoveryCodeDevice
    else:
        return None, "wrong"
    with transaction.atomic():
        device = (
            model.objects.devices_for_user(user, confirmed=True)
            .select_for_update()
            .order_by("pk")
            .first()
        )
        if device is None:
            return None, "wrong"
        if not device.verify_is_allowed()[0]:
            return device, "throttled"
        return device, "verified" if device.verify_token(token) else "wrong"


@transaction.atomic
def staff_totp_enrol(*, user: User, actor: Actor) -> Enrolment:
    """Give a staff user a confirmed TOTP device and RECOVERY_CODES recovery codes.

    Refuses a user who already has a device: replacing one silently would lock its owner out
    (reset first, which is recorded). The TOTP key and the codes are in the result only; the
    access event names the user, never a secret.
    """
    if not user.is_staff:
        raise StaffNotEligible(f"{user.get_username()!r} is not a staff user")
    User.objects.select_for_update().filter(pk=user.pk).first()
    if staff_devices(user):
        raise StaffAlreadyEnrolled(
            f"{user.get_username()!r} already has two-factor authentication; "
            "reset it first (staff_totp_reset)"
        )
    totp = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    recovery = RecoveryCodeDevice.objects.create(user=user, name="recovery codes", confirmed=True)
    codes = recovery.codes_issue(RECOVERY_CODES)
    access_event_record(
        actor=actor,
        action="staff.2fa.enrol",
        status=200,
        target=f"auth.user:{user.pk}",
        detail={"username": user.get_username(), "recovery_codes": len(codes)},
    )
    return Enrolment(uri=totp.config_url, recovery_codes=codes)


@transaction.atomic
def staff_two_factor_reset(*, user: User, actor: Actor, reason: str) -> int:
    """Remove every second-factor device of `user`; returns how many.

    Its sessions stop being verified at once (OTPMiddleware finds no device for them), so a
    lost phone is shut out of the admin before a new one is enrolled.
    """
    User.objects.select_for_update().filter(pk=user.pk).first()
    removed = 0
    for model in (TOTPDevice, RecoveryCodeDevice):
        removed += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    access_event_record(
        actor=actor,
        action="staff.2fa.reset",
        status=200,
        target=f"auth.user:{user.pk}",
        records=removed,
        detail={"username": user.get_username(), "reason": reason[:500]},
    )
    return removed


def staff_login_recorded(*, request: HttpRequest, user: User) -> None:
    """A staff user logged in with a password and a second factor."""
    device = getattr(user, "otp_device", None)
    access_event_record(
        actor=Actor.for_user(user, client_ip=request.META.get("REMOTE_ADDR")),
        action="admin.login",
        status=200,
        target=f"auth.user:{user.pk}",
        detail={"device": type(device).__name__ if device else ""},
    )


def staff_login_refused(*, request: HttpRequest | None, user: User, reason: str) -> None:
    """A right password with no valid second factor: worth an auditor's eye."""
    client_ip = request.META.get("REMOTE_ADDR") if request is not None else None
    access_event_record(
        actor=Actor.for_user(user, client_ip=client_ip),
        action="admin.login",
        status=401,
        target=f"auth.user:{user.pk}",
        detail={"problem": reason},
    )
