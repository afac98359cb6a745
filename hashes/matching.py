"""Matching hashes against every active entry a partner may see.

The index holds one index per list, built from the log; a query searches only the lists the
partner may see, each at its own radius, and keeps the nearest `limit` entries per hash. Only
those are then loaded from the database, in one query for the whole batch, for their
provenance and a last status check. Nothing in this path reads or counts an entry of a list
the partner cannot see, so neither the answer nor the work (database queries, index
candidates examined, and so the time) depends on one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from consortium_client.vpdq import VideoShares
from hashes.match_index import IndexHit, MatchIndexes, VideoRule, match_indexes, value_digest
from hashes.models import EntryVariant, HashList
from hashes.selectors import EntryShown, entries_for_match, lists_visible
from partners.models import Partner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HashQuery:
    algorithm: str
    value: str
    quality: int | None = None  # of the query image, when the server hashed it
    # How the server derived the hash from the image: None for the image as sent, a
    # dihedral transformation, "canonical" (its plain borders trimmed), or both as
    # "canonical+<transformation>".
    transform: str | None = None


@dataclass(frozen=True)
class EntryMatch:
    entry: EntryShown
    distance: int
    variant: str | None = None  # the entry's variant that matched; None for its own value
    rule: str = "pdq"
    shares: VideoShares | None = None  # for a video: its frames matched each way
    pending: bool = False  # awaiting review (only found when the match asked for pending)


def match_rule(query: HashQuery, variant: str | None) -> str:
    """Which rule found a match: the algorithm itself for a hash as given (`pdq`, `md5`...),
    `pdq-variant` through a submitted variant of the entry, `pdq-canonical` for the
    query image without its plain borders, `pdq-dihedral` for a rotated or mirrored query."""
    if query.algorithm != "pdq":
        return query.algorithm
    if query.transform is not None and query.transform.startswith("canonical"):
        return "pdq-canonical"
    if query.transform is not None:
        return "pdq-dihedral"
    return "pdq-variant" if variant is not None else "pdq"


@dataclass
class QueryResult:
    query: HashQuery
    matches: list[EntryMatch] = field(default_factory=list)
    truncated: bool = False  # more entries were within reach than `limit`


def match_hashes(
    *,
    partner: Partner,
    queries: list[HashQuery],
    limit: int,
    indexes: MatchIndexes = match_indexes,
    include_pending: bool = False,
) -> list[QueryResult]:
    """The nearest `limit` active entries (by distance, then id) visible to `partner` within
    their list's radius of each query; `truncated` when more were within reach.

    Exact for every radius (the index is exact). What matches is decided by the log: a row
    whose list, algorithm or value differs from its log leaf never matches (and is logged),
    and a row cannot bring back an entry the log revoked, because the index never holds it.
    The row's status is checked again only to honour a revocation that committed after the
    index was refreshed. Entries awaiting their list's review match only if `include_pending`
    (and then say so); quarantined entries never match.
    """
    indexes.refresh()
    hash_lists = list(lists_visible(partner=partner))
    results = [QueryResult(query) for query in queries]
    if not hash_lists:
        return results
    found: dict[int, list[tuple[int, IndexHit]]] = defaultdict(list)  # entry -> (query, hit)
    by_algorithm: dict[str, list[int]] = defaultdict(list)
    for position, query in enumerate(queries):
        by_algorithm[query.algorithm].append(position)
    for algorithm, positions in by_algorithm.items():
        if algorithm == "vpdq":
            videos = indexes.search_videos(
                values=[queries[p].value for p in positions],
                rules={hash_list.pk: video_rule(hash_list) for hash_list in hash_lists},
                limit=limit,
                include_pending=include_pending,
            )
            for position, index_result in zip(positions, videos, strict=True):
                results[position].truncated = index_result.truncated
                for hit in index_result.hits:
                    found[hit.entry_id].append((position, hit))
            continue
        radii = {hash_list.pk: hash_list.match_distance(algorithm) for hash_list in hash_lists}
        searched = indexes.search(
            algorithm=algorithm,
            values=[queries[p].value for p in positions],
            radii=radii,
            limit=limit,
            variant_lists={hash_list.pk for hash_list in hash_lists if hash_list.match_variants},
            include_pending=include_pending,
        )
        for position, index_result in zip(positions, searched, strict=True):
            results[position].truncated = index_result.truncated
            for hit in index_result.hits:
                found[hit.entry_id].append((position, hit))
    if not found:
        return results
    entries = entries_for_match(
        list_ids=[hash_list.pk for hash_list in hash_lists], ids=sorted(found)
    )
    variant_values = _variant_values(
        [entry_id for entry_id, hits in found.items() if any(h.variant for _, h in hits)]
    )
    for entry in entries:
        for position, hit in found[entry.id]:
            if _row_matches_log(entry, hit, variant_values):
                rule = match_rule(results[position].query, hit.variant)
                results[position].matches.append(
                    EntryMatch(
                        entry, hit.distance, hit.variant, rule, hit.shares, pending=hit.pending
                    )
                )
    for result in results:
        result.matches.sort(key=lambda match: (match.distance, match.entry.id))
    return results


def _variant_values(entry_ids: list[int]) -> dict[tuple[int, str], str | None]:
    """(entry id, variant name) -> the variant row's value, for the entries `entry_ids`."""
    if not entry_ids:
        return {}
    rows = EntryVariant.objects.filter(entry_id__in=entry_ids).values_list(
        "entry_id", "name", "value"
    )
    return {(entry_id, name): value for entry_id, name, value in rows}


def _row_matches_log(
    entry: EntryShown, hit: IndexHit, variant_values: dict[tuple[int, str], str | None]
) -> bool:
    """Whether the entry row (and the variant row that matched) still says what its log
    leaf says. A row that does not was changed outside the application; it is left out
    rather than shown with data the log contradicts, and reported, so that an operator
    looks at the table."""
    value = entry.value if hit.variant is None else variant_values.get((entry.id, hit.variant))
    if hit.algorithm == "vpdq" and value is not None:
        value = value_digest(value)  # the index keeps a video's digest, not its frames
    if (entry.hash_list_id, entry.algorithm, value) == (hit.list_id, hit.algorithm, hit.value):
        return True
    # The values stay out of the server's log: they may be erased later, its lines may not.
    logger.error("entry %s differs from its log leaf; left out of a match", entry.id)
    return False


def video_rule(hash_list: HashList) -> VideoRule:
    """The list's vPDQ rule: its frame distance (`match_distances["vpdq"]`, else 31), its
    quality floor and its two shares."""
    return VideoRule(
        hash_list.match_distance("vpdq"),
        hash_list.video_quality_floor,
        hash_list.video_query_share,
        hash_list.video_stored_share,
    )
