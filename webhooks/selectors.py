"""Reads of webhook subscriptions, and what each subscription's follower delivers next.

Which log events a subscriber may receive is not decided here: the log page comes from
`audit.selectors.log_page_for_lists` with the lists `hashes.selectors.lists_visible_ids`
gives, the same two calls the feed makes (so audit.visibility rules both); this module
only maps the visible events to webhook types (webhooks.events).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import F, Q, QuerySet

from audit.selectors import log_page_for_lists, log_size
from consortium.errors import UnknownWebhook
from consortium_client.leaves import leaf_decode
from hashes.selectors import (
    entry_lists_and_partners,
    feed_values,
    lists_visible_ids,
    values_may_pass,
)
from partners.models import Partner
from webhooks.events import Subscriber, webhook_types_of
from webhooks.models import Delivery, Subscription

# Log indexes one look for the next event examines (then the cursor moves past them).
SCAN = 1000


def subscriptions_of(*, partner: Partner) -> QuerySet[Subscription]:
    """The partner's subscriptions, oldest first (served by the (partner, id) index)."""
    return Subscription.objects.filter(partner=partner).select_related("cursor").order_by("id")


def subscription_get(*, partner: Partner, subscription_id: int) -> Subscription:
    """The partner's subscription `subscription_id`; another partner's is reported exactly
    like one that does not exist."""
    found = (
        subscriptions_of(partner=partner).filter(pk=subscription_id).first()
        if 0 < subscription_id < 2**63
        else None
    )
    if found is None:
        raise UnknownWebhook(f"this partner has no webhook {subscription_id}")
    return found


def deliveries_page(
    *, subscription: Subscription, before: int | None, limit: int
) -> tuple[list[Delivery], int | None]:
    """Delivery attempts of `subscription`, newest first, keyset-paginated on id: the page
    and the `before` of the next one (None at the oldest)."""
    queryset = Delivery.objects.filter(subscription=subscription).order_by("-id")
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].pk if more else None


def subscriptions_behind(*, now: datetime) -> list[int]:
    """Enabled subscriptions of active partners whose cursor is behind the log and that are
    not waiting for a retry: the ones a sweep wakes."""
    last = log_size() - 1
    return list(
        Subscription.objects.filter(
            enabled=True,
            partner__status=Partner.Status.ACTIVE,
            cursor__position__lt=last,
        )
        .filter(Q(cursor__retry_at__isnull=True) | Q(cursor__retry_at__lte=now))
        .order_by(F("cursor__retry_at").asc(nulls_first=True), "id")
        .values_list("id", flat=True)
    )


@dataclass(frozen=True)
class PendingEvent:
    """The next message of a subscription: a log event it may see and asked for."""

    index: int
    leaf: bytes
    fields: dict[str, Any]
    types: list[str]
    values: bytes  # the feed's openings of the event (a JSON array; empty unless an add)


@dataclass(frozen=True)
class Pending:
    """The next messages of a subscription, in log order, and how far the look went: once
    they are delivered, every index up to `scanned_to` is handled."""

    events: list[PendingEvent]
    scanned_to: int
    log_last: int


def subscription_pending(*, subscription: Subscription, after: int, limit: int) -> Pending:
    """Up to `limit` events after index `after` that `subscription` is to receive, in log
    order, looking at most SCAN indexes ahead, within the committed log (log_size first, as
    the feed reads it: an index below it never commits later)."""
    partner = subscription.partner
    size = log_size()
    end = min(size, after + 1 + SCAN)
    list_ids = lists_visible_ids(partner=partner)
    rows = log_page_for_lists(after=after, end=end, list_ids=list_ids, limit=SCAN)
    owners: dict[int, int | None] = {}

    def entry_owner(entry_id: int) -> int | None:
        if entry_id not in owners:
            found = entry_lists_and_partners(ids=[entry_id]).get(entry_id)
            owners[entry_id] = None if found is None else found[1]
        return owners[entry_id]

    subscriber = Subscriber(partner_id=partner.pk, entry_owner=entry_owner)
    subscribed = set(subscription.event_types)
    found: list[tuple[int, bytes, dict[str, Any], list[str]]] = []
    scanned_to = max(end - 1, after)
    for index, leaf in rows:
        fields = leaf_decode(leaf)
        types = webhook_types_of(fields, subscribed=subscribed, subscriber=subscriber)
        if types:
            found.append((index, leaf, fields, types))
            if len(found) == limit:
                scanned_to = index
                break
    added = [index for index, _, fields, _ in found if fields.get("type") == "entry_added"]
    # The feed's openings of the adds, read at once for the page, each as its own array.
    openings: dict[int, bytes] = {}
    if added:
        cap = settings.FEED_PAGE_MAX_BYTES
        leaves = [leaf for _, leaf, fields, _ in found if fields.get("type") == "entry_added"]
        values = feed_values(
            first=added[0],
            last=added[-1],
            list_ids=list_ids,
            # The range may hold adds this subscription passes over: count them all.
            max_bytes=cap
            if values_may_pass(leaves, count=added[-1] - added[0] + 1, max_bytes=cap)
            else None,
        )
        if values.cut is not None:  # past the feed's byte cap: the rest comes next round
            found = [event for event in found if event[0] < values.cut]
            scanned_to = values.cut - 1
        items = json.loads(values.items)
        openings = {
            item["index"]: b"[%b]" % json.dumps(item, separators=(",", ":")).encode()
            for item in items
        }
    events = [
        PendingEvent(index, leaf, fields, types, openings.get(index, b"[]"))
        for index, leaf, fields, types in found
    ]
    return Pending(events, scanned_to, size - 1)
