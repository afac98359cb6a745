"""Reads of shared data. Visibility is decided here and nowhere else: views, admin,
commands and tasks all go through these functions."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from audit.selectors import log_page_for_lists, log_size
from consortium.errors import (
    ListNotWritable,
    UnknownEntry,
    UnknownList,
    UnknownRevocation,
    UnknownSubmission,
)
from consortium_client.feedback import feedback_status
from consortium_client.hashvalues import ALGORITHMS, SINGLE_ALGORITHMS
from hashes.models import (
    Entry,
    EntryVariant,
    Feedback,
    HashList,
    QuarantineResolution,
    Revocation,
    Submission,
)
from partners.models import Partner, SigningKey

# A feed page examines at most this many log indexes per requested event, so a partner
# who may see little of a large log still gets bounded queries (and a cursor that moves).
FEED_SCAN_FACTOR = 20


def lists_visible(*, partner: Partner) -> QuerySet[HashList]:
    """Lists `partner` may see: shared with all, owned by it, or shared with a group it is
    in. Suspended or pending partners see nothing."""
    if not partner.is_active:
        return HashList.objects.none()
    return HashList.objects.filter(
        Q(visibility=HashList.Visibility.ALL)
        | Q(owner=partner)
        | Q(visibility=HashList.Visibility.GROUP, group__members=partner)
    ).distinct()


def list_may_submit(*, partner: Partner, hash_list: HashList) -> bool:
    return (
        hash_list.contributors == HashList.Contributors.MEMBERS or hash_list.owner_id == partner.pk
    )


def list_for_submission(*, partner: Partner, name: str) -> HashList:
    """The list called `name` if `partner` may submit to it. A list it cannot see is
    reported exactly like a list that does not exist."""
    hash_list = lists_visible(partner=partner).filter(name=name).first()
    if hash_list is None:
        raise UnknownList(f"no list {name!r} is visible to this partner", pointer="/list")
    if not list_may_submit(partner=partner, hash_list=hash_list):
        raise ListNotWritable(f"only the owner of {name!r} may submit to it", pointer="/list")
    return hash_list


def lists_visible_ids(*, partner: Partner) -> list[int]:
    return list(lists_visible(partner=partner).values_list("pk", flat=True))


def entries_visible(*, partner: Partner, list_ids: list[int] | None = None) -> QuerySet[Entry]:
    """Entries on lists `partner` sees; `list_ids` is `lists_visible_ids(partner=partner)`
    when the caller has already read it. The ids are read first (there are few): as a
    subquery they hide their count from the planner, which then walks a whole list's
    entries instead of looking ids up by primary key."""
    if list_ids is None:
        list_ids = lists_visible_ids(partner=partner)
    return Entry.objects.filter(hash_list_id__in=list_ids)


def entries_revocable(*, partner: Partner) -> QuerySet[Entry]:
    """Entries `partner` may name in a revocation: those it sees, and always its own, even on
    a list it no longer sees (a withdrawn consent must still reach everybody)."""
    return Entry.objects.filter(
        Q(hash_list_id__in=lists_visible_ids(partner=partner)) | Q(partner=partner)
    )


def entries_with_provenance(entries: QuerySet[Entry]) -> QuerySet[Entry]:
    """`entries` with what provenance shows, loaded in the same query. The envelopes stay
    behind: one is megabytes for a large batch, and every entry of the batch shares it."""
    return entries.select_related("hash_list", "partner", "submission__signing_key").defer(
        "submission__envelope"
    )


class EntryShown(NamedTuple):
    """What a view shows of an entry (serializers.entry_provenance), as plain values. A match
    also checks each against its log leaf (list, algorithm, value). A tuple: a match of 100
    hashes shows hundreds, and building five models of each row from the join cost more
    than the query itself."""

    id: int
    hash_list_id: int
    list_name: str
    algorithm: str
    commitment: str
    value: str | None
    salt: str | None
    status: str
    labels: list[str]
    quality: int | None
    created_at: datetime
    partner_name: str
    submission_id: int
    envelope_sha256: str
    signing_key: str  # the key id of the key that signed the submission
    review: str | None
    grade: str
    quarantined_log_index: int | None
    agree_count: int
    disagree_count: int
    false_positive_count: int

    @property
    def quarantined(self) -> bool:
        return self.quarantined_log_index is not None

    @property
    def feedback_status(self) -> str | None:
        return feedback_status(
            agree=self.agree_count,
            negative=self.disagree_count + self.false_positive_count,
            review=self.review,
        )

    @classmethod
    def of(cls, entry: Entry) -> EntryShown:
        """The same, from an entry loaded with entries_with_provenance."""
        return cls(
            entry.pk,
            entry.hash_list_id,
            entry.hash_list.name,
            entry.algorithm,
            entry.commitment,
            entry.value,
            entry.salt,
            entry.status,
            entry.labels,
            entry.quality,
            entry.created_at,
            entry.partner.name,
            entry.submission_id,
            entry.submission.envelope_sha256,
            entry.submission.signing_key.key_id,
            entry.review,
            entry.grade,
            entry.quarantined_log_index,
            entry.agree_count,
            entry.disagree_count,
            entry.false_positive_count,
        )


# EntryShown's columns, in its order, through the joins. Raw SQL: as ORM expressions this
# query cost more to compile (about 1.5 ms of CPU per match) than to run, and building a
# row's five models from it more again.
_SHOWN_SQL = """
SELECT e.id, e.hash_list_id, l.name, e.algorithm, e.commitment, e.value, e.salt, e.status,
    e.labels, e.quality, e.created_at, p.name, e.submission_id, s.envelope_sha256, k.key_id,
    e.review, e.grade, e.quarantined_log_index, e.agree_count, e.disagree_count,
    e.false_positive_count
