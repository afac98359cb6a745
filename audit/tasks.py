"""Periodic and after-commit work of the log, run by Celery workers as named system actors."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audit.actors import ACCESS_PERIOD_SEALER, CHECKPOINT_SIGNER
from audit.services import access_period_seal, checkpoint_sign

# Checkpoints


@shared_task(ignore_result=True)
def checkpoint_sign_task() -> int:
    """Sign a checkpoint of the committed log (beat, and queued after every write to the
    log by checkpoint_soon); returns the size signed. Running it twice at once is safe."""
    return checkpoint_sign(actor=CHECKPOINT_SIGNER).size


# Access-log periods


@shared_task(name="audit.tasks.access_period_seal_task")
def access_period_seal_task() -> int | None:
    """Seal the access events since the last period (beat, every ACCESS_PERIOD_SECONDS);
    the number of the period sealed, or None if there was nothing to seal."""
    period = access_period_seal(
        actor=ACCESS_PERIOD_SEALER, wait_seconds=settings.ACCESS_PERIOD_WAIT_SECONDS
    )
    return None if period is None else period.number
