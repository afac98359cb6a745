from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from partners import services
from partners.management.commands._base import ConsortiumCommand
from partners.models import SigningKey


class Command(ConsortiumCommand):
    help = "Revoke a signing key by its key id. Logged; nothing it signs is accepted after."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")
        parser.add_argument("--reason", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        signing_key = SigningKey.objects.filter(key_id=options["key_id"]).first()
        if signing_key is None:
            raise CommandError(f"no signing key {options['key_id']!r}")
        services.signing_key_revoke(
            signing_key=signing_key, reason=options["reason"], actor=self.actor()
        )
        self.stdout.write(f"revoked {signing_key.key_id}")
