"""Webhook subscriptions, and the follower that delivers the log to each of them.

The log is the queue. Each subscription has a cursor into it; its follower takes the next
event after the cursor that the subscriber may see and asked for (webhooks.selectors),
POSTs it signed (consortium_client.webhooks) and, only once the receiver answered 2xx,
moves the cursor past it, in the transaction that records the attempt. So messages go out
one at a time per subscription, in log order, at least once: a worker killed mid-delivery
leaves the cursor where it was and the message is sent again, with the same `webhook-id`
(`msg_<subscription>_<log index>`), which receivers de-duplicate on. A failure holds the
subscription's queue (order before throughput) and is retried with exponential backoff
and jitter; after WEBHOOK_MAX_ATTEMPTS failures the subscription is disabled with a notice.

Two followers of one subscription never run at once: each holds a PostgreSQL advisory lock
(per subscription, per database session) while it delivers. A killed worker's session
ends with its connection, which releases the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import secrets
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.actors import WEBHOOK_DELIVERER, Actor
from audit.selectors import log_size
from audit.services import access_event_record
from consortium.errors import (
    TooManyWebhooks,
    UnknownWebhookEventType,
    WebhookUrlRefused,
)
from consortium_client.webhooks import (
    webhook_headers,
    webhook_secret_new,
    webhook_secret_text,
)
from partners.models import Partner
from webhooks import outbound
from webhooks.events import TEST_TYPE, WEBHOOK_TYPES
from webhooks.models import Cursor, Delivery, Subscription
from webhooks.selectors import PendingEvent, subscription_pending, subscriptions_behind

logger = logging.getLogger(__name__)

# pg_advisory_lock(classid, objid) class of the followers' locks ("wh"); objid is the
# subscription id modulo 2^31 (two subscriptions sharing a lock only take turns).
FOLLOWER_LOCK_CLASS = 0x7768
# Retries due sooner than this are queued as a delayed task; later ones are left to the
# sweep, which runs every WEBHOOK_SWEEP_INTERVAL seconds (a broker holds delayed tasks in
# the worker's memory, and redelivers them if they wait longer than its visibility timeout).
QUEUE_RETRY_WITHIN = 600.0
DESCRIPTION_MAX = 200
# How long a dispatch's "follower queued" mark lasts if its task never starts.
QUEUED_MARK_SECONDS = 60


# Subscriptions


def _event_types_check(event_types: Collection[str]) -> list[str]:
    unknown = [kind for kind in event_types if kind not in WEBHOOK_TYPES]
    if unknown:
        raise UnknownWebhookEventType(
            f"unknown event type {unknown[0]!r}; known: {', '.join(WEBHOOK_TYPES)}",
            pointer="/event_types",
        )
    if not event_types:
        raise UnknownWebhookEventType("name at least one event type", pointer="/event_types")
    # Stored in the order of the routes' table, once each.
    return [kind for kind in WEBHOOK_TYPES if kind in event_types]


def _url_check(url: str) -> str:
    try:
        outbound.target_check(url)
    except outbound.TargetRefused as error:
        raise WebhookUrlRefused(str(error), pointer="/url") from None
    return url


def _partner_lock(partner: Partner) -> None:
    """Serialise subscription creation per partner (for the cap) without a row lock on the
    partner, which every insert naming it would wait for."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [FOLLOWER_LOCK_CLASS + 1, partner.pk]
            )