FROM {entry} e
JOIN {hash_list} l ON l.id = e.hash_list_id
JOIN {partner} p ON p.id = e.partner_id
JOIN {submission} s ON s.id = e.submission_id
JOIN {signing_key} k ON k.id = s.signing_key_id
WHERE e.status = %s AND e.quarantined_log_index IS NULL
    AND e.hash_list_id IN ({lists}) AND e.id IN ({ids})
ORDER BY e.id
"""


def entries_for_match(*, list_ids: Collection[int], ids: Collection[int]) -> list[EntryShown]:
    """The active, unquarantined entries among `ids` on the lists `list_ids` (those the
    partner may see: `lists_visible`), as a match shows them, by id, in one query. A
    quarantine that committed after the index's refresh is honoured here, like a revocation."""
    if not list_ids or not ids:
        return []
    quote = connection.ops.quote_name
    query = _SHOWN_SQL.format(
        entry=quote(Entry._meta.db_table),
        hash_list=quote(HashList._meta.db_table),
        partner=quote(Partner._meta.db_table),
        submission=quote(Submission._meta.db_table),
        signing_key=quote(SigningKey._meta.db_table),
        lists=", ".join(["%s"] * len(list_ids)),
        ids=", ".join(["%s"] * len(ids)),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [Entry.Status.ACTIVE, *list_ids, *ids])
        rows = cursor.fetchall()
    return [
        EntryShown(
            id=row[0],
            hash_list_id=row[1],
            list_name=row[2],
            algorithm=row[3],
            commitment=row[4],
            value=row[5],
            salt=row[6],
            status=row[7],
            labels=_json_list(row[8]),
            quality=row[9],
            created_at=_aware(row[10]),
            partner_name=row[11],
            submission_id=row[12],
            envelope_sha256=row[13],
            signing_key=row[14],
            review=row[15],
            grade=row[16],
            quarantined_log_index=row[17],
            agree_count=row[18],
            disagree_count=row[19],
            false_positive_count=row[20],
        )
        for row in rows
    ]


def _json_list(raw: Any) -> list[str]:
    # Django reads JSON columns as text on both databases and decodes them itself.
    return raw if isinstance(raw, list) else json.loads(raw)


