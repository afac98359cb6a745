"""Reads of the log and of the access log. Other apps read the log through these."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Func, Q, QuerySet, TextField
from django_filters.fields import IsoDateTimeField

from audit.models import AccessEvent, AccessPeriod, Checkpoint, LogEvent, LogHead
from audit.visibility import event_visible, events_visible_q
from consortium_client import leaves, merkle, notes


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


# Raw SQL: the match index runs this before every match, usually for the one leaf it last
# applied, and as ORM expressions it cost several times more to compile than to run.
_EVENTS_FROM_SQL = (
    'SELECT "index", hash_list_id, {leaf} FROM {table} WHERE "index" >= %s '
    'ORDER BY "index" LIMIT %s'
)


def log_events_from(*, start: int, limit: int) -> list[tuple[int, int | None, bytes]]:
    """Up to `limit` events from index `start` on, in log order: index, list id, leaf."""
    leaf = (
        "convert_from(leaf, 'UTF8')" if connection.vendor == "postgresql" else "CAST(leaf AS TEXT)"
    )
    query = _EVENTS_FROM_SQL.format(
        leaf=leaf, table=connection.ops.quote_name(LogEvent._meta.db_table)
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [start, limit])
        rows = cursor.fetchall()
    return [(index, list_id, text.encode()) for index, list_id, text in rows]


def log_page_for_lists(
    *, after: int, end: int, list_ids: list[int], limit: int
) -> list[tuple[int, bytes]]:
    """Up to `limit` events with index in (after, end), in log order, that a partner who sees
    the lists `list_ids` may see (audit.visibility): a page of the log for one visibility
    scope (index, leaf). Walks the primary key; `end` bounds how far one page may scan."""
    rows = (
        LogEvent.objects.filter(index__gt=after, index__lt=end)
        .filter(events_visible_q(list_ids=list_ids))
        .order_by("index")
        .annotate(leaf_text=LeafText("leaf"))
        .values_list("index", "leaf_text")[:limit]
    )
    return [(index, leaf.encode()) for index, leaf in rows]


@dataclass(frozen=True)
class LogEntry:
    """One event as a reader of the log gets it: its leaf, or None where it is withheld."""

    index: int
    leaf_hash: bytes
    leaf: bytes | None


def log_entries(*, start: int, end: int, list_ids: Collection[int]) -> list[LogEntry]:
    """The events with index in [start, end), in log order, each withheld (leaf None) unless
    a partner who sees `list_ids` may see it. The caller bounds the range."""
    rows = (
        LogEvent.objects.filter(index__gte=start, index__lt=end)
        .order_by("index")
        .values_list("index", "event_type", "hash_list_id", "leaf")
    )
    found = []
    for index, event_type, list_id, leaf in rows:
        raw = bytes(leaf)
        shown = event_visible(event_type=event_type, list_id=list_id, list_ids=list_ids)
        found.append(LogEntry(index, merkle.leaf_hash(raw), raw if shown else None))
    return found


def log_event_visible(*, index: int, list_ids: Collection[int]) -> bool:
    """Whether event `index` exists and a partner who sees `list_ids` may see it."""
    row = LogEvent.objects.filter(index=index).values_list("event_type", "hash_list_id").first()
    return row is not None and event_visible(event_type=row[0], list_id=row[1], list_ids=list_ids)


def log_index_of_leaf_hash(*, leaf_hash: bytes) -> int | None:
    """The first event whose RFC 9162 leaf hash is `leaf_hash`, through the hash index of
    migration 0004 (leaves carry a random nonce, so two events never share one)."""
    table = connection.ops.quote_name(LogEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT "index" FROM {table} '  # noqa: S608
            "WHERE sha256('\\x00'::bytea || leaf) = %s ORDER BY \"index\" LIMIT 1",
            [leaf_hash],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def checkpoint_latest() -> Checkpoint | None:
    """The checkpoint of the largest size signed so far."""
    return Checkpoint.objects.order_by("-size").first()


def checkpoint_note(checkpoint: Checkpoint) -> str:
    """The checkpoint's signed note with the cosignatures collected for it: the outside
    witnesses' first, then the partners', each oldest first.

    At most 99 of them: with the log's own, a note carries at most 100 signature lines, and
    Go's sumdb/note refuses a note with more. The witnesses' come first so that no number
    of partner cosignatures can push the administrator-chosen witnesses out of the note."""
    lines = (
        checkpoint.cosignatures.annotate(by_partner=Q(witness=""))
        .order_by("by_partner", "id")
        .values_list("line", flat=True)[: notes.MAX_SIGNATURES - 1]
    )
    return checkpoint.note + "".join(lines)


def witness_cosigned_size(*, witness: str) -> int:
    """The size of the largest checkpoint the outside witness `witness` cosigned for us (0 if
    none): the size it last verified, which the next push's consistency proof starts from.

    Walks checkpoints from the largest down through the (checkpoint, witness) unique index,
    so it stops at the witness's latest cosignature."""
    size = (
        Checkpoint.objects.filter(cosignatures__witness=witness)
        .order_by("-size")
        .values_list("size", flat=True)
        .first()
    )
    return size or 0


