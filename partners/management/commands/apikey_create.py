from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from partners import services
from partners.management.commands._base import ConsortiumCommand


class Command(ConsortiumCommand):
    help = "Issue an API key for a partner and print it once; only its digest is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("partner")
        parser.add_argument(
            "--scopes", required=True, help="comma-separated: submit,read,match,audit"
        )
        parser.add_argument("--name", default="")
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument("--networks", default="", help="comma-separated CIDR allow-list")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in_days"]
        # 0 would otherwise read as "no expiry", and a negative count issue a dead key.
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1; omit it for no expiry")
        _, full_key = services.apikey_create(
            partner=self.partner(options["partner"]),
            scopes=[s.strip() for s in options["scopes"].split(",") if s.strip()],
            name=options["name"],
            expires_at=timezone.now() + timedelta(days=days) if days is not None else None,
            allowed_networks=[n for n in options["networks"].split(",") if n.strip()],
            actor=self.actor(),
        )
        self.stdout.write(full_key)