def _aware(value: datetime | str) -> datetime:
    # PostgreSQL gives an aware datetime; SQLite the UTC text Django stored.
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def entry_get(*, partner: Partner, entry_id: int) -> Entry:
    entry = (
        entries_with_provenance(entries_visible(partner=partner))
        .select_related("revocation__partner", "revocation__administrator")
        .defer("revocation__envelope")
        .filter(pk=entry_id)
        .first()
    )
    if entry is None:
        raise UnknownEntry(f"no entry {entry_id} is visible to this partner")
    return entry


def entry_verdicts(*, entry: Entry) -> QuerySet[Feedback]:
    """The current verdict of each partner on `entry` (one the caller may see), by log index."""
    return (
        Feedback.objects.filter(entry=entry, current=True)
        .select_related("partner")
        .defer("envelope")
        .order_by("log_index")
    )


def submission_get(*, partner: Partner, submission_id: int) -> Submission:
    visible = lists_visible_ids(partner=partner)
    submission = Submission.objects.filter(pk=submission_id, hash_list_id__in=visible).first()
    if submission is None:
        raise UnknownSubmission(f"no submission {submission_id} is visible to this partner")
    return submission


def revocation_signed_get(*, partner: Partner, revocation_id: int) -> Revocation:
    """A partner's signed revocation that ended an entry `partner` may see, or its own.

    Its tombstones are in `partner`'s feed, so it may check the signature behind them. An
    administrator's revocation has no envelope and is reported like one that does not exist:
    its tombstone names the administrator instead of a key.
    """
    revocation = (
        Revocation.objects.filter(pk=revocation_id, envelope__isnull=False)
        .filter(
            Q(partner=partner) | Q(entries__hash_list_id__in=lists_visible_ids(partner=partner))
        )
        .first()
    )
    if revocation is None:
        raise UnknownRevocation(f"no signed revocation {revocation_id} is visible to this partner")
    return revocation


@dataclass(frozen=True)
class FeedPage:
    leaves: list[bytes]
    # The JSON array of the page's openings, one item per entry_added event of the page, in
    # page order: {"index", "value", "salt"} that open its leaf's commitment, or
    # {"index", "erased": true}. Built by the database (`_OPENING`), spliced into the answer.
    values: bytes
    next_cursor: int
    has_more: bool


# One item of a feed page's `values` as JSON text, made by the query: a page of 10,000 adds
# then costs no Python object per entry, no dict and no encoding (the dicts and json.dumps
# were most of what the openings added to a page). The same bytes as json.dumps(...,
# separators=(",", ":")) of {"index", "value", "salt"} (with "variants": [{"value", "salt"}]
# after them for an entry that has variants) or {"index", "erased": true}; the database
# quotes the strings. An entry without variants costs one probe of the variants' unique
# index and gets exactly the item it had before variants existed. Raw SQL: the same query
# as ORM expressions cost about a millisecond per request to compile, more than running it
# for a small page.
_FEED_ITEM = """CASE WHEN e.status = %(erased)s OR e.value IS NULL OR e.salt IS NULL
    THEN '{{"index":' || e.id || ',"erased":true}}'
    ELSE '{{"index":' || e.id || ',"value":' || {value} || ',"salt":' || {salt}
        || COALESCE((SELECT ',"variants":[' || {variants} || ']'
            FROM {variant_rows}), '')
        || '}}' END"""
