"""Webhook delivery, run by Celery workers as the named system actor webhook-deliverer."""

from __future__ import annotations

from celery import shared_task

from webhooks.services import (
    follower_started,
    subscription_follow,
    webhook_test_send,
    webhooks_dispatch,
)


@shared_task(ignore_result=True)
def webhooks_dispatch_task() -> int:
    """Queue the followers behind the log (after every write to the log); how many."""
    return webhooks_dispatch()


@shared_task(name="webhooks.tasks.webhooks_sweep_task", ignore_result=True)
def webhooks_sweep_task() -> int:
    """The safety net (beat, every WEBHOOK_SWEEP_INTERVAL): the same as a write's wake-up,
    for wake-ups lost to a broker outage, and for retries due later than a queued task
    waits."""
    return webhooks_dispatch()


# acks_late and reject_on_worker_lost: a worker killed mid-delivery leaves the task to run
# again, and nothing is lost either way (the cursor moves only after a 2xx is recorded).
@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def subscription_follow_task(subscription_id: int) -> str:
    """Deliver the subscription's pending messages in log order (webhooks.services)."""
    follower_started(subscription_id)
    return subscription_follow(subscription_id=subscription_id).state


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def webhook_test_task(subscription_id: int, message_id: str) -> None:
    """Send the test message a partner asked for."""
    webhook_test_send(subscription_id=subscription_id, message_id=message_id)
