"""Reads of the log and of the access log. Other apps read the log through these."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Exists, Func, Max, Min, OuterRef, Q, QuerySet, TextField
from django_filters.fields import IsoDateTimeField

from audit.models import (
    AccessDaily,
    AccessEvent,
    AccessHour,
    AccessPeriod,
    AccessRollup,
    Checkpoint,
    Cosignature,
    LogEvent,
    LogHead,
)
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


# The auditors' pages: daily counts, the access-event browser, exports, log health


@dataclass(frozen=True)
class DailyCount:
    """One partner's access events on one UTC day (partner_id 0: no partner)."""

    day: date
    partner_id: int
    requests: int
    records: int
    refusals: int


_COUNTS_SQL = """
SELECT (SELECT last_id FROM {rollup} WHERE id = 1), {day} partner_id,
       {sum}(requests)::bigint, {sum}(records)::bigint, {sum}(refusals)::bigint
FROM {daily}
WHERE day >= %(first_day)s AND day <= %(last_day)s {partner}
{daily_group}
UNION ALL
SELECT (SELECT last_id FROM {rollup} WHERE id = 1), {tail_day} COALESCE(partner_id, 0),
       count(*), COALESCE(sum(records), 0)::bigint, count(*) FILTER (WHERE status >= 400)
FROM {events}
WHERE id > %(mark)s AND time >= %(since)s AND time < %(until)s {partner}
GROUP BY {tail_group}
"""


def _access_counts(
    *, first_day: date, last_day: date, partner_id: int | None, by_day: bool
) -> dict[tuple[date | None, int], list[int]]:
    """Requests, records and refusals from first_day to last_day inclusive (UTC days), per
    (day, partner) or, without `by_day`, per (None, partner): see access_daily_counts."""
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    until = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC)
    quote = connection.ops.quote_name
    sql = _COUNTS_SQL.format(
        daily=quote(AccessDaily._meta.db_table),
        events=quote(AccessEvent._meta.db_table),
        rollup=quote(AccessRollup._meta.db_table),
        partner="" if partner_id is None else "AND partner_id = %(partner)s",
        day="day," if by_day else "",
        sum="" if by_day else "sum",
        daily_group="" if by_day else "GROUP BY partner_id",
        tail_day="(time AT TIME ZONE 'UTC')::date," if by_day else "",
        tail_group="2, 3" if by_day else "2",
    )
    params: dict[str, Any] = {
        "first_day": first_day,
        "last_day": last_day,
        "since": since,
        "until": until,
        "partner": partner_id,
    }
    while True:
        params["mark"] = mark = access_rollup_mark()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows or (rows[0][0] or 0) == mark:
            break
    # A day of the tail may also have rolled-up counts: added up here rather than by the
    # database (an aggregate over the few tail rows, not over every day of the range).
    merged: dict[tuple[date | None, int], list[int]] = {}
    for row in rows:
        key = (row[1], row[2]) if by_day else (None, row[1])
        values = row[-3:]
        counts = merged.get(key)
        if counts is None:
            merged[key] = list(values)
        else:
            counts[0] += values[0]
            counts[1] += values[1]
            counts[2] += values[2]
    return merged


def access_daily_counts(
    *, first_day: date, last_day: date, partner_id: int | None = None
) -> list[DailyCount]:
    """Requests, records read and refusals per partner per UTC day, first_day to last_day
    inclusive, of one partner or (None) all: exact at the moment of the query.

    The rolled-up days (AccessDaily: every event up to the roll-up's watermark) plus a
    direct count of the tail above the watermark, walked on the primary key from it: what
    arrived since the last roll-up (a minute's worth), whatever the range. The watermark is
    read first and passed as a value, so that the planner sees how small the tail is; the
    counts' statement reads it again in its own snapshot, and if a roll-up committed in
    between (the days then hold events of the tail too) the counts are read again.
    """
    if connection.vendor != "postgresql":
        return _daily_counts_direct(
            since=datetime.combine(first_day, time.min, tzinfo=UTC),
            until=datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC),
            partner_id=partner_id,
        )
    merged = _access_counts(
        first_day=first_day, last_day=last_day, partner_id=partner_id, by_day=True
    )
    return [
        DailyCount(day, partner, *counts)
        for (day, partner), counts in sorted(merged.items())
        if day is not None
    ]