def checkpoint_of_size(*, size: int) -> Checkpoint | None:
    """The checkpoint of tree size `size`, if this log signed one."""
    return Checkpoint.objects.filter(size=size).first()


def log_entry_events_below(*, size: int, chunk: int) -> Iterator[tuple[int, int | None, str]]:
    """Every event below index `size` that decides whether an entry matches (added, revoked,
    erased, confirmed, quarantined, quarantine resolved), in log order: index, list id and
    leaf text (ASCII JSON), streamed `chunk` rows at a time."""
    return (
        LogEvent.objects.filter(
            index__lt=size,
            event_type__in=[
                leaves.ENTRY_ADDED,
                leaves.ENTRY_REVOKED,
                leaves.ENTRY_ERASED,
                *leaves.ENTRY_HOLD_TYPES,
            ],
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
    # A sealed period's range, as its access_period_sealed leaf states it.
    after_id = CursorFilter(field_name="id", lookup_expr="gt")
    last_id = CursorFilter(field_name="id", lookup_expr="lte")

    class Meta:
        model = AccessEvent
        fields = ["partner", "action", "since", "until", "before", "after_id", "last_id"]


@dataclass(frozen=True)
class AccessPage:
    events: list[AccessEvent]
    next_cursor: int | None


def access_events_page(*, filters: AccessEventFilter, limit: int) -> AccessPage:
    """Newest first, keyset-paginated on id (`before` = the previous page's `next`).

    Every filter is served by an index: (partner, -id), (action, -id), (time).
    """
    queryset: QuerySet[AccessEvent] = filters.qs.select_related("partner", "user").order_by("-id")
    events = list(queryset[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    return AccessPage(events, events[-1].pk if more else None)


# Access-log periods


def access_period_event_fields(*, after_id: int, last_id: int) -> Iterator[dict[str, Any]]:
    """The access events with after_id < id <= last_id, in id order, streamed, each as the
    mapping `consortium_client.accesslog.access_event_encode` takes: every column, the
    partner and the user by name. What a period seals and what an auditor is given."""
    columns = {
        "id": "id",
        "time": "time",
        "partner": "partner__name",
        "key_prefix": "key_prefix",
        "user": f"user__{get_user_model().USERNAME_FIELD}",
        "actor": "actor",
        "action": "action",
        "target": "target",
        "records": "records",
        "status": "status",
        "client_ip": "client_ip",
        "detail": "detail",
    }
    rows = (
        AccessEvent.objects.filter(id__gt=after_id, id__lte=last_id)
        .order_by("id")
        .values_list(*columns.values())
        .iterator(chunk_size=2000)
    )
    names = tuple(columns)
    return (dict(zip(names, row, strict=True)) for row in rows)


def access_period_latest() -> AccessPeriod | None:
    return AccessPeriod.objects.order_by("-number").first()


def access_periods_in_order() -> Iterator[AccessPeriod]:
    """Every sealed period, oldest first, streamed: for verifiers that walk them all."""
    return AccessPeriod.objects.order_by("number").iterator(chunk_size=1000)


def access_period_get(*, number: int) -> AccessPeriod | None:
    """The sealed period `number`, or None (also for a number no bigint can hold)."""
    if not 0 < number < 2**63:
        return None
    return AccessPeriod.objects.filter(number=number).first()


def access_periods_page(*, before: int | None, limit: int) -> tuple[list[AccessPeriod], int | None]:
    """Sealed periods, newest first, keyset-paginated on the number: the page and the
    `before` of the next page (None at the first period)."""
    queryset = AccessPeriod.objects.order_by("-number")
    if before is not None and before < 2**63:
        queryset = queryset.filter(number__lt=before)
    periods = list(queryset[: limit + 1])
    more = len(periods) > limit
    periods = periods[:limit]
    return periods, periods[-1].number if more else None
