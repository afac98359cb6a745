"""What the onboarding commands share: actor, lookups and one-line errors."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor
from consortium.errors import ConsortiumError
from partners.models import Partner


class ConsortiumCommand(BaseCommand):
    def actor(self) -> Actor:
        return Actor.command(self.__module__.rsplit(".", 1)[-1])

    def partner(self, name: str) -> Partner:
        partner = Partner.objects.filter(name=name).first()
        if partner is None:
            raise CommandError(f"no partner named {name!r}")
        return partner

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except ConsortiumError as exc:
            raise CommandError(exc.detail) from exc
