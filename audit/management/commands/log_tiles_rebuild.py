from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.tree import TreeError, tiles_rebuild


class Command(BaseCommand):
    help = (
        "Make the log's Merkle tiles again from the stored leaves, streaming, while holding "
        "the log head (writers wait). For a restored database or tiles found out of step."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                size = tiles_rebuild()
        except TreeError as error:
            raise CommandError(str(error)) from error
        if options["verbosity"]:
            self.stdout.write(f"tiles rebuilt for {size} events")
