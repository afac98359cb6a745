from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from partners import services
from partners.management.commands._base import ConsortiumCommand


class Command(ConsortiumCommand):
    help = "Register a partner's Ed25519 public key (PEM file, or - for standard input). Logged."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("partner")
        parser.add_argument("public_key", help="path to the public key, or -")
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["public_key"]
        try:
            # Bytes, not text: a binary (DER) file is then refused as a bad key rather than
            # failing with a decoding traceback.
            data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}") from exc
        signing_key = services.signing_key_register(
            partner=self.partner(options["partner"]),
            public_key=data,
            name=options["name"],
            actor=self.actor(),
        )
        self.stdout.write(signing_key.key_id)
