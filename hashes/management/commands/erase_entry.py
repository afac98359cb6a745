from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from hashes.services import entry_erase
from partners.management.commands._base import ConsortiumCommand


class Command(ConsortiumCommand):
    help = (
        "Erase an entry's hash value (a victim's or a court's request): value and salt are "
        "deleted, the log records the erasure, every proof stays valid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("entry", type=int, help="the entry id (its log index)")
        parser.add_argument("--reason", required=True, help="why, as the log will show it")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = entry_erase(
                actor=self.actor(), entry_id=options["entry"], reason=options["reason"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        redacted = (
            f"; legacy submission {result.redacted_submission} redacted"
            if result.redacted_submission is not None
            else ""
        )
        self.stdout.write(
            f"entry {result.entry_id} erased at log index {result.log_index}{redacted}"
        )
