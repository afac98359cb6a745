"""Reads of the log and of the access log. Other apps read the log through these."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Func, Q, QuerySet, TextField
from django_filters.fields import IsoDateTimeField

from audit.models import AccessEvent, LogEvent, LogHead
from consortium_client import leaves


class LeafText(Func):
    """A log leaf read as text. Leaves are ASCII JSON (consortium_client.leaves), so the text
    is the same bytes without bytea's hex encoding: half the data on the wire and no
    unescaping in libpq, the largest single cost of a large feed page. A leaf that were not
    UTF-8 would fail the query, never be served altered."""

    function = "convert_from"
    template = "%(function)s(%(expressions)s, 'UTF8')"
    output_field = TextField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="CAST(%(expressions)s AS TEXT)", **extra)


def log_size() -> int:
    """How many events the log holds. Every index below it is committed (see log_append), so
    a reader that stops there never skips an event that commits later."""
    return LogHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0


def log_leaf(*, index: int) -> bytes | None:
    """The leaf at `index`, or None if the log has no such event."""
    leaf = LogEvent.objects.filter(index=index).values_list("leaf", flat=True).first()
    return None if leaf is None else bytes(leaf)


def log_events_from(*, start: int, limit: int) -> list[tuple[int, int | None, bytes]]:
    """Up to `limit` events from index `start` on, in log order: index, list id, leaf."""
    rows = (
        LogEvent.objects.filter(index__gte=start)
        .order_by("index")
        .annotate(leaf_text=LeafText("leaf"))
        .values_list("index", "hash_list_id", "leaf_text")[:limit]
    )
    return [(index, list_id, leaf.encode()) for index, list_id, leaf in rows]


def log_page_for_lists(
    *, after: int, end: int, list_ids: list[int], limit: int
) -> list[tuple[int, bytes]]:
    """Up to `limit` events with index in (after, end), in log order, that concern no list
    or one of `list_ids`: a page of the log for one visibility scope (index, leaf). Walks
    the primary key; `end` bounds how far one page may scan."""
    rows = (
        LogEvent.objects.filter(index__gt=after, index__lt=end)
        .filter(Q(hash_list_id__isnull=True) | Q(hash_list_id__in=list_ids))
        .order_by("index")
        .annotate(leaf_text=LeafText("leaf"))
        .values_list("index", "leaf_text")[:limit]
    )
    return [(index, leaf.encode()) for index, leaf in rows]


def log_entry_events_below(*, size: int, chunk: int) -> Iterator[tuple[int, int | None, str]]:
    """Every entry_added, entry_revoked and entry_erased event below index `size`, in log
    order: index, list id and leaf text (ASCII JSON), streamed `chunk` rows at a time."""
    return (
        LogEvent.objects.filter(
            index__lt=size,
            event_type__in=[leaves.ENTRY_ADDED, leaves.ENTRY_REVOKED, leaves.ENTRY_ERASED],
        )
        .order_by("index")
        .annotate(leaf_text=LeafText("leaf"))
        .values_list("index", "hash_list_id", "leaf_text")
        .iterator(chunk_size=chunk)
    )


# The widest UTC offset PostgreSQL accepts; no zone, past or present, has been further out.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
CURSOR_PATTERN = re.compile(r"[0-9]{1,19}")


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time within what the database can hold, normalised to UTC here.

    An offset past ±15:59 fails inside PostgreSQL, and a value at the edge of Python's range
    may have no UTC equivalent (0001-01-01T00:00+01:00): either would be a 500 from within
    the query, so both are refused while the parameter is validated. So is NUL, which
    `datetime.fromisoformat` silently treats as the end of the text."""

    def to_python(self, value: Any) -> datetime | None:
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError("must not contain NUL", code="invalid")
        moment = super().to_python(value)
        if moment is None:
            return None
        offset = moment.utcoffset()
        if offset is not None and abs(offset) > MAX_UTC_OFFSET:
            raise ValidationError("has a UTC offset beyond ±15:59", code="invalid")
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("has no UTC equivalent in range", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class CursorField(forms.CharField):
    """An event id as ASCII digits: a decimal field would also read `1.5`, `1e3` and ` 7 `,
    so that one cursor had many spellings."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strip=False, **kwargs)

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        if text is None or text in self.empty_values:
            return None
        if not CURSOR_PATTERN.fullmatch(text):
            raise ValidationError("must be an event id (ASCII digits)", code="invalid")
        return int(text)


class CursorFilter(django_filters.Filter):
    field_class = CursorField


class AccessEventFilter(django_filters.FilterSet):
    partner = django_filters.CharFilter(field_name="partner__name")
    action = django_filters.CharFilter()
    since = UtcDateTimeFilter(field_name="time", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="time", lookup_expr="lt")
    before = CursorFilter(field_name="id", lookup_expr="lt")

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
