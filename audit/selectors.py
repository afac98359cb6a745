"""Reads of the access log, for auditors."""

from __future__ import annotations

from dataclasses import dataclass

import django_filters
from django.db.models import QuerySet

from audit.models import AccessEvent


class AccessEventFilter(django_filters.FilterSet):
    partner = django_filters.CharFilter(field_name="partner__name")
    action = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="time", lookup_expr="lt")
    before = django_filters.NumberFilter(field_name="id", lookup_expr="lt", min_value=0)

    class Meta:
        model = AccessEvent
        fields = ["partner", "action", "since", "until", "before"]


@dataclass(frozen=True)
class AccessPage:
    events: list[AccessEvent]
    next_cursor: int | None


def access_events_page(*, filters: AccessEventFilter, limit: int) -> AccessPage:
    """Newest first, keyset-paginated on id (`before` = the previous page's `next`).

    Every filter is served by an index: (partner, -id), (action, -id), (time).
    """
    queryset: QuerySet[AccessEvent] = filters.qs.select_related("partner").order_by("-id")
    events = list(queryset[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    return AccessPage(events, events[-1].pk if more else None)
