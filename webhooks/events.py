"""Which log events become which webhook events: one table, `ROUTES`.

The log is the queue: a subscription follows it, and an event reaches the subscriber only if
(1) audit.visibility lets the subscriber's partner see it, exactly as in its feed (decided
by the selectors, never here), and (2) a route below maps its log type to a webhook type
the subscription asked for, and the route's condition holds. A log event is one message,
whatever number of routes match it: its `type` is the first matching route's type (in
table order), `types` lists every matching type the subscription asked for.

A log type reaches webhooks only once audit.visibility names its audience (a new log type
is hidden by default). A new webhook type is one row here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from consortium_client import leaves


class Subscriber:
    """What a route's condition may ask about the subscriber (answered by selectors)."""

    def __init__(self, *, partner_id: int, entry_owner: Callable[[int], int | None]) -> None:
        self.partner_id = partner_id
        self._entry_owner = entry_owner

    def owns_entry(self, entry_id: Any) -> bool:
        if not isinstance(entry_id, int) or isinstance(entry_id, bool):
            return False
        return self._entry_owner(entry_id) == self.partner_id


Condition = Callable[[Mapping[str, Any], Subscriber], bool]


def _always(leaf: Mapping[str, Any], subscriber: Subscriber) -> bool:
    return True


def _disputed(leaf: Mapping[str, Any], subscriber: Subscriber) -> bool:
    return leaf.get("status") == "disputed"


def _on_own_entry(leaf: Mapping[str, Any], subscriber: Subscriber) -> bool:
    return subscriber.owns_entry(leaf.get("entry"))


@dataclass(frozen=True)
class Route:
    log_type: str
    webhook_type: str
    when: Condition = _always
    description: str = ""


ROUTES: tuple[Route, ...] = (
    Route(leaves.ENTRY_ADDED, "entry.added", description="an entry added to a list you see"),
    Route(leaves.ENTRY_REVOKED, "entry.revoked", description="an entry revoked"),
    Route(leaves.ENTRY_ERASED, "entry.erased", description="an entry's value erased"),
    Route(
        leaves.ENTRY_CONFIRMED,
        "entry.confirmed",
        description="a pending entry confirmed by its list's review policy",
    ),
    Route(
        leaves.ENTRY_QUARANTINED,
        "entry.quarantined",
        description="an entry quarantined by its list's policy",
    ),
    Route(
        leaves.ENTRY_QUARANTINE_RESOLVED,
        "entry.quarantine_resolved",
        description="an entry's quarantine resolved (restored or revoked)",
    ),
    Route(
        leaves.ENTRY_FEEDBACK,
        "entry.disputed",
        _disputed,
        description="feedback that left an entry disputed",
    ),
    Route(
        leaves.ENTRY_FEEDBACK,
        "entry.feedback",
        _on_own_entry,
        description="feedback on an entry your partner submitted",
    ),
)

# Sent only by `POST /webhooks/{id}/test`; never subscribed to, never from the log.
TEST_TYPE = "webhook.test"
WEBHOOK_TYPES: tuple[str, ...] = tuple(dict.fromkeys(route.webhook_type for route in ROUTES))
LOG_TYPES: frozenset[str] = frozenset(route.log_type for route in ROUTES)


def webhook_types_of(
    leaf: Mapping[str, Any], *, subscribed: Collection[str], subscriber: Subscriber
) -> list[str]:
    """The webhook types the subscription asked for that the (visible) event `leaf` is, in
    table order; empty if none."""
    log_type = leaf.get("type")
    return [
        route.webhook_type
        for route in ROUTES
        if route.log_type == log_type
        and route.webhook_type in subscribed
        and route.when(leaf, subscriber)
    ]
