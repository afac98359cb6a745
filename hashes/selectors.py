"""Reads of shared data. Visibility is decided here and nowhere else: views, admin,
commands and tasks all go through these functions."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet

from audit.selectors import log_page_for_lists, log_size
from consortium.errors import ListNotWritable, UnknownEntry, UnknownList, UnknownSubmission
from hashes.models import Entry, HashList, Submission
from partners.models import Partner

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


def submission_get(*, partner: Partner, submission_id: int) -> Submission:
    visible = lists_visible_ids(partner=partner)
    submission = Submission.objects.filter(pk=submission_id, hash_list_id__in=visible).first()
    if submission is None:
        raise UnknownSubmission(f"no submission {submission_id} is visible to this partner")
    return submission


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
# separators=(",", ":")) of {"index", "value", "salt"} or {"index", "erased": true}; the
# database quotes the strings. Raw SQL: the same query as ORM expressions cost about a
# millisecond per request to compile, more than running it for a small page.
_FEED_VALUES_SQL = """
SELECT CASE WHEN status = %s OR value IS NULL OR salt IS NULL
    THEN '{{"index":' || id || ',"erased":true}}'
    ELSE '{{"index":' || id || ',"value":' || {value} || ',"salt":' || {salt} || '}}' END
FROM {table} WHERE id >= %s AND id <= %s AND hash_list_id IN ({lists}) ORDER BY id
"""


def _json_string(column: str) -> str:
    if connection.vendor == "sqlite":
        return f"json_quote({column})"
    return f"to_json({column})::text"


def feed_values(*, first: int, last: int, list_ids: list[int]) -> bytes:
    """The openings of the entries added in a feed page whose events span indexes `first`
    to `last` (every event in that range on the lists `list_ids`), as a JSON array in log
    order. An entry's id is the index of its entry_added event, so the entries of those
    lists in that id range are exactly the page's adds: one primary-key range scan (an IN
    list of 10,000 ids costs several times more), no leaf parsing."""
    if not list_ids:
        return b"[]"
    query = _FEED_VALUES_SQL.format(
        table=connection.ops.quote_name(Entry._meta.db_table),
        value=_json_string("value"),
        salt=_json_string("salt"),
        lists=", ".join(["%s"] * len(list_ids)),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [Entry.Status.ERASED, first, last, *list_ids])
        items = [item for (item,) in cursor.fetchall()]
    return b"[%b]" % ",".join(items).encode()


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
    next_cursor = rows[-1][0] if len(rows) == limit else max(end - 1, after)
    return FeedPage(
        leaves=[leaf for _, leaf in rows],
        values=feed_values(first=rows[0][0], last=rows[-1][0], list_ids=list_ids)
        if rows
        else b"[]",
        next_cursor=next_cursor,
        has_more=next_cursor < size - 1,
    )
