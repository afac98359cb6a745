from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from hashes.services import quarantine_restore
from partners.management.commands._base import ConsortiumCommand


class Command(ConsortiumCommand):
    help = (
        "Restore a quarantined entry (it matches again), with a reason every partner who sees "
        "its list reads in the entry_quarantine_resolved event. To end it instead, revoke it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("entry", type=int, help="the entry id (its log index)")
        parser.add_argument("--reason", required=True, help="why, as the log will show it")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = quarantine_restore(
                actor=self.actor(), entry_id=options["entry"], reason=options["reason"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"entry {result.entry.pk} restored at log index {result.resolution.log_index}"
        )
