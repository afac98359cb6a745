"""Matching hashes against every active entry a partner may see.

The index answers "which entries are within the radius", for all lists at once; visibility,
status and each list's own radius are then checked against the database, in one query for the
whole batch, through the same selector as every other read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hashes.match_index import MatchIndexes, match_indexes
from hashes.models import Entry, HashList
from hashes.selectors import entries_visible, entries_with_provenance, lists_visible
from partners.models import Partner


@dataclass(frozen=True)
class HashQuery:
    algorithm: str
    value: str
    quality: int | None = None  # of the query image, when the server hashed it
    transform: str | None = None  # which dihedral transformation, when asked for


@dataclass(frozen=True)
class EntryMatch:
    entry: Entry
    distance: int


@dataclass
class QueryResult:
    query: HashQuery
    matches: list[EntryMatch] = field(default_factory=list)


def match_hashes(
    *, partner: Partner, queries: list[HashQuery], indexes: MatchIndexes = match_indexes
) -> list[QueryResult]:
    """Every active entry visible to `partner` within its list's radius of each query.

    Exact for every radius (the index is exact); a revoked entry never matches, even if the
    revocation committed after the index was refreshed, because status is checked again.
    """
    indexes.refresh()
    hash_lists = {hash_list.pk: hash_list for hash_list in lists_visible(partner=partner)}
    results = [QueryResult(query) for query in queries]
    if not hash_lists:
        return results
    candidates: dict[int, list[tuple[int, int]]] = defaultdict(list)  # entry -> (query, dist)
    by_algorithm: dict[str, list[int]] = defaultdict(list)
    for position, query in enumerate(queries):
        by_algorithm[query.algorithm].append(position)
    for algorithm, positions in by_algorithm.items():
        radius = max(hash_list.match_distance(algorithm) for hash_list in hash_lists.values())
        found = indexes.search(algorithm, [queries[p].value for p in positions], radius)
        for position, matches in zip(positions, found, strict=True):
            for entry_id, distance in matches:
                candidates[entry_id].append((position, distance))
    if not candidates:
        return results
    entries = entries_with_provenance(
        entries_visible(partner=partner, list_ids=list(hash_lists)).filter(
            pk__in=list(candidates), status=Entry.Status.ACTIVE
        )
    )
    for entry in entries:
        radius = _radius(hash_lists, entry)
        for position, distance in candidates[entry.pk]:
            if distance <= radius:
                results[position].matches.append(EntryMatch(entry, distance))
    for result in results:
        result.matches.sort(key=lambda match: (match.distance, match.entry.pk))
    return results


def _radius(hash_lists: dict[int, HashList], entry: Entry) -> int:
    return hash_lists[entry.hash_list_id].match_distance(entry.algorithm)
