from __future__ import annotations

import io
import sys
from typing import Any

import qrcode
from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from partners.management.commands._base import ConsortiumCommand
from staff.services import StaffTwoFactorError, staff_totp_enrol


def user_named(username: str) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


def enrolment_text(username: str, uri: str, codes: list[str], *, qr: bool) -> str:
    """What the staff user must be handed, once."""
    lines = [
        f"Two-factor authentication set up for {username!r}.",
        "Add this key to an authenticator app (scan the QR code, or paste the URI):",
        f"  {uri}",
    ]
    if qr:
        code = qrcode.QRCode(border=1)
        code.add_data(uri)
        picture = io.StringIO()
        code.print_ascii(out=picture, invert=True)
        lines.append(picture.getvalue().rstrip("\n"))
    lines.append("Recovery codes, each valid once (shown only now; keep them offline):")
    lines += [f"  {c}" for c in codes]
    return "\n".join(lines) + "\n"


class Command(ConsortiumCommand):
    help = (
        "Set up two-factor authentication for a staff user: a TOTP key (printed as an "
        "otpauth:// URI, and a QR code on a terminal) and 10 one-time recovery codes, shown "
        "once. Logged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        qr = parser.add_mutually_exclusive_group()
        qr.add_argument("--qr", action="store_true", default=None, help="print the QR code")
        qr.add_argument("--no-qr", dest="qr", action="store_false", help="never print it")

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["username"])
        try:
            enrolment = staff_totp_enrol(user=user, actor=self.actor())
        except StaffTwoFactorError as exc:
            raise CommandError(str(exc)) from exc
        qr = options["qr"] if options["qr"] is not None else sys.stdout.isatty()
        self.stdout.write(
            enrolment_text(user.get_username(), enrolment.uri, enrolment.recovery_codes, qr=qr),
            ending="",
        )
