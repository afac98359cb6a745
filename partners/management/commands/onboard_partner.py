from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from partners import services
from partners.management.commands._base import ConsortiumCommand
from partners.models import Partner


class Command(ConsortiumCommand):
    help = "Create a partner (active unless --pending)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="stable identifier, a slug")
        parser.add_argument("--display-name", required=True)
        parser.add_argument("--kind", choices=Partner.Kind.values, default=Partner.Kind.PLATFORM)
        parser.add_argument("--pending", action="store_true", help="create it pending")

    def handle(self, *args: Any, **options: Any) -> None:
        if Partner.objects.filter(name=options["name"]).exists():
            raise CommandError(f"partner {options['name']!r} already exists")
        partner = services.partner_onboard(
            name=options["name"],
            display_name=options["display_name"],
            kind=options["kind"],
            activate=not options["pending"],
            actor=self.actor(),
        )
        self.stdout.write(f"partner {partner.name} ({partner.status})")