def access_partner_totals(
    *, first_day: date, last_day: date, partner_id: int | None = None
) -> dict[int, tuple[int, int, int]]:
    """Requests, records read and refusals per partner over first_day to last_day
    (inclusive, UTC days), exact as access_daily_counts's, summed by the database."""
    if connection.vendor != "postgresql":
        totals: dict[int, tuple[int, int, int]] = {}
        for count in access_daily_counts(
            first_day=first_day, last_day=last_day, partner_id=partner_id
        ):
            previous = totals.get(count.partner_id, (0, 0, 0))
            totals[count.partner_id] = (
                previous[0] + count.requests,
                previous[1] + count.records,
                previous[2] + count.refusals,
            )
        return totals
    merged = _access_counts(
        first_day=first_day, last_day=last_day, partner_id=partner_id, by_day=False
    )
    return {partner: (c[0], c[1], c[2]) for (_, partner), c in merged.items()}


def _daily_counts_direct(
    *, since: datetime, until: datetime, partner_id: int | None
) -> list[DailyCount]:
    """The quick start's (SQLite's) counts: every event counted, nothing rolled up."""
    from django.db.models import Count, Sum
    from django.db.models.functions import Coalesce, TruncDate

    events = AccessEvent.objects.filter(time__gte=since, time__lt=until)
    if partner_id is not None:
        events = events.filter(partner_id=partner_id)
    rows = (
        events.annotate(day=TruncDate("time", tzinfo=UTC), who=Coalesce("partner_id", 0))
        .values("day", "who")
        .annotate(
            requests=Count("id"),
            records_read=Coalesce(Sum("records"), 0),
            refused=Count("id", filter=Q(status__gte=400)),
        )
        .order_by("day", "who")
    )
    return [
        DailyCount(row["day"], row["who"], row["requests"], row["records_read"], row["refused"])
        for row in rows
    ]


STATUS_MIN, STATUS_MAX = 100, 599


class AccessEventBrowseFilter(django_filters.FilterSet):
    """The access-event browser's filters, as its shareable URLs carry them. Each is an
    equality served by an (x, -id) index, or a time range (see access_events_browse)."""

    partner = django_filters.CharFilter(method="filter_partner", max_length=64)
    key = django_filters.CharFilter(field_name="key_prefix", max_length=16)
    action = django_filters.CharFilter(max_length=48)
    status = django_filters.NumberFilter(min_value=STATUS_MIN, max_value=STATUS_MAX)
    target = django_filters.CharFilter(max_length=255)
    since = UtcDateTimeFilter(field_name="time", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="time", lookup_expr="lt")
    before = CursorFilter(field_name="id", lookup_expr="lt")

    class Meta:
        model = AccessEvent
        fields = ["partner", "key", "action", "status", "target", "since", "until", "before"]

    def filter_partner(
        self, queryset: QuerySet[AccessEvent], name: str, value: str
    ) -> QuerySet[AccessEvent]:
        # By id, not by a join on the name: the (partner, -id) index then bounds the walk.
        from partners.models import Partner

        partner_id = Partner.objects.filter(name=value).values_list("id", flat=True).first()
        return queryset.filter(partner_id=partner_id) if partner_id else queryset.none()


def access_rollup_mark() -> int:
    """The roll-up's watermark: every access event up to this id is in AccessDaily and
    AccessHour."""
    return AccessRollup.objects.filter(pk=1).values_list("last_id", flat=True).first() or 0


