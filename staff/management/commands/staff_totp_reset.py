from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from partners.management.commands._base import ConsortiumCommand
from staff.management.commands.staff_totp_enroll import user_named
from staff.services import staff_two_factor_reset


class Command(ConsortiumCommand):
    help = (
        "Remove a staff user's TOTP key and recovery codes (a lost phone): the user's "
        "sessions lose admin access at once, and it cannot log in until enrolled again "
        "(staff_totp_enroll). Logged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--reason", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["username"])
        removed = staff_two_factor_reset(user=user, actor=self.actor(), reason=options["reason"])
        self.stdout.write(
            f"two-factor authentication of {user.get_username()!r} reset "
            f"({removed} device(s) removed); enrol again with staff_totp_enroll"
        )
