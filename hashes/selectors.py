"""Reads of shared data. Visibility is decided here and nowhere else: views, admin,
commands and tasks all go through these functions."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from audit.models import LogEvent, LogHead
from consortium.errors import ListNotWritable, UnknownEntry, UnknownList
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


def entries_visible(*, partner: Partner) -> QuerySet[Entry]:
    return Entry.objects.filter(hash_list__in=lists_visible(partner=partner))


def entry_get(*, partner: Partner, entry_id: int) -> Entry:
    entry = (
        entries_visible(partner=partner)
        .select_related(
            "hash_list",
            "partner",
            "submission__signing_key",
            "revocation__partner",
            "revocation__administrator",
        )
        .filter(pk=entry_id)
        .first()
    )
    if entry is None:
        raise UnknownEntry(f"no entry {entry_id} is visible to this partner")
    return entry


def submission_get(*, partner: Partner, submission_id: int) -> Submission:
    visible = lists_visible(partner=partner)
    submission = Submission.objects.filter(pk=submission_id, hash_list__in=visible).first()
    if submission is None:
        raise UnknownEntry(f"no submission {submission_id} is visible to this partner")
    return submission


@dataclass(frozen=True)
class FeedPage:
    leaves: list[bytes]
    next_cursor: int
    has_more: bool


def feed_page(*, partner: Partner, after: int, limit: int) -> FeedPage:
    """Events after index `after` that `partner` may see, in log order.

    Events that concern no list (signing keys, partner status) are visible to every
    partner. Reads the log size first: every index below it is committed (see log_append),
    so the page can never skip an event that commits later.
    """
    size = LogHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
    end = min(size, after + 1 + limit * FEED_SCAN_FACTOR)
    visible_ids = list(lists_visible(partner=partner).values_list("pk", flat=True))
    rows = list(
        LogEvent.objects.filter(index__gt=after, index__lt=end)
        .filter(Q(hash_list_id__isnull=True) | Q(hash_list_id__in=visible_ids))
        .order_by("index")
        .values_list("index", "leaf")[:limit]
    )
    next_cursor = rows[-1][0] if len(rows) == limit else max(end - 1, after)
    return FeedPage(
        leaves=[bytes(leaf) for _, leaf in rows],
        next_cursor=next_cursor,
        has_more=next_cursor < size - 1,
    )