def access_id_bounds(*, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
    """Ids [low, high] holding every rolled-up access event (id <= the watermark `mark`
    read first) with since <= time < until, from AccessHour; None if no rolled-up event
    can be in the range. An event of an hour lies between its first and last id, and an
    hour that starts at or after `until`, or ends before `since`, holds no event in range.
    """
    mark = access_rollup_mark()
    if mark == 0:
        return None
    hours = AccessHour.objects.all()
    if since is not None:
        hours = hours.filter(hour__gt=since - timedelta(hours=1))
    if until is not None:
        hours = hours.filter(hour__lt=until)
    bounds = hours.aggregate(low=Min("first_id"), high=Max("last_id"))
    if bounds["low"] is None:
        return None
    return bounds["low"], min(bounds["high"], mark)


def access_events_slices(
    *, filters: AccessEventBrowseFilter, partner_id: int | None
) -> list[QuerySet[AccessEvent]]:
    """The events the (valid) filters select, of one partner or (None) every partner, as
    querysets ordered newest first, each holding only ids below the previous one's: read
    them in turn for the whole selection, newest first.

    Every equality filter walks its (column, -id) index down from the `before` cursor. A
    time range is also an id range: the events above the roll-up's watermark are few and
    walked first; below the watermark, AccessHour bounds the ids the range can hold, so the
    walk starts and stops within an hour of the range, never scanning the log from its top
    nor sorting a time index's rows. The time filter itself is still applied exactly.
    """
    queryset = filters.qs
    if partner_id is not None:
        queryset = queryset.filter(partner_id=partner_id)
    queryset = queryset.order_by("-id")
    data = filters.form.cleaned_data
    since, until = data.get("since"), data.get("until")
    if since is None and until is None:
        return [queryset]
    mark = access_rollup_mark()
    slices = [queryset.filter(id__gt=mark)]
    bounds = access_id_bounds(since=since, until=until)
    if bounds is not None:
        low, high = bounds
        slices.append(queryset.filter(id__gte=low, id__lte=min(high, mark)))
    return slices


def access_events_browse(
    *, filters: AccessEventBrowseFilter, partner_id: int | None, limit: int
) -> AccessPage:
    """A page of `limit` events, newest first, keyset-paginated on id (`before` = the
    previous page's next cursor); see access_events_slices for how each filter is served."""
    events: list[AccessEvent] = []
    for queryset in access_events_slices(filters=filters, partner_id=partner_id):
        if len(events) > limit:
            break
        events += list(queryset.select_related("partner", "user")[: limit + 1 - len(events)])
    more = len(events) > limit
    events = events[:limit]
    return AccessPage(events, events[-1].pk if more else None)


def access_event_get(*, event_id: int, partner_id: int | None) -> AccessEvent | None:
    """One access event, if it is one partner's (`partner_id`) or (None) anyone's."""
    if not 0 < event_id < 2**63:
        return None
    events = AccessEvent.objects.select_related("partner", "user").filter(pk=event_id)
    if partner_id is not None:
        events = events.filter(partner_id=partner_id)
    return events.first()


def access_export_columns() -> dict[str, str]:
    """An export's columns: name and the field it is read from (the partner and the user
    by name), in order, id first."""
    return {
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


class UtcText(Func):
    """A moment as UTC text with microseconds and Z, made by PostgreSQL."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    output_field = TextField()


class HostText(Func):
    function = "host"
    output_field = TextField()


def _export_expressions() -> dict[str, Any]:
    """The export's columns as PostgreSQL writes them as text: no datetime, address or
    JSON object is made in Python and turned back into text, per row."""
    from django.db.models import F
    from django.db.models.functions import Cast

    fields = access_export_columns()
    return {
        **{name: F(field) for name, field in fields.items()},
        "time": UtcText(F("time")),
        "client_ip": HostText(F("client_ip")),
        "detail": Cast(F("detail"), TextField()),
    }


def access_events_export(
    *,
    filters: AccessEventBrowseFilter,
    partner_id: int | None,
    chunk: int = 5000,
    as_json: bool = False,
) -> Iterator[Any]:
    """Every event the (valid) filters select, newest first, read `chunk` rows at a time
    by the browser's keyset walk: memory stays one chunk whatever the count, and no cursor
    is held open between chunks (a slow reader keeps no snapshot or server state).

    Each event is a tuple of access_export_columns()'s values, or with `as_json` one JSON
    object's text with those keys. On PostgreSQL the database writes the times (UTC, Z),
    addresses and JSON as text, which is most of an export's cost when Python does it.
    """
    from django.db.models import F
    from django.db.models.functions import Cast, JSONObject

    postgres = connection.vendor == "postgresql"
    names = list(access_export_columns())
    if postgres:
        expressions = _export_expressions()
        if as_json:
            # The detail stays a JSON object inside the line, not a string of one.
            line = Cast(JSONObject(**{**expressions, "detail": F("detail")}), TextField())
            shape: Any = lambda qs: qs.values_list("id", line)  # noqa: E731
        else:
            shape = lambda qs: qs.annotate(  # noqa: E731
                **{f"x_{name}": expression for name, expression in expressions.items()}
            ).values_list(*[f"x_{name}" for name in names])
    else:
        fields = list(access_export_columns().values())
        shape = lambda qs: qs.values_list(*fields)  # noqa: E731
    for queryset in access_events_slices(filters=filters, partner_id=partner_id):
        cursor = None
        while True:
            page = queryset if cursor is None else queryset.filter(id__lt=cursor)
            rows = list(shape(page)[:chunk])
            if as_json and postgres:
                yield from (text for _, text in rows)
            elif as_json:
                for row in rows:
                    item = dict(zip(names, row, strict=True))
                    item["time"] = item["time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    yield json.dumps(item, sort_keys=True, separators=(",", ":"))
            else:
                yield from rows
            if len(rows) < chunk:
                break
            cursor = rows[-1][0]


# An export's CSV rows as PostgreSQL's COPY writes them, for the ids of one keyset chunk.
# A cell a spreadsheet would run as a formula (text from callers: targets, user names)
# starts with ' instead, as audit.web.views does for the rows Python writes.
_EXPORT_CSV_SQL = """
COPY (
    SELECT e.id, to_char(e.time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           p.name, e.key_prefix, {user}, {actor}, {action}, {target}, e.records, e.status,
           host(e.client_ip), e.detail::text
    FROM {events} e
    LEFT JOIN {partners} p ON p.id = e.partner_id
    LEFT JOIN {users} u ON u.id = e.user_id
    WHERE e.id = ANY(%s)
    ORDER BY e.id DESC
) TO STDOUT WITH (FORMAT csv)
"""


def _formula_safe(column: str) -> str:
    return f"CASE WHEN {column} ~ '^[-=+@\\t\\r]' THEN '''' || {column} ELSE {column} END"


def access_events_export_csv(
    *, filters: AccessEventBrowseFilter, partner_id: int | None, chunk: int = 5000
) -> Iterator[bytes]:
    """access_events_export's rows as CSV (no header), on PostgreSQL: each keyset chunk's
    ids are read by the browser's walk, then its rows written by COPY, at COPY's rate."""
    from partners.models import Partner

    quote = connection.ops.quote_name
    user_model = get_user_model()
    sql = _EXPORT_CSV_SQL.format(
        events=quote(AccessEvent._meta.db_table),
        partners=quote(Partner._meta.db_table),
        users=quote(user_model._meta.db_table),
        user=_formula_safe(f"u.{quote(user_model.USERNAME_FIELD)}"),
        actor=_formula_safe("e.actor"),
        action=_formula_safe("e.action"),
        target=_formula_safe("e.target"),
    )
    for queryset in access_events_slices(filters=filters, partner_id=partner_id):
        cursor_id = None
        while True:
            page = queryset if cursor_id is None else queryset.filter(id__lt=cursor_id)
            ids = list(page.values_list("id", flat=True)[:chunk])
            if ids:
                with connection.cursor() as cursor, cursor.copy(sql, [ids]) as copy:
                    yield from (bytes(block) for block in copy)
            if len(ids) < chunk:
                break
            cursor_id = ids[-1]


def access_key_last_use(*, prefixes: Collection[str]) -> dict[str, datetime]:
    """When each API key (by prefix) last appears in the access log: one probe of the
    (key_prefix, -id) index per key."""
    found = {}
    for prefix in prefixes:
        moment = (
            AccessEvent.objects.filter(key_prefix=prefix)
            .order_by("-id")
            .values_list("time", flat=True)
            .first()
        )
        if moment is not None:
            found[prefix] = moment
    return found


def log_verify_latest() -> AccessEvent | None:
    """The latest `log_verify` run's outcome, as its access event records it (status 200:
    verified; 409: a divergence, named in its detail)."""
    return AccessEvent.objects.filter(action="log.verify").order_by("-id").first()


@dataclass(frozen=True)
class CosignerState:
    """A cosigner of the log and its latest cosignature (None: none yet)."""

    name: str
    kind: str  # "witness" or "partner"
    last: Cosignature | None


def cosigners_latest(
    *, witnesses: Collection[str], partner_id: int | None = None
) -> list[CosignerState]:
    """The outside witnesses `witnesses` (as LOG_WITNESSES names them) and every partner
    signing key that ever cosigned (of partner `partner_id` only, if given: which partners
    witness the log is no business of another partner's auditor), each with its latest
    cosignature: one probe each of the (witness, -checkpoint) and (signing_key,
    -checkpoint) indexes."""
    from partners.models import SigningKey

    states = []
    for witness in witnesses:
        last = (
            Cosignature.objects.filter(witness=witness)
            .select_related("checkpoint")
            .order_by("-checkpoint")
            .first()
        )
        states.append(CosignerState(witness, "witness", last))
    keys = (
        SigningKey.objects.filter(Exists(Cosignature.objects.filter(signing_key=OuterRef("pk"))))
        .select_related("partner")
        .order_by("partner__name", "key_id")
    )
    if partner_id is not None:
        keys = keys.filter(partner_id=partner_id)
    for key in keys:
        last = (
            Cosignature.objects.filter(signing_key=key)
            .select_related("checkpoint")
            .order_by("-checkpoint")
            .first()
        )
        states.append(CosignerState(f"{key.partner.name} {key.key_id[:16]}", "partner", last))
    return states
