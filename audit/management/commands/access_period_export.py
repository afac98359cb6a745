from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import Actor
from audit.selectors import access_period_event_fields, access_period_get, log_leaf
from audit.services import access_event_record
from consortium_client.accesslog import access_event_encode


class Command(BaseCommand):
    help = (
        "Write a sealed period's access events as JSON lines, one canonical encoding each, "
        "in id order: what consortium_client.accesslog.access_period_verify checks against "
        "the period's access_period_sealed leaf (written with --leaf). Audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("period", type=int)
        parser.add_argument("--leaf", type=Path, help="also write the period's log leaf here")

    def handle(self, *args: Any, **options: Any) -> None:
        number = options["period"]
        period = access_period_get(number=number)
        if period is None:
            raise CommandError(f"no sealed access period {number}")
        if options["leaf"]:
            leaf = log_leaf(index=period.log_index)
            if leaf is None:
                raise CommandError(f"the log has no event {period.log_index}")
            options["leaf"].write_bytes(leaf)
        events = access_period_event_fields(after_id=period.after_id, last_id=period.last_id)
        for event in events:
            # Encodings are ASCII: the text is the exact bytes hashed.
            self.stdout.write(access_event_encode(event).decode("ascii"))
        access_event_record(
            actor=Actor.command("access_period_export"),
            action="access_period.export",
            status=200,
            target=f"period {number}",
            records=period.count,
        )
