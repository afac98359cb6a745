"""Tasks of the log, run by Celery workers as named system actors."""

from __future__ import annotations

from celery import shared_task

from audit.services import CHECKPOINT_SIGNER, checkpoint_sign


@shared_task(ignore_result=True)
def checkpoint_sign_task() -> int:
    """Sign a checkpoint of the committed log (beat, and queued after every write to the
    log by checkpoint_soon); returns the size signed. Running it twice at once is safe."""
    return checkpoint_sign(actor=CHECKPOINT_SIGNER).size
