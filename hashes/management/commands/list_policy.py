from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from hashes.models import HashList
from hashes.services.lists import hash_list_policy_set
from partners.management.commands._base import ConsortiumCommand


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


class Command(ConsortiumCommand):
    help = (
        "Set a list's review policy (new entries pending until N partners, or its reviewers, "
        "agree) and quarantine policy (N false_positive verdicts stop an entry matching)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--review-required", action="store_true", help="new entries wait for review"
        )
        parser.add_argument("--reviews-needed", type=int, default=1)
        parser.add_argument("--reviewers", default="", help="designated partners: a,b")
        parser.add_argument("--grades", default="", help="the grade scale: a,b,c")
        parser.add_argument("--quarantine-after", type=int, default=None, help="omit for never")

    def handle(self, *args: Any, **options: Any) -> None:
        hash_list = HashList.objects.filter(name=options["name"]).first()
        if hash_list is None:
            raise CommandError(f"no list {options['name']!r}")
        hash_list_policy_set(
            hash_list=hash_list,
            actor=self.actor(),
            review_required=options["review_required"],
            reviews_needed=options["reviews_needed"],
            reviewers=[self.partner(name) for name in _names(options["reviewers"])],
            grades=_names(options["grades"]),
            quarantine_after=options["quarantine_after"],
        )
        quarantine = options["quarantine_after"] or "never"
        self.stdout.write(
            f"list {hash_list.name}: review {'required' if hash_list.review_required else 'none'}, "
            f"quarantine after {quarantine}"
        )
