"""Does a match's time tell whether another partner's hidden list holds the hash?

Partner B owns an owner-only list holding ``--hidden`` md5 values; partner A sees a shared list
of ``--shared`` md5 and PDQ entries. A asks ``POST /api/v1/match`` (in-process WSGI through the
whole stack with ``django.test.Client``, on PostgreSQL) for one md5 at a time: a value only B's
hidden list holds, or a value nobody holds. Requests are interleaved (hidden, absent, in a
shuffled order each round) and timed for two matchers in the same run:

- before: a copy, kept in this file only, of the matcher this issue replaced (one index over
  every list; candidates then checked against visibility in the database, a query made only
  when the index found something);
- after: the server's matcher (one index per list; only lists A may see are searched).

Printed: the median of each kind and their ratio (1.00 means the time tells nothing).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/match_timing.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import bench_start, database_reset, partners_create


class BeforeIndexes:
    """The replaced matcher's index: one per algorithm over every list, loaded from the
    entries table (a faithful copy of what hashes/match_index.py did before this change)."""

    def __init__(self) -> None:
        from consortium_client.hashvalues import ALGORITHMS
        from consortium_client.index import index_for
        from hashes.models import Entry

        self.by_algorithm = {name: index_for(name) for name in ALGORITHMS}
        rows: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
        for entry_id, algorithm, value in Entry.objects.filter(
            status=Entry.Status.ACTIVE
        ).values_list("pk", "algorithm", "value"):
            rows[algorithm][0].append(entry_id)
            rows[algorithm][1].append(value)
        for algorithm, (ids, values) in rows.items():
            self.by_algorithm[algorithm].add(ids, values)


def before_match_hashes(*, partner: Any, queries: list[Any], limit: int, indexes: Any) -> Any:
    """The replaced `match_hashes`, verbatim but for its index (`indexes`, which nothing
    changes while the benchmark runs), `limit`, which it did not have and ignores, and the
    entries it reports, now in the shape the view renders (`EntryShown`). The refresh is the
    server's: the same one log query per match as before."""
    from hashes.match_index import match_indexes
    from hashes.matching import EntryMatch, QueryResult
    from hashes.models import Entry
    from hashes.selectors import (
        EntryShown,
        entries_visible,
        entries_with_provenance,
        lists_visible,
    )

    match_indexes.refresh()
    hash_lists = {hash_list.pk: hash_list for hash_list in lists_visible(partner=partner)}
    results = [QueryResult(query) for query in queries]
    if not hash_lists:
        return results
    candidates: dict[int, list[tuple[int, int]]] = defaultdict(list)
    by_algorithm: dict[str, list[int]] = defaultdict(list)
    for position, query in enumerate(queries):
        by_algorithm[query.algorithm].append(position)
    for algorithm, positions in by_algorithm.items():
        radius = max(hash_list.match_distance(algorithm) for hash_list in hash_lists.values())
        found = indexes.by_algorithm[algorithm].search_batch(
            [queries[p].value for p in positions], radius
        )
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
        radius = hash_lists[entry.hash_list_id].match_distance(entry.algorithm)
        for position, distance in candidates[entry.pk]:
            if distance <= radius:
                results[position].matches.append(EntryMatch(EntryShown.of(entry), distance))
    for result in results:
        result.matches.sort(key=lambda match: (match.distance, match.entry.id))
    return results


def entries_submit(actor: Any, private_key: Any, list_name: str, entries: list[dict]) -> None:
    from consortium_client.payloads import submission_envelope
    from hashes.services import submission_create

    for start in range(0, len(entries), 10_000):
        signed = submission_envelope(list_name, entries[start : start + 10_000], private_key)
        submission_create(actor=actor, body=signed.body())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=1000)
    parser.add_argument("--shared", type=int, default=10_000)
    args = parser.parse_args()
    db = bench_start()

    from django.db import connections
    from django.test import Client

    from audit.actors import Actor
    from consortium_client.keys import key_generate, public_key_pem
    from hashes import image_views
    from hashes.match_index import match_indexes
    from hashes.models import HashList
    from hashes.services.lists import hash_list_create
    from partners import services
    from partners.models import Partner

    setup = partners_create()  # bench-submitter owns the shared list "ncii"; bench-reader
    admin = Actor.command("bench")
    owner = services.partner_onboard(
        name="bench-hidden-owner", display_name="Hidden owner", kind="hotline", actor=admin
    )
    owner_api_key, _ = services.apikey_create(partner=owner, scopes=["submit"], actor=admin)
    owner_private = key_generate()
    services.signing_key_register(
        partner=owner, public_key=public_key_pem(owner_private.public_key()), actor=admin
    )
    hash_list_create(name="hidden", owner=owner, visibility=HashList.Visibility.OWNER, actor=admin)
    hidden = [secrets.token_hex(16) for _ in range(args.hidden)]
    entries_submit(
        Actor.for_api_key(owner_api_key, client_ip="127.0.0.1"),
        owner_private,
        "hidden",
        [{"algorithm": "md5", "value": value} for value in hidden],
    )
    shared = [{"algorithm": "md5", "value": secrets.token_hex(16)} for _ in range(args.shared)]
    shared += [{"algorithm": "pdq", "value": secrets.token_hex(32)} for _ in range(args.shared)]
    entries_submit(
        Actor.for_api_key(setup.api_key, client_ip="127.0.0.1"), setup.private_key, "ncii", shared
    )
    match_indexes.refresh()
    before_indexes = BeforeIndexes()
    after_match = image_views.match_hashes

    def before_match(**kwargs: Any) -> Any:
        return before_match_hashes(**kwargs, indexes=before_indexes)

    reader = Partner.objects.get(name="bench-reader")
    _, match_key = services.apikey_create(partner=reader, scopes=["match"], actor=admin)
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {match_key}"}

    def timed(value: str) -> float:
        body = json.dumps({"hashes": [{"algorithm": "md5", "value": value}]})
        began = time.perf_counter()
        response = client.post("/api/v1/match", body, content_type="application/json", **headers)
        elapsed = time.perf_counter() - began
        assert response.status_code == 200, response.content
        assert json.loads(response.content)["results"][0]["matches"] == []
        return elapsed

    rng = random.Random(1)
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for round_number in range(args.rounds + 10):  # the first 10 rounds warm up, untimed
        plan = [(matcher, kind) for matcher in ("before", "after") for kind in ("hidden", "absent")]
        rng.shuffle(plan)
        for matcher, kind in plan:
            image_views.match_hashes = before_match if matcher == "before" else after_match
            value = rng.choice(hidden) if kind == "hidden" else secrets.token_hex(16)
            elapsed = timed(value)
            if round_number >= 10:
                times[(matcher, kind)].append(elapsed)
    image_views.match_hashes = after_match

    print(
        f"md5 match by a partner who cannot see the hidden list: {args.rounds} interleaved "
        f"rounds; hidden list {args.hidden:,} md5, visible list {args.shared:,} md5 + "
        f"{args.shared:,} PDQ"
    )
    print(f"{'matcher':8} {'hidden ms':>10} {'absent ms':>10} {'hidden/absent':>14}")
    for matcher in ("before", "after"):
        held = statistics.median(times[(matcher, "hidden")]) * 1e3
        absent = statistics.median(times[(matcher, "absent")]) * 1e3
        print(f"{matcher:8} {held:10.2f} {absent:10.2f} {held / absent:14.3f}")
    connections.close_all()
    database_reset(db, create=False)


if __name__ == "__main__":
    main()
