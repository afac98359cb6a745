"""Periodic and after-commit work of the log, run by Celery workers as named system actors."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audit.actors import ACCESS_PERIOD_SEALER, CHECKPOINT_SIGNER, WITNESS_PUSHER
from audit.services import access_period_seal, access_rollup, checkpoint_sign
from audit.witnesses import WitnessUnavailable, witness_push, witnesses_configured

# Checkpoints


@shared_task(ignore_result=True)
def checkpoint_sign_task() -> int:
    """Sign a checkpoint of the committed log (beat, and queued after every write to the
    log by checkpoint_soon); returns the size signed. Running it twice at once is safe."""
    return checkpoint_sign(actor=CHECKPOINT_SIGNER).size


# Outside witnesses


@shared_task(
    ignore_result=True,
    autoretry_for=(WitnessUnavailable,),
    max_retries=settings.LOG_WITNESS_RETRIES,
    retry_backoff=15,
    retry_backoff_max=600,
    retry_jitter=True,
)
def witness_push_task(checkpoint_size: int, witness: str | None = None) -> None:
    """Push the checkpoint of `checkpoint_size` to the outside witness named `witness`, or,
    with None, queue one push per configured witness (queued after a checkpoint commits).

    One task per witness, so that a witness that is down is retried on its own, with
    exponential backoff (15 s, 30 s, ... at most 10 min, LOG_WITNESS_RETRIES times), and
    never delays the others. A push that gives up is not lost: the next checkpoint's push
    carries a consistency proof from whatever the witness cosigned last."""
    configured = witnesses_configured()
    if witness is None:
        for each in configured:
            witness_push_task.delay(checkpoint_size, each.name)
        return
    # A witness removed from LOG_WITNESSES since the push was queued is not pushed to.
    for each in configured:
        if each.name == witness:
            witness_push(witness=each, size=checkpoint_size, actor=WITNESS_PUSHER)


# Access-log periods


@shared_task(name="audit.tasks.access_period_seal_task")
def access_period_seal_task() -> int | None:
    """Seal the access events since the last period (beat, every ACCESS_PERIOD_SECONDS);
    the number of the period sealed, or None if there was nothing to seal."""
    period = access_period_seal(
        actor=ACCESS_PERIOD_SEALER, wait_seconds=settings.ACCESS_PERIOD_WAIT_SECONDS
    )
    return None if period is None else period.number


@shared_task(name="audit.tasks.access_rollup_task", ignore_result=True)
def access_rollup_task() -> int:
    """Roll the settled access events into the overview's daily counts (beat, every
    ACCESS_ROLLUP_SECONDS); returns the watermark reached."""
    return access_rollup(wait_seconds=settings.ACCESS_PERIOD_WAIT_SECONDS)
