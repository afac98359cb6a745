from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from partners import services
from partners.management.commands._base import ConsortiumCommand


class Command(ConsortiumCommand):
    help = "Create a sharing group, or set the members of an existing one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--members", required=True, help="comma-separated partner names")

    def handle(self, *args: Any, **options: Any) -> None:
        members = [self.partner(n.strip()) for n in options["members"].split(",") if n.strip()]
        group = services.sharing_group_set(
            name=options["name"], members=members, actor=self.actor()
        )
        self.stdout.write(f"group {group.name}: {', '.join(p.name for p in members)}")
