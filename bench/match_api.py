"""Match API overhead at 1M entries, as a ratio to the index alone, measured in one run.

The log is filled with ``--entries`` random PDQ entries through the submission service (the
helpers of ``ingest_feed.py``). Queries come in batches of 100: half are stored values with
0 to 31 bits flipped (so each has at least one match), half are random (no match). Each batch
is timed twice: through ``POST /api/v1/match`` with ``django.test.Client`` (in-process WSGI
through the full middleware and DRF stack: authentication, index refresh from the log,
candidate check against the database, rendering, the access event; no network), and against
the process's index alone (``match_indexes.search`` at radius 31, the list's). Both must find
the same number of matches (the API is asked for up to 100 per hash, far more than any query
here has). Also printed: the index's load time (from the log's leaves) against the load
from the entries table that it replaced (a copy kept here, timed in the same run), and its
memory against the raw hash bytes.

With ``--images N``, also N real photographs (the robustness harness's originals, fetched by
``scripts/fetch-test-images``), each turned a quarter and sent as a 1024-pixel JPEG through
``POST /api/v1/match`` as a partner uploads it, alternately with ``dihedral=false`` and with
the default (dihedral on): what the rotations and mirrors cost a request (that they find the
turned copies is the robustness harness's business).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/match_api.py [--entries 1000000] \\
        [--batches 100] [--images 20] [--keep | --reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import (
    bench_database,
    bench_start,
    database_reset,
    django_start,
    feed_fill,
    partners_create,
)

BATCH = 100
RADIUS = 31
LIMIT = 100


def planted_queries(stored: list[str], batches: int, rng: np.random.Generator) -> list[list[str]]:
    queries = []
    for _ in range(batches):
        batch = []
        for value in rng.choice(stored, BATCH // 2, replace=False):
            number = int(value, 16)
            for bit in rng.choice(256, int(rng.integers(0, RADIUS + 1)), replace=False):
                number ^= 1 << int(bit)
            batch.append(f"{number:064x}")
        batch += [f"{int.from_bytes(rng.bytes(32), 'big'):064x}" for _ in range(BATCH // 2)]
        queries.append(batch)
    return queries


def entries_table_load() -> int:
    """The replaced load: active rows of the entries table, one index per algorithm (a copy of
    what hashes/match_index.py did before it read the log). Returns the entries loaded."""
    from array import array
    from collections import defaultdict

    from consortium_client.hashvalues import ALGORITHMS
    from consortium_client.index import index_for
    from hashes.models import Entry

    ids: dict[str, array[int]] = defaultdict(lambda: array("q"))
    packed: dict[str, bytearray] = defaultdict(bytearray)
    rows = (
        Entry.objects.filter(status=Entry.Status.ACTIVE)
        .values_list("pk", "algorithm", "value")
        .iterator(chunk_size=50_000)
    )
    for entry_id, algorithm, value in rows:
        ids[algorithm].append(entry_id)
        packed[algorithm] += bytes.fromhex(value)
    loaded = 0
    for algorithm, entry_ids in ids.items():
        width = ALGORITHMS[algorithm].bits // 8
        hashes = np.frombuffer(bytes(packed.pop(algorithm)), np.uint8).reshape(-1, width)
        index_for(algorithm).add(np.frombuffer(entry_ids, np.int64), hashes)
        loaded += len(entry_ids)
    return loaded


def image_matches(client: Any, headers: dict[str, str], count: int) -> None:
    """Time image matches with and without dihedral queries, alternating, three rounds."""
    import io

    from PIL import Image
    from robustness import ORIGINALS, cache_dir, load_original

    photos = []
    for path in ORIGINALS[:count]:
        image = load_original(cache_dir() / "root" / path)
        turned = io.BytesIO()
        image.transpose(Image.Transpose.ROTATE_90).save(turned, "JPEG", quality=90)
        photos.append(turned.getvalue())
    times: dict[bool, list[float]] = {False: [], True: []}
    queries: dict[bool, int] = {False: 0, True: 0}
    for round_ in range(4):  # the first round warms up, untimed
        for data in photos:
            for dihedral in (False, True):
                form = {"image": io.BytesIO(data), "limit": "10"}
                if not dihedral:
                    form["dihedral"] = "false"
                began = time.perf_counter()
                response = client.post("/api/v1/match", form, **headers)
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, response.content
                results = json.loads(response.content)["results"]
                if round_:
                    times[dihedral].append(elapsed)
                    queries[dihedral] += len(results)
    print(f"\nimage match, {len(photos)} photographs turned 90 degrees, 1024 px JPEG, 3 rounds:")
    for dihedral in (False, True):
        print(
            f"  dihedral {'on ' if dihedral else 'off'}: median "
            f"{statistics.median(times[dihedral]) * 1e3:6.1f} ms, "
            f"{queries[dihedral] / len(times[dihedral]):.1f} queries per image"
        )
    print(
        f"  on / off : {statistics.median(times[True]) / statistics.median(times[False]):.2f}x "
        f"(median), {sum(times[True]) / sum(times[False]):.2f}x (total)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--images", type=int, default=0, help="also time N image matches")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the database a run with --keep left (same --entries), instead of filling "
        "a new one; implies --keep",
    )
    args = parser.parse_args()
    if args.reuse:
        args.keep = True
        db = bench_database(os.environ["DATABASE_URL"])
        django_start(db)
    else:
        db = bench_start()

    from django.db import connection
    from django.test import Client

    from audit.actors import Actor
    from audit.selectors import log_size
    from hashes.match_index import match_indexes
    from hashes.models import Entry, HashList
    from partners import services
    from partners.models import Partner

    if args.reuse:
        if log_size() != args.entries:
            sys.exit(f"{db.name} holds {log_size():,} log events, not --entries {args.entries:,}")
        print(f"database {db.name}: reused, {args.entries:,} PDQ entries")
    else:
        setup = partners_create()
        start = time.perf_counter()
        feed_fill(setup, args.entries)
        print(
            f"database {db.name}: {args.entries:,} PDQ entries in "
            f"{time.perf_counter() - start:.0f} s"
        )
    with connection.cursor() as cursor:  # statistics, as a live database has them
        cursor.execute("ANALYZE audit_logevent, hashes_entry, hashes_submission")
    reader = Partner.objects.get(name="bench-reader")
    _, key = services.apikey_create(partner=reader, scopes=["match"], actor=Actor.command("bench"))

    start = time.perf_counter()
    match_indexes.refresh()
    loaded = time.perf_counter() - start
    memory = match_indexes.memory_bytes()["pdq"]
    raw = args.entries * 32
    start = time.perf_counter()
    table_entries = entries_table_load()
    replaced = time.perf_counter() - start
    print(
        f"index: loaded {table_entries:,} entries from the log in {loaded:.1f} s "
        f"(from the entries table, as before this change: {replaced:.1f} s); "
        f"{memory / 2**20:.0f} MiB for {raw / 2**20:.0f} MiB of raw hashes "
        f"({memory / raw:.2f}x, tables included)"
    )

    rng = np.random.default_rng(1)
    stored = list(Entry.objects.order_by("?").values_list("value", flat=True)[:20_000])
    queries = planted_queries(stored, args.batches, rng)
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    radii = dict.fromkeys(HashList.objects.values_list("pk", flat=True), RADIUS)
    api_times, index_times, api_found, index_found = [], [], 0, 0
    for batch in [queries[0], *queries]:  # the first batch warms both paths up, untimed
        body = json.dumps(
            {"hashes": [{"algorithm": "pdq", "value": v} for v in batch], "limit": LIMIT}
        )
        began = time.perf_counter()
        response = client.post("/api/v1/match", body, content_type="application/json", **headers)
        results = json.loads(response.content)["results"]
        api_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        hits = match_indexes.search(algorithm="pdq", values=batch, radii=radii, limit=LIMIT)
        index_times.append(time.perf_counter() - began)
        api_found += sum(len(result["matches"]) for result in results)
        index_found += sum(len(found.hits) for found in hits)
    api_times, index_times = api_times[1:], index_times[1:]
    hashes = args.batches * BATCH
    api_rate, index_rate = hashes / sum(api_times), hashes / sum(index_times)
    print(f"\nmatch, {args.batches} batches of {BATCH} PDQ hashes at radius {RADIUS}:")
    print(
        f"  index alone : {index_rate:10,.0f} hashes/s, median batch "
        f"{statistics.median(index_times) * 1e3:6.1f} ms"
    )
    print(
        f"  HTTP API    : {api_rate:10,.0f} hashes/s, median batch "
        f"{statistics.median(api_times) * 1e3:6.1f} ms"
    )
    print(
        f"  API / index : {api_rate / index_rate:.2f}x throughput "
        f"(API overhead {sum(api_times) / sum(index_times):.2f}x the index's time)"
    )
    print(
        f"  matches found: API {api_found:,}, index {index_found:,} "
        f"({'same' if api_found == index_found else 'DIFFERENT'})"
    )
    if args.images:
        image_matches(client, headers, args.images)
    if not args.keep:
        from django.db import connections

        connections.close_all()
        database_reset(db, create=False)


if __name__ == "__main__":
    main()
