from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.actors import Actor
from audit.services import AccessPeriodBusy, access_period_seal


class Command(BaseCommand):
    help = (
        "Seal the access events since the last sealed period and append their digest to "
        "the log (what Celery beat does every ACCESS_PERIOD_SECONDS)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=settings.ACCESS_PERIOD_WAIT_SECONDS,
            help="seconds to wait for transactions still writing access events",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            period = access_period_seal(
                actor=Actor.command("access_period_seal"), wait_seconds=options["wait"]
            )
        except AccessPeriodBusy as exc:
            raise CommandError(f"nothing sealed: {exc}") from exc
        if period is None:
            self.stdout.write("nothing to seal: no access event since the last period")
            return
        self.stdout.write(
            f"period {period.number}: ids ({period.after_id}, {period.last_id}], "
            f"{period.count} events, root {period.root}, log index {period.log_index}"
        )
