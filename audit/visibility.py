"""Who may see which log event: one registry, by event type, used by every read of the log
(the feed, log/entries, entry bundles, inclusion proofs).

- List-scoped events (an entry added, revoked or erased, feedback on it, its confirmation,
  quarantine and the quarantine's resolution) are visible to the partners who see the list.
- Events about signing keys and partners, and sealed access periods, are visible to every
  active partner (a suspended partner's keys do not authenticate at all).
- Any other type is visible to nobody until a rule here names its audience: a new event
  type is hidden by default, never shown by accident.

A hidden event still occupies its index and its leaf hash is in the level-0 tiles; the
leaf's server nonce makes that hash say nothing about its content (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Q

from consortium_client import leaves

LIST_SCOPED = (
    leaves.ENTRY_ADDED,
    leaves.ENTRY_REVOKED,
    leaves.ENTRY_ERASED,
    leaves.ENTRY_FEEDBACK,
    *leaves.ENTRY_HOLD_TYPES,
)


def _every_partner(event_type: str) -> bool:
    return event_type.startswith(("signing_key_", "partner_")) or (
        event_type == leaves.ACCESS_PERIOD_SEALED
    )


EVERY_PARTNER = tuple(t for t in leaves.EVENT_TYPES if _every_partner(t))


def event_visible(*, event_type: str, list_id: int | None, list_ids: Collection[int]) -> bool:
    """Whether a partner who sees the lists `list_ids` may see this event."""
    if event_type in LIST_SCOPED:
        return list_id is not None and list_id in list_ids
    return event_type in EVERY_PARTNER


def events_visible_q(*, list_ids: Collection[int]) -> Q:
    """The same rule as a filter on LogEvent rows."""
    return Q(event_type__in=EVERY_PARTNER) | Q(
        event_type__in=LIST_SCOPED, hash_list_id__in=list(list_ids)
    )