@transaction.atomic
def webhook_create(
    *, actor: Actor, url: str, event_types: Collection[str], description: str = ""
) -> tuple[Subscription, str]:
    """A new subscription of the actor's partner and its secret (`whsec_...`), which is
    never shown again. It receives the events appended after it is created; refused if the
    URL is not a target the server may request now (outbound), an event type is unknown,
    or the partner has WEBHOOK_MAX_PER_PARTNER subscriptions."""
    partner, _ = actor.require_partner()
    types = _event_types_check(event_types)
    _url_check(url)
    _partner_lock(partner)
    if Subscription.objects.filter(partner=partner).count() >= settings.WEBHOOK_MAX_PER_PARTNER:
        raise TooManyWebhooks(
            f"a partner has at most {settings.WEBHOOK_MAX_PER_PARTNER} webhooks",
            limit=settings.WEBHOOK_MAX_PER_PARTNER,
        )
    secret = webhook_secret_new()
    subscription = Subscription.objects.create(
        partner=partner,
        url=url,
        event_types=types,
        description=description[:DESCRIPTION_MAX],
        secret=secret,
    )
    # Every index below the size read here is committed: the subscription starts after them.
    Cursor.objects.create(subscription=subscription, position=log_size() - 1)
    # A mark left by a subscription of the same id in a database since recreated.
    follower_started(subscription.pk)
    access_event_record(
        actor=actor,
        action="webhook.create",
        status=201,
        target=f"webhook:{subscription.pk}",
        records=1,
        detail={"url": url, "event_types": types},
    )
    return subscription, webhook_secret_text(secret)


