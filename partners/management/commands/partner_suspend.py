from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from partners import services
from partners.management.commands._base import ConsortiumCommand


class Command(ConsortiumCommand):
    help = "Suspend a partner: its API keys stop working at once. Logged."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--reason", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        partner = services.partner_suspend(
            partner=self.partner(options["name"]), reason=options["reason"], actor=self.actor()
        )
        self.stdout.write(f"partner {partner.name} ({partner.status})")