_FEED_VALUES_SQL = """
SELECT e.id, {item}
FROM {table} e WHERE e.id >= %(first)s AND e.id <= %(last)s AND e.hash_list_id IN ({lists})
ORDER BY e.id
"""
# The same, stopping at the byte cap: a running total of the values' lengths (`upto`), and
# the length before the previous row's, so that the first row past the cap comes too, as
# NULL: the cut. The first row with a value always comes (nothing before it counted).
_FEED_VALUES_CAPPED_SQL = """
SELECT e.id, CASE WHEN e.upto - e.own > 0 AND e.upto > %(cap)s THEN NULL ELSE {item} END
FROM (
    SELECT e.id, e.status, e.value, e.salt, COALESCE({length}, 0) AS own,
        SUM(COALESCE({length}, 0)) OVER w AS upto,
        LAG(COALESCE({length}, 0), 1, 0) OVER w AS previous
    FROM {table} e
    WHERE e.id >= %(first)s AND e.id <= %(last)s AND e.hash_list_id IN ({lists})
    WINDOW w AS (ORDER BY e.id ROWS UNBOUNDED PRECEDING)
) e
WHERE e.upto - e.own <= %(cap)s OR e.upto - e.own - e.previous = 0
ORDER BY e.id
"""
# Only a video's value is long. A page with no video among its adds, whose values cannot
# reach the cap at the longest other value, skips the running total (a fifth of the query's
# time for 10,000 rows). Leaves are the server's own compact JSON, so a video's add always
# holds these bytes; anything else that holds them only costs the capped query.
_VIDEO_LEAF = b'"algorithm":"vpdq"'
_LONGEST_SINGLE_VALUE = max(ALGORITHMS[name].bits // 4 for name in SINGLE_ALGORITHMS)


def _json_string(column: str) -> str:
    if connection.vendor == "sqlite":
        return f"json_quote({column})"
    return f"to_json({column})::text"


def _octet_length(column: str) -> str:
    # PostgreSQL reads a long value's length from its header, without fetching the value.
    if connection.vendor == "sqlite":
        return f"length(CAST({column} AS BLOB))"
    return f"octet_length({column})"


def _variant_openings() -> str:
    """The aggregate of a variant subquery: its openings as JSON objects, by position, joined
    by commas; NULL (so no `variants` key) for an entry without variants."""
    item = (
        f"""'{{"value":' || {_json_string("v.value")} || ',"salt":' || """
        f"""{_json_string("v.salt")} || '}}'"""
    )
    if connection.vendor == "sqlite":
        return f"group_concat({item}, ',')"
    return f"string_agg({item}, ',' ORDER BY v.position)"


def _variant_rows() -> str:
    """The variant rows of entry `e`, for `_variant_openings`, in position order."""
    table = connection.ops.quote_name(EntryVariant._meta.db_table)
    if connection.vendor == "sqlite":
        # SQLite before 3.44 (Debian 12 has 3.40) has no ORDER BY in an aggregate; it
        # concatenates in the order rows come, so they come from an ordered subquery.
        return f"(SELECT * FROM {table} WHERE entry_id = e.id ORDER BY position) v"  # noqa: S608
    return f"{table} v WHERE v.entry_id = e.id"


@dataclass(frozen=True)
class FeedValues:
    items: bytes  # the JSON array
    # The first entry left out for the byte cap: the page ends before its event.
    cut: int | None


def feed_values(
    *, first: int, last: int, list_ids: list[int], max_bytes: int | None = None
) -> FeedValues:
    """The openings of the entries added in a feed page whose events span indexes `first`
    to `last` (every event in that range on the lists `list_ids`), as a JSON array in log
    order. An entry's id is the index of its entry_added event, so the entries of those
    lists in that id range are exactly the page's adds: one primary-key range scan (an IN
    list of 10,000 ids costs several times more), no leaf parsing.

    With `max_bytes`, the values stop once they would pass it (a video's value is up to
    241 KB, so a page of 10,000 could be gigabytes); the first entry always comes, so a page
    always moves on. The database measures each value from its stored length (no value is
    read to be measured) and builds items only for the entries kept; `cut` names the first
    left out."""
    if not list_ids:
        return FeedValues(b"[]", None)
    item = _FEED_ITEM.format(
        variant_rows=_variant_rows(),
        value=_json_string("e.value"),
        salt=_json_string("e.salt"),
        variants=_variant_openings(),
    )
    query = (_FEED_VALUES_SQL if max_bytes is None else _FEED_VALUES_CAPPED_SQL).format(
        item=item,
        table=connection.ops.quote_name(Entry._meta.db_table),
        length=_octet_length("e.value"),
        lists=", ".join(f"%(list{i})s" for i in range(len(list_ids))),
    )
    params: dict[str, int | str] = {"erased": Entry.Status.ERASED, "first": first, "last": last}
    if max_bytes is not None:
        params["cap"] = max_bytes
    params.update({f"list{i}": list_id for i, list_id in enumerate(list_ids)})
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    cut = rows[-1][0] if rows and rows[-1][1] is None else None
    items = [item for _, item in rows if item is not None]
    return FeedValues(b"[%b]" % ",".join(items).encode(), cut)


def values_may_pass(leaves: Iterable[bytes], *, count: int, max_bytes: int) -> bool:
    """Whether the adds among `count` events with these leaves could hold more than
    `max_bytes` of values: only if one is a video's, or at the longest other value."""
    # One search of the leaves joined: 1.5 ms for 10,000, a quarter of searching each.
    return count * _LONGEST_SINGLE_VALUE > max_bytes or _VIDEO_LEAF in b"\n".join(leaves)


def feed_page(*, partner: Partner, after: int, limit: int) -> FeedPage:
    """Events after index `after` that `partner` may see, in log order.

    Events that concern no list (signing keys, partner status) are visible to every
    partner. Reads the log size first: every index below it is committed (see log_append),
    so the page can never skip an event that commits later.
    """
    size = log_size()
    end = min(size, after + 1 + limit * FEED_SCAN_FACTOR)
    list_ids = lists_visible_ids(partner=partner)
    rows = log_page_for_lists(after=after, end=end, list_ids=list_ids, limit=limit)
    if not rows:
        next_cursor = max(end - 1, after)
        return FeedPage([], b"[]", next_cursor, has_more=next_cursor < size - 1)
    cap = settings.FEED_PAGE_MAX_BYTES
    leaves = (leaf for _, leaf in rows)
    values = feed_values(
        first=rows[0][0],
        last=rows[-1][0],
        list_ids=list_ids,
        max_bytes=cap if values_may_pass(leaves, count=len(rows), max_bytes=cap) else None,
    )
    if values.cut is not None:
        # Every event before the cut entry's add stays on the page, whatever its type; the
        # next page starts with that add.
        rows = [row for row in rows if row[0] < values.cut]
        next_cursor = values.cut - 1
    else:
        next_cursor = rows[-1][0] if len(rows) == limit else max(end - 1, after)
    return FeedPage(
        leaves=[leaf for _, leaf in rows],
        values=values.items,
        next_cursor=next_cursor,
        has_more=next_cursor < size - 1,
    )


# Streams for audit.log_verify: every row of the tables the log commits to, in the order the
# log names them, so that the verifier merge-joins them with the leaves in bounded memory.
# Not for partners: these read every row, whatever its visibility.


def entries_revoked_in_log_order(*, chunk: int) -> Iterator[tuple[Any, ...]]:
    """(revoked_log_index, entry id, revocation id) of every entry with a tombstone, in log
    order of the tombstones (the database sorts them: no index needed by anything else)."""
    return (
        Entry.objects.filter(revoked_log_index__isnull=False)
        .order_by("revoked_log_index", "id")
        .values_list("revoked_log_index", "id", "revocation_id")
        .iterator(chunk)
    )


def entries_erased_in_log_order(*, chunk: int) -> Iterator[tuple[Any, ...]]:
    """(erased_log_index, entry id, erasure reason) of every erased entry, in log order."""
    return (
        Entry.objects.filter(erased_log_index__isnull=False)
        .order_by("erased_log_index", "id")
        .values_list("erased_log_index", "id", "erasure_reason")
        .iterator(chunk)
    )


def feedback_in_log_order(*, chunk: int) -> Iterator[dict[str, Any]]:
    """Every verdict with its envelope and signing key, in log order of its entry_feedback
    event (the unique index on log_index serves the order)."""
    rows = (
        Feedback.objects.order_by("log_index")
        .values(
            "id",
            "log_index",
            "entry_id",
            "partner_id",
            "verdict",
            "reason",
            "grade",
            "envelope",
            "envelope_sha256",
            "signing_key__key_id",
            "signing_key__public_key",
            "signing_key__partner_id",
        )
        .iterator(chunk)
    )
    return (dict(row) for row in rows)


def entries_confirmed_in_log_order(*, chunk: int) -> Iterator[tuple[Any, ...]]:
    """(confirmed_log_index, entry id, grade) of every entry its list's review confirmed."""
    return (
        Entry.objects.filter(confirmed_log_index__isnull=False)
        .order_by("confirmed_log_index")
        .values_list("confirmed_log_index", "id", "grade")
        .iterator(chunk)
    )


def quarantine_resolutions_in_log_order(*, chunk: int) -> Iterator[tuple[Any, ...]]:
    """(log_index, entry id, outcome, resolved_by, reason) of every resolved quarantine."""
    return (
        QuarantineResolution.objects.order_by("log_index")
        .values_list("log_index", "entry_id", "outcome", "resolved_by", "reason")
        .iterator(chunk)
    )


def entry_lists_and_partners(*, ids: Collection[int]) -> dict[int, tuple[int, int]]:
    """Entry id -> (list id, partner id), for the entries `ids` (a bounded batch)."""
    rows = Entry.objects.filter(id__in=list(ids)).values_list("id", "hash_list_id", "partner_id")
    return {entry_id: (list_id, partner_id) for entry_id, list_id, partner_id in rows}


def submissions_by_id(*, ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The submissions `ids` (a bounded batch) with their envelopes and signing keys."""
    rows = Submission.objects.filter(id__in=list(ids)).values(
        "id",
        "partner_id",
        "hash_list_id",
        "envelope",
        "envelope_sha256",
        "payload_version",
        "entry_count",
        "redacted_at",
        "signing_key__key_id",
        "signing_key__public_key",
        "signing_key__partner_id",
    )
    return {row["id"]: dict(row) for row in rows}


def revocations_by_id(*, ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The revocations `ids` (a bounded batch) with their envelopes, keys and authors."""
    username = f"administrator__{get_user_model().USERNAME_FIELD}"
    rows = Revocation.objects.filter(id__in=list(ids)).values(
        "id",
        "partner_id",
        "envelope",
        "envelope_sha256",
        "reason",
        "signing_key__key_id",
        "signing_key__public_key",
        "signing_key__partner_id",
        username,
    )
    return {row["id"]: row | {"administrator": row.pop(username)} for row in rows}


def submission_without_entries_first() -> int | None:
    """The smallest id of a submission that no entry names (so no leaf names it either)."""
    named = Entry.objects.filter(submission_id=OuterRef("pk"))
    found = Submission.objects.filter(~Exists(named)).order_by("id").values_list("id", flat=True)
    return found.first()


def revocation_without_entries_first() -> int | None:
    """The smallest id of a revocation that no entry names (so no leaf names it either)."""
    named = Entry.objects.filter(revocation_id=OuterRef("pk"))
    found = Revocation.objects.filter(~Exists(named)).order_by("id").values_list("id", flat=True)
    return found.first()


def list_names() -> dict[int, str]:
    """Every list's id -> name (lists are few: a consortium has tens to thousands)."""
    return dict(HashList.objects.values_list("id", "name"))


_json_decode = msgspec.json.Decoder().decode


class EntryVerifyRow(NamedTuple):
    """One entry as log_verify compares it with its leaf (labels decoded, sorted as stored)."""

    id: int
    hash_list_id: int
    algorithm: str
    value: str | None
    salt: str | None
    commitment: str
    labels: Any
    note: str
    quality: int | None
    partner_id: int
    submission_id: int | None
    status: str
    revocation_id: int | None
    revoked_log_index: int | None
    erased_log_index: int | None


_ENTRY_ROWS_COLUMNS = ", ".join(EntryVerifyRow._fields)
_ENTRY_ROWS_FIRST_SQL = f"SELECT {_ENTRY_ROWS_COLUMNS} FROM hashes_entry ORDER BY id LIMIT %s"  # noqa: S608
_ENTRY_ROWS_AFTER_SQL = (
    f"SELECT {_ENTRY_ROWS_COLUMNS} FROM hashes_entry WHERE id > %s ORDER BY id LIMIT %s"  # noqa: S608
)


def entries_in_id_order_rows(*, chunk: int) -> Iterator[EntryVerifyRow]:
    """Every entry, by id (= the log index of its entry_added event), streamed as tuples.

    The ORM costs more per row than the verifier's whole check of it, so this reads keyset
    pages of `chunk` rows with plain SQL: memory is one page, and each page is an index range
    scan of the primary key. Inside the caller's REPEATABLE READ transaction every page reads
    the same snapshot, so no row is skipped or seen twice.
    """
    with connection.cursor() as cursor:
        cursor.execute(_ENTRY_ROWS_FIRST_SQL, [chunk])
        while rows := cursor.fetchall():
            for row in rows:
                # jsonb arrives as text from a raw cursor; msgspec reads it as JSONField would.
                yield EntryVerifyRow._make((*row[:6], _json_decode(row[6]), *row[7:]))
            cursor.execute(_ENTRY_ROWS_AFTER_SQL, [rows[-1][0], chunk])


_VARIANT_ROWS_SQL = (
    "SELECT entry_id, position, name, value, salt, commitment FROM hashes_entryvariant "
    "WHERE (entry_id, position) > (%s, %s) ORDER BY entry_id, position LIMIT %s"
)


def entry_variants_in_order_rows(*, chunk: int) -> Iterator[tuple[Any, ...]]:
    """Every entry variant as (entry id, position, name, value, salt, commitment), by entry
    and position (the order of its entry's leaf), streamed in keyset pages of `chunk` rows
    (the unique constraint's index serves each page), like `entries_in_id_order_rows`."""
    after: tuple[int, int] = (-1, -1)
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_VARIANT_ROWS_SQL, [*after, chunk])
            rows = cursor.fetchall()
            if not rows:
                return
            yield from rows
            after = (rows[-1][0], rows[-1][1])


# A partner's own shared data, for the auditors' pages (audit.web), which decide who may
# see it: an auditor of every partner, or the partner's own auditor.


def lists_owned(*, partner: Partner) -> QuerySet[HashList]:
    """The lists `partner` owns, by name."""
    return HashList.objects.filter(owner=partner).select_related("group").order_by("name")


def submissions_latest(*, partner: Partner, limit: int) -> list[Submission]:
    """The `limit` latest submissions of `partner`, newest first (without their envelopes)."""
    return list(
        Submission.objects.filter(partner=partner)
        .select_related("hash_list", "signing_key", "api_key")
        .defer("envelope")
        .order_by("-id")[:limit]
    )


def revocations_latest(*, partner: Partner, limit: int) -> list[Revocation]:
    """The `limit` latest revocations `partner` signed, newest first (without envelopes)."""
    return list(
        Revocation.objects.filter(partner=partner)
        .select_related("signing_key")
        .defer("envelope")
        .order_by("-id")[:limit]
    )


def feedback_given_latest(*, partner: Partner, limit: int) -> list[Feedback]:
    """The `limit` latest verdicts `partner` signed, current or since changed, newest first
    (without envelopes or notes: a note is its author's and the submitter's to read)."""
    return list(
        Feedback.objects.filter(partner=partner)
        .select_related("entry__hash_list", "signing_key")
        .only(*_FEEDBACK_SHOWN)
        .order_by("-id")[:limit]
    )


def feedback_received_latest(*, partner: Partner, limit: int) -> list[Feedback]:
    """The `limit` latest verdicts other partners signed on `partner`'s entries, newest first
    (without envelopes or notes)."""
    return list(
        Feedback.objects.filter(entry__partner=partner)
        .select_related("entry__hash_list", "partner", "signing_key")
        .only(*_FEEDBACK_SHOWN, "partner__name")
        .order_by("-id")[:limit]
    )


_FEEDBACK_SHOWN = (
    "entry_id",
    "entry__hash_list__name",
    "partner_id",
    "signing_key__key_id",
    "verdict",
    "reason",
    "grade",
    "current",
    "log_index",
    "created_at",
)
