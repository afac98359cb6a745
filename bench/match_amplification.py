"""How large can one partner make everybody's match answers? Before and after the cap.

One partner plants ``--planted`` near-identical PDQ entries (all within 31 bits of one value) in
a list every partner sees. Another partner then asks ``POST /api/v1/match`` (in-process WSGI with
``django.test.Client``, on PostgreSQL) about ``--hashes`` PDQ hashes near that value, with two
matchers in the same run: the one this issue replaced (every match within the radius; a copy
kept in ``match_timing.py``), and the server's (the nearest ``MATCH_DEFAULT_LIMIT`` per hash,
``truncated`` when cut). Printed: time, response bytes and matches of each.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/match_amplification.py
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import LIST_NAME, bench_start, database_reset, partners_create
from match_timing import BeforeIndexes, before_match_hashes, entries_submit


def near(value: int, rng: random.Random, most: int) -> str:
    bits = rng.sample(range(256), rng.randint(1, most))
    return f"{value ^ sum(1 << bit for bit in bits):064x}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--planted", type=int, default=10_000)
    parser.add_argument("--hashes", type=int, default=50)
    args = parser.parse_args()
    db = bench_start()

    from django.conf import settings
    from django.db import connections
    from django.test import Client

    from audit.actors import Actor
    from hashes import image_views
    from partners import services
    from partners.models import Partner

    setup = partners_create()
    rng = random.Random(1)
    base = rng.getrandbits(256)
    planted: set[str] = set()
    while len(planted) < args.planted:
        planted.add(near(base, rng, 15))
    entries_submit(
        Actor.for_api_key(setup.api_key, client_ip="127.0.0.1"),
        setup.private_key,
        LIST_NAME,
        [{"algorithm": "pdq", "value": value} for value in sorted(planted)],
    )
    reader = Partner.objects.get(name="bench-reader")
    _, key = services.apikey_create(partner=reader, scopes=["match"], actor=Actor.command("b"))
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    queries = [near(base, rng, 15) for _ in range(args.hashes)]
    body = json.dumps({"hashes": [{"algorithm": "pdq", "value": value} for value in queries]})
    before_indexes = BeforeIndexes()
    after_match = image_views.match_hashes

    def before_match(**kwargs: Any) -> Any:
        return before_match_hashes(**kwargs, indexes=before_indexes)

    client.post("/api/v1/match", body, content_type="application/json", **headers)  # warm-up
    print(
        f"{len(planted):,} planted PDQ entries within 15 bits of one value; "
        f"{args.hashes} query hashes near it; MATCH_DEFAULT_LIMIT {settings.MATCH_DEFAULT_LIMIT}"
    )
    print(f"{'matcher':8} {'seconds':>8} {'bytes':>13} {'matches':>9} {'truncated':>10}")
    for matcher in ("before", "after"):
        image_views.match_hashes = before_match if matcher == "before" else after_match
        began = time.perf_counter()
        response = client.post("/api/v1/match", body, content_type="application/json", **headers)
        elapsed = time.perf_counter() - began
        assert response.status_code == 200, response.content[:500]
        results = json.loads(response.content)["results"]
        matches = sum(len(result["matches"]) for result in results)
        cut = sum(bool(result.get("truncated")) for result in results)
        print(f"{matcher:8} {elapsed:8.2f} {len(response.content):13,} {matches:9,} {cut:10}")
        del response, results
    image_views.match_hashes = after_match
    connections.close_all()
    database_reset(db, create=False)


if __name__ == "__main__":
    main()
