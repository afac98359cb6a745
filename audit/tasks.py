"""Periodic and after-commit work of the audit app. Tasks act as named system actors."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audit.actors import ACCESS_PERIOD_SEALER
from audit.services import access_period_seal

# Access-log periods


@shared_task(name="audit.tasks.access_period_seal_task")
def access_period_seal_task() -> int | None:
    """Seal the access events since the last period (beat, every ACCESS_PERIOD_SECONDS);
    the number of the period sealed, or None if there was nothing to seal."""
    period = access_period_seal(
        actor=ACCESS_PERIOD_SEALER, wait_seconds=settings.ACCESS_PERIOD_WAIT_SECONDS
    )
    return None if period is None else period.number
