from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from hashes.models import HashList
from hashes.services.lists import hash_list_create
from partners.management.commands._base import ConsortiumCommand
from partners.models import SharingGroup


class Command(ConsortiumCommand):
    help = "Create a list and decide who sees it and who may submit to it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner", required=True)
        parser.add_argument("--visibility", choices=HashList.Visibility.values, required=True)
        parser.add_argument("--group", help="sharing group, for --visibility group")
        parser.add_argument(
            "--contributors",
            choices=HashList.Contributors.values,
            default=HashList.Contributors.MEMBERS,
        )
        parser.add_argument("--purpose", default="")
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        group = None
        if options["group"]:
            group = SharingGroup.objects.filter(name=options["group"]).first()
            if group is None:
                raise CommandError(f"no sharing group {options['group']!r}")
        hash_list = hash_list_create(
            name=options["name"],
            owner=self.partner(options["owner"]),
            visibility=options["visibility"],
            group=group,
            contributors=options["contributors"],
            purpose=options["purpose"],
            description=options["description"],
            actor=self.actor(),
        )
        self.stdout.write(f"list {hash_list.name} ({hash_list.visibility})")