@transaction.atomic
def webhook_update(
    *,
    actor: Actor,
    subscription: Subscription,
    url: str | None = None,
    event_types: Collection[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> Subscription:
    """Change what the partner may change. Disabling pauses delivery where it stands;
    enabling (also after an automatic disable) clears the failures and resumes from the
    cursor, so the receiver gets, in order, every event it missed meanwhile."""
    changed: dict[str, Any] = {}
    if url is not None and url != subscription.url:
        subscription.url = _url_check(url)
        changed["url"] = url
    if event_types is not None:
        subscription.event_types = _event_types_check(event_types)
        changed["event_types"] = subscription.event_types
    if description is not None:
        subscription.description = description[:DESCRIPTION_MAX]
        changed["description"] = True
    now = timezone.now()
    if enabled is not None and enabled != subscription.enabled:
        subscription.enabled = enabled
        changed["enabled"] = enabled
        if enabled:
            subscription.disabled_reason, subscription.disabled_at = "", None
            Cursor.objects.filter(subscription=subscription).update(
                attempts=0, retry_at=None, failing_since=None
            )
            _follow_soon(subscription.pk)
        else:
            subscription.disabled_reason = "disabled by the partner"
            subscription.disabled_at = now
    subscription.updated_at = now
    subscription.save()
    access_event_record(
        actor=actor,
        action="webhook.update",
        status=200,
        target=f"webhook:{subscription.pk}",
        records=1,
        detail={"changed": changed},
    )
    return subscription


@transaction.atomic
def webhook_delete(*, actor: Actor, subscription: Subscription) -> None:
    """Delete the subscription, its cursor and its delivery log (the access log keeps its
    deliveries' events)."""
    subscription_id = subscription.pk
    Delivery.objects.filter(subscription_id=subscription_id).delete()
    subscription.delete()
    access_event_record(
        actor=actor,
        action="webhook.delete",
        status=204,
        target=f"webhook:{subscription_id}",
        records=1,
    )


@transaction.atomic
def webhook_test(*, actor: Actor, subscription: Subscription) -> str:
    """Queue a `webhook.test` message to the subscription, enabled or not, outside its
    ordered queue; returns its message id (its delivery appears in the delivery log)."""
    message_id = f"msg_{subscription.pk}_test_{secrets.token_hex(8)}"
    access_event_record(
        actor=actor,
        action="webhook.test",
        status=202,
        target=f"webhook:{subscription.pk}",
        detail={"message_id": message_id},
    )
    from webhooks.tasks import webhook_test_task

    transaction.on_commit(lambda: webhook_test_task.delay(subscription.pk, message_id), robust=True)
    return message_id


# Messages


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


def message_body(*, event: PendingEvent) -> bytes:
    """A log event's message: its first type, its leaf's time, and in `data` the log index,
    every type it is for this subscription, the leaf verbatim (as the feed serves it) and
    the feed's `values` for it (the opening of an add's commitment, or `erased`)."""
    return (
        b'{"type":%b,"timestamp":%b,"data":{"log_index":%d,"types":%b,"event":%b,"values":%b}}'
        % (
            _json(event.types[0]),
            _json(event.fields.get("time")),
            event.index,
            _json(event.types),
            event.leaf,
            event.values,
        )
    )


def test_message_body(*, subscription: Subscription, message_id: str) -> bytes:
    now = timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _json(
        {
            "type": TEST_TYPE,
            "timestamp": now,
            "data": {"webhook": subscription.pk, "message_id": message_id},
        }
    )


def message_id_of(*, subscription_id: int, log_index: int) -> str:
    """The idempotency id of a log event's message to a subscription: the same on every
    attempt, different for every (subscription, event)."""
    return f"msg_{subscription_id}_{log_index}"


def _send(subscription: Subscription, message_id: str, body: bytes) -> outbound.Answer:
    headers = webhook_headers(secret=bytes(subscription.secret), message_id=message_id, body=body)
    return outbound.post(url=subscription.url, body=body, headers=headers)


def _deliverer(subscription: Subscription) -> Actor:
    return dataclasses.replace(WEBHOOK_DELIVERER, partner=subscription.partner)


def _attempt_record(
    subscription: Subscription,
    *,
    message_id: str,
    event_type: str,
    log_index: int | None,
    attempt: int,
    answer: outbound.Answer,
) -> Delivery:
    delivery = Delivery.objects.create(
        subscription=subscription,
        message_id=message_id,
        event_type=event_type,
        log_index=log_index,
        attempt=attempt,
        succeeded=answer.succeeded,
        status_code=answer.status,
        duration_ms=answer.duration_ms,
        error=answer.error[:500],
    )
    detail: dict[str, Any] = {"message_id": message_id, "attempt": attempt}
    if answer.error:
        detail["error"] = answer.error[:500]
    access_event_record(
        actor=_deliverer(subscription),
        action="webhook.deliver",
        # No answer at all is recorded as 502, the status of a gateway whose upstream failed.
        status=answer.status or 502,
        target=f"webhook:{subscription.pk}",
        records=int(answer.succeeded and log_index is not None),
        detail=detail,
    )
    return delivery


def webhook_test_send(*, subscription_id: int, message_id: str) -> Delivery | None:
    """Send the test message `message_id` now and record the attempt (None if the
    subscription is gone)."""
    subscription = Subscription.objects.select_related("partner").filter(pk=subscription_id).first()
    if subscription is None:
        return None
    body = test_message_body(subscription=subscription, message_id=message_id)
    answer = _send(subscription, message_id, body)
    with transaction.atomic():
        return _attempt_record(
            subscription,
            message_id=message_id,
            event_type=TEST_TYPE,
            log_index=None,
            attempt=1,
            answer=answer,
        )


# The follower


def retry_delay(attempts: int) -> float:
    """Seconds before retry number `attempts` (1 after the first failure): exponential,
    capped, with +-25 % jitter so that receivers coming back are not hit all at once."""
    base = min(settings.WEBHOOK_RETRY_BASE * 4 ** (attempts - 1), settings.WEBHOOK_RETRY_MAX)
    return base * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not a secret


@contextlib.contextmanager
def _follower_lock(subscription_id: int) -> Iterator[bool]:
    """Whether this process holds the subscription's follower lock, for the block. Outside
    any transaction: the lock belongs to the session, not to one transaction, so that each
    delivery commits on its own while the lock stays held."""
    if connection.vendor != "postgresql":
        # The quick start's SQLite runs tasks eagerly, one at a time.
        yield True
        return
    key = [FOLLOWER_LOCK_CLASS, subscription_id % 2**31]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        (held,) = cursor.fetchone()
    try:
        yield bool(held)
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


@dataclass(frozen=True)
class FollowOutcome:
    """What a follower run ended with: `caught-up` (at the log's end), `more` (budget
    spent, queued again), `failing` (a retry is scheduled), `disabled`, `paused` (disabled,
    partner not active, or gone), `waiting` (a retry is not due yet), `busy` (another
    follower holds the lock)."""

    state: str
    delivered: int = 0
    position: int = -1


def subscription_follow(*, subscription_id: int, budget: int | None = None) -> FollowOutcome:
    """Deliver the subscription's pending messages, in log order, up to `budget` of them
    (WEBHOOK_BATCH), unless another follower of it is running. Must run outside a
    transaction (each delivery commits on its own)."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "subscription_follow commits each delivery: call it outside a transaction"
        )
    budget = settings.WEBHOOK_BATCH if budget is None else budget
    delivered = 0
    while True:
        with _follower_lock(subscription_id) as held:
            if not held:
                return FollowOutcome("busy", delivered)
            outcome = _follow_locked(subscription_id, budget - delivered)
        delivered += outcome.delivered
        if outcome.state == "more" or (outcome.state == "caught-up" and delivered >= budget):
            _follow_soon(subscription_id)
            return dataclasses.replace(outcome, state="more", delivered=delivered)
        if outcome.state != "caught-up":
            return dataclasses.replace(outcome, delivered=delivered)
        # A follower woken while this one held the lock found it taken and left: if the log
        # grew meanwhile, its events are this follower's to deliver.
        if log_size() - 1 <= outcome.position:
            return dataclasses.replace(outcome, delivered=delivered)


def _deliverable(subscription_id: int) -> Subscription | None:
    """The subscription as it is now, if it is to be delivered to."""
    subscription = Subscription.objects.select_related("partner").filter(pk=subscription_id).first()
    if subscription is None or not subscription.enabled or not subscription.partner.is_active:
        return None
    return subscription


def _follow_locked(subscription_id: int, budget: int) -> FollowOutcome:
    cursor = Cursor.objects.filter(subscription_id=subscription_id).first()
    if cursor is None:
        return FollowOutcome("paused")
    if cursor.retry_at is not None and cursor.retry_at > timezone.now():
        return FollowOutcome("waiting", position=cursor.position)
    delivered = 0
    while delivered < budget:
        subscription = _deliverable(subscription_id)
        if subscription is None:
            return FollowOutcome("paused", delivered, cursor.position)
        pending = subscription_pending(
            subscription=subscription, after=cursor.position, limit=budget - delivered
        )
        for event in pending.events:
            if event is not pending.events[0]:
                # Read again before each message: the partner may disable or edit it.
                subscription = _deliverable(subscription_id)
                if subscription is None:
                    return FollowOutcome("paused", delivered, cursor.position)
            state = _deliver(subscription, cursor, event)
            if state != "delivered":
                return FollowOutcome(state, delivered, cursor.position)
            delivered += 1
        if pending.scanned_to > cursor.position:
            # Events the subscriber may not see or did not ask for: passed over for good.
            Cursor.objects.filter(pk=subscription_id).update(position=pending.scanned_to)
            cursor.position = pending.scanned_to
        if cursor.position >= pending.log_last:
            return FollowOutcome("caught-up", delivered, cursor.position)
    return FollowOutcome("more", delivered, cursor.position)


def _deliver(subscription: Subscription, cursor: Cursor, event: PendingEvent) -> str:
    """Send one message and record the attempt; `delivered`, or what the failure led to.
    The cursor moves past the message only with the record of its 2xx."""
    message_id = message_id_of(subscription_id=subscription.pk, log_index=event.index)
    attempt = cursor.attempts + 1
    answer = _send(subscription, message_id, message_body(event=event))
    try:
        with transaction.atomic():
            _attempt_record(
                subscription,
                message_id=message_id,
                event_type=event.types[0],
                log_index=event.index,
                attempt=attempt,
                answer=answer,
            )
            if not answer.succeeded:
                return _failure_record(subscription, cursor, message_id, attempt, answer)
            Cursor.objects.filter(pk=subscription.pk).update(
                position=event.index, attempts=0, retry_at=None, failing_since=None
            )
    except IntegrityError:
        # The partner deleted the subscription during the attempt: nothing left to record.
        if Subscription.objects.filter(pk=subscription.pk).exists():
            raise
        return "paused"
    cursor.position, cursor.attempts, cursor.failing_since = event.index, 0, None
    return "delivered"


def _failure_record(
    subscription: Subscription,
    cursor: Cursor,
    message_id: str,
    attempt: int,
    answer: outbound.Answer,
) -> str:
    """Schedule the retry of a failed message, or disable the subscription after
    WEBHOOK_MAX_ATTEMPTS failures (inside the attempt's transaction)."""
    now = timezone.now()
    failing_since = cursor.failing_since or now
    if attempt >= settings.WEBHOOK_MAX_ATTEMPTS:
        last = f"HTTP {answer.status}" if answer.status else answer.error
        subscription.enabled = False
        subscription.disabled_at = now
        subscription.disabled_reason = (
            f"disabled after {attempt} failed attempts to deliver {message_id} since "
            f"{failing_since:%Y-%m-%dT%H:%M:%SZ}; last: {last}"
        )[:500]
        subscription.save(update_fields=["enabled", "disabled_at", "disabled_reason"])
        Cursor.objects.filter(pk=subscription.pk).update(
            attempts=attempt, retry_at=None, failing_since=failing_since
        )
        logger.warning("webhook %d: %s", subscription.pk, subscription.disabled_reason)
        return "disabled"
    delay = retry_delay(attempt)
    retry_at: datetime = now + timedelta(seconds=delay)
    Cursor.objects.filter(pk=subscription.pk).update(
        attempts=attempt, retry_at=retry_at, failing_since=failing_since
    )
    if delay <= QUEUE_RETRY_WITHIN:
        from webhooks.tasks import subscription_follow_task

        transaction.on_commit(
            lambda: subscription_follow_task.apply_async((subscription.pk,), countdown=delay),
            robust=True,
        )
    return "failing"


def _follow_soon(subscription_id: int) -> None:
    """Queue the subscription's follower, once the current transaction commits (at once
    outside one). A broker that cannot be reached is logged and skipped: the sweep wakes
    the follower within WEBHOOK_SWEEP_INTERVAL."""
    from webhooks.tasks import subscription_follow_task

    transaction.on_commit(lambda: subscription_follow_task.delay(subscription_id), robust=True)


def webhooks_wake(sender: Any, size: int, **kwargs: Any) -> None:
    """Receiver of audit.signals.log_appended: once the appending transaction commits, wake
    the followers behind the log."""
    from webhooks.tasks import webhooks_dispatch_task

    # delay_on_commit, made robust like checkpoint_soon: a committed write is never turned
    # into an error by a broker that is down (the sweep catches up).
    transaction.on_commit(webhooks_dispatch_task.delay, robust=True)


def _queued_key(subscription_id: int) -> str:
    return f"webhooks:follower-queued:{subscription_id}"


def follower_started(subscription_id: int) -> None:
    """Called by the follower task as it starts: a write from now on queues another."""
    cache.delete(_queued_key(subscription_id))


def webhooks_dispatch() -> int:
    """Queue a follower for every subscription behind the log and due (the wake-up after a
    write, and beat's sweep), unless one is queued and has not started yet: a burst of
    writes queues one follower per subscription, not one per write. Returns how many were
    queued. The mark expires after QUEUED_MARK_SECONDS, in case its task was lost."""
    from webhooks.tasks import subscription_follow_task

    queued = 0
    for subscription_id in subscriptions_behind(now=timezone.now()):
        if cache.add(_queued_key(subscription_id), 1, timeout=QUEUED_MARK_SECONDS):
            subscription_follow_task.delay(subscription_id)
            queued += 1
    return queued
