from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from partners import services
from partners.apikeys import apikey_prefix
from partners.management.commands._base import ConsortiumCommand
from partners.models import ApiKey


class Command(ConsortiumCommand):
    help = "Revoke an API key, given its prefix (or the whole key), with immediate effect."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        prefix = apikey_prefix(options["prefix"]) or options["prefix"]
        api_key = ApiKey.objects.filter(prefix=prefix).first()
        if api_key is None:
            raise CommandError(f"no API key with prefix {prefix!r}")
        services.apikey_revoke(api_key=api_key, actor=self.actor())
        self.stdout.write(f"revoked {api_key.prefix}")
