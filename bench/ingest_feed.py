"""Ingest and feed throughput on PostgreSQL, each as a ratio to raw SQL measured in the same run.

What it measures
----------------
All API calls go through the full Django stack (WSGI handler, middleware, DRF, the views,
services and selectors) in this process with ``django.test.Client``: no HTTP server, no
network, so the figures are the application's own cost.

1. Ingest: entries/s through ``POST /api/v1/submissions``, in batches of 1,000 random PDQ
   hashes, each batch a DSSE envelope signed with the partner's Ed25519 key. Envelopes are
   built and signed before timing starts; the timed part is everything the server does
   (API key, signature, validation, submission row, log events, entries, access event,
   response) plus the client's parse of the JSON answer.
   Baselines, with psycopg alone: after each API batch its 1,000 ``audit_logevent`` rows and
   1,000 ``hashes_entry`` rows are read back (untimed), then written again (timed) into
   scratch tables made with ``CREATE TABLE ... (LIKE ... INCLUDING ALL)`` plus the same
   foreign keys (same indexes and constraints, checked and printed), in one transaction per
   batch, by two methods, each into its own pair of tables: ``executemany`` of one INSERT
   (psycopg 3 prepares it and pipelines the 1,000 rows), and binary ``COPY ... FROM STDIN``
   (what the application itself now uses, so the headline ratio is against it). The API
   and the raw methods alternate batch by batch, so load from other processes hits them
   alike.
2. Feed: the log is filled to ``--feed-entries`` events through the submission service
   (``submission_create``: signature check, validation, the same rows as the API writes),
   in signed submissions of 10,000 entries, then VACUUM ANALYZE. Then a full sync from the
   start through ``GET /api/v1/feed?after=&limit=``, page after page, each page parsed
   with ``json.loads`` as a client would, at limit 1,000 and 10,000, against a raw keyset
   loop ``SELECT index, leaf FROM audit_logevent WHERE index > %s ORDER BY index
   LIMIT %s`` with the same page size (psycopg, autocommit, like Django). Each sync runs
   ``--rounds`` times, API and raw taking turns, and the best time of each counts. For
   reference also the same raw loop reading the leaf as text, as the feed now does, the
   API's sync without the time of the client's ``json.loads`` (the server's own share: a
   page of leaves and their openings takes the client longer to parse than the server to
   serve, and the raw loops parse nothing), and the time of one-event pages (the fixed
   cost of a request).
3. ``EXPLAIN (ANALYZE, BUFFERS)`` of the feed page query exactly as Django sent it, captured
   with ``CaptureQueriesContext`` during a real feed request in the middle of the log.

Which database
--------------
Never the one named in ``DATABASE_URL``: it works in ``<name>_bench`` (or ``<name>`` when
that already ends in ``_bench``), which it drops and creates through the ``postgres``
maintenance database and migrates, and drops at the end unless ``--keep`` is given.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium REDIS_URL=... SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/ingest_feed.py [--batches 50] \\
    [--feed-entries 1000000] [--rounds 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCH = 1000  # entries per submission
FILL_CHUNK = 10_000  # entries per submission when filling the log (the largest allowed)
LIST_NAME = "ncii"
LABELS = ["ncii"]
RAW_FEED_SQL = "SELECT index, leaf FROM audit_logevent WHERE index > %s ORDER BY index LIMIT %s"
# The same rows with the leaf read as text, as the feed selector now reads it (a reference).
RAW_FEED_TEXT_SQL = (
    "SELECT index, convert_from(leaf, 'UTF8') FROM audit_logevent WHERE index > %s "
    "ORDER BY index LIMIT %s"
)
GOALS = {"ingest": 0.2, "feed": 0.25}
INGEST_MIN_RATE = 5000


# --- the benchmark database ---------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    name: str
    django_url: str  # what Django gets, query string (Django options) included
    libpq_url: str  # the same database for psycopg
    maintenance_url: str  # the `postgres` database, to drop and create it


def bench_database(database_url: str) -> Database:
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        sys.exit(f"DATABASE_URL must point at PostgreSQL, not {parts.scheme!r}")
    name = parts.path.lstrip("/")
    if not name:
        sys.exit("DATABASE_URL names no database")
    bench = name if name.endswith("_bench") else f"{name}_bench"
    libpq = parts._replace(scheme="postgresql", query="", fragment="")
    return Database(
        name=bench,
        django_url=urlunsplit(parts._replace(path=f"/{bench}")),
        libpq_url=urlunsplit(libpq._replace(path=f"/{bench}")),
        maintenance_url=urlunsplit(libpq._replace(path="/postgres")),
    )


def database_reset(db: Database, *, create: bool = True) -> None:
    with psycopg.connect(db.maintenance_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(db.name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db.name)))


def bench_start() -> Database:
    """The benchmark's own database, made afresh and migrated, with Django set up on it."""
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL to a PostgreSQL URL; the benchmark uses <name>_bench")
    db = bench_database(os.environ["DATABASE_URL"])
    database_reset(db)
    django_start(db)
    return db


def django_start(db: Database) -> None:
    os.environ["DATABASE_URL"] = db.django_url
    # These benchmarks measure what the application costs, one client sending as fast as
    # it can: rate limits would measure the limits instead (bench/flood.py measures them).
    os.environ.setdefault("RATE_LIMIT_ENABLED", "false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "consortium.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


# --- partners, list, envelopes ------------------------------------------------------------


@dataclass
class Setup:
    submitter_key: str
    reader_key: str
    private_key: Any
    hash_list: Any
    partner: Any
    signing_key: Any
    api_key: Any


def partners_create() -> Setup:
    """A submitting partner with an API key and a signing key, a reader, and a shared list,
    all made through the services, as tests/conftest.py does."""
    from audit.actors import Actor
    from consortium_client.keys import key_generate, public_key_pem
    from hashes.models import HashList
    from hashes.services.lists import hash_list_create
    from partners import services

    admin = Actor.command("bench")
    submitter = services.partner_onboard(
        name="bench-submitter", display_name="Bench submitter", kind="hotline", actor=admin
    )
    api_key, submitter_key = services.apikey_create(
        partner=submitter, scopes=["submit", "read"], actor=admin
    )
    private_key = key_generate()
    signing_key = services.signing_key_register(
        partner=submitter, public_key=public_key_pem(private_key.public_key()), actor=admin
    )
    reader = services.partner_onboard(
        name="bench-reader", display_name="Bench reader", kind="platform", actor=admin
    )
    _, reader_key = services.apikey_create(partner=reader, scopes=["read"], actor=admin)
    hash_list = hash_list_create(
        name=LIST_NAME, owner=submitter, visibility=HashList.Visibility.ALL, actor=admin
    )
    return Setup(submitter_key, reader_key, private_key, hash_list, submitter, signing_key, api_key)


def random_entries(count: int) -> list[dict[str, Any]]:
    return [
        {"algorithm": "pdq", "value": secrets.token_hex(32), "labels": LABELS} for _ in range(count)
    ]


# --- 1. ingest ----------------------------------------------------------------------------


def scratch_tables_create(conn: psycopg.Connection, tables: dict[str, str]) -> str:
    """Create `scratch` copies of `source` tables with the same columns, defaults, checks,
    indexes and foreign keys. Returns a line that shows the counts match."""
    counts = []
    for source, scratch in tables.items():
        conn.execute(f"DROP TABLE IF EXISTS {scratch}")
        conn.execute(f"CREATE TABLE {scratch} (LIKE {source} INCLUDING ALL)")
        for (definition,) in conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f'",
            [source],
        ).fetchall():
            conn.execute(f"ALTER TABLE {scratch} ADD {definition}")
        shape = []
        for table in (source, scratch):
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass), "
                "(SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass "
                "AND contype = 'f')",
                [table, table],
            ).fetchone()
            shape.append(row)
        assert shape[0] == shape[1], shape
        counts.append(f"{scratch}: {shape[1][0]} indexes, {shape[1][1]} foreign keys")
    conn.commit()
    return "; ".join(counts)


@dataclass(frozen=True)
class RawTable:
    """What the raw baselines need to know of one table the API writes."""

    source: str
    pk: str
    columns: list[str]
    types: list[str]  # PostgreSQL type names, for binary COPY
    json: list[bool]


def raw_tables(conn: psycopg.Connection) -> list[RawTable]:
    from audit.models import LogEvent
    from hashes.models import Entry

    tables = []
    for model in (LogEvent, Entry):
        fields = model._meta.concrete_fields
        table = model._meta.db_table
        types = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table],
            ).fetchall()
        )
        columns = [f.column for f in fields]
        tables.append(
            RawTable(
                table,
                model._meta.pk.column,
                columns,
                [types[column] for column in columns],
                [f.get_internal_type() == "JSONField" for f in fields],
            )
        )
    return tables


def raw_executemany(cursor: psycopg.Cursor, table: RawTable, scratch: str, rows: list) -> None:
    """One INSERT statement, executed for every row: psycopg 3 prepares it once and sends all
    the rows in one pipeline."""
    placeholders = ", ".join(["%s"] * len(table.columns))
    cursor.executemany(
        f"INSERT INTO {scratch} ({', '.join(table.columns)}) VALUES ({placeholders})", rows
    )


def raw_copy(cursor: psycopg.Cursor, table: RawTable, scratch: str, rows: list) -> None:
    """COPY ... FROM STDIN in binary format, as the application now writes these rows."""
    statement = f"COPY {scratch} ({', '.join(table.columns)}) FROM STDIN (FORMAT BINARY)"
    with cursor.copy(statement) as copy:
        copy.set_types(table.types)
        for row in rows:
            copy.write_row(row)


RAW_METHODS = {"executemany": raw_executemany, "copy": raw_copy}


def bench_ingest(setup: Setup, conn: psycopg.Connection, batches: int) -> dict[str, float]:
    from django.test import Client
    from psycopg.types.json import Jsonb

    from consortium_client.payloads import submission_envelope

    started = time.perf_counter()
    # Batch 0 warms every path up and is not counted.
    envelopes = [
        submission_envelope(LIST_NAME, random_entries(BATCH), setup.private_key).body()
        for _ in range(batches + 1)
    ]
    print(
        f"  signed {len(envelopes)} envelopes of {BATCH} entries "
        f"({sum(map(len, envelopes)) / len(envelopes) / 1024:.0f} KiB each) "
        f"in {time.perf_counter() - started:.1f} s, before timing"
    )
    tables = raw_tables(conn)
    for method in RAW_METHODS:
        shape = scratch_tables_create(
            conn, {t.source: f"bench_{method}_{t.source.split('_', 1)[1]}" for t in tables}
        )
        print(f"  scratch tables for raw {method}: {shape}")

    client = Client()
    seconds = dict.fromkeys(["api", *RAW_METHODS], 0.0)
    for number, envelope in enumerate(envelopes):
        start = time.perf_counter()
        response = client.post(
            "/api/v1/submissions",
            envelope,
            content_type="application/json",
            **headers(setup.submitter_key),
        )
        body = json.loads(response.content)
        api_elapsed = time.perf_counter() - start
        assert response.status_code == 201, response.content[:500]
        assert len(body["entries"]) == BATCH
        ids = [entry["id"] for entry in body["entries"]]

        # Untimed: read back exactly the rows the API wrote.
        batch = []
        for table in tables:
            rows = conn.execute(
                f"SELECT {', '.join(table.columns)} FROM {table.source} "
                f"WHERE {table.pk} BETWEEN %s AND %s ORDER BY {table.pk}",
                [min(ids), max(ids)],
            ).fetchall()
            conn.commit()
            assert len(rows) == BATCH
            wrap = [Jsonb if is_json else None for is_json in table.json]
            values = [[w(v) if w else v for v, w in zip(row, wrap, strict=True)] for row in rows]
            batch.append((table, values))

        # Timed: each raw method writes the same rows, one transaction per batch; the two
        # take turns going first.
        methods = list(RAW_METHODS.items())
        for method, insert in methods[number % 2 :] + methods[: number % 2]:
            start = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor:
                for table, rows in batch:
                    insert(cursor, table, f"bench_{method}_{table.source.split('_', 1)[1]}", rows)
            if number:
                seconds[method] += time.perf_counter() - start
        if number:
            seconds["api"] += api_elapsed
    entries = batches * BATCH
    return {"entries": entries, "seconds": seconds} | {
        name: entries / elapsed for name, elapsed in seconds.items()
    }


# --- 2. feed ------------------------------------------------------------------------------


def log_size() -> int:
    from audit.models import LogHead

    return LogHead.objects.get(pk=1).size


def feed_fill(setup: Setup, target: int) -> int:
    """Append submissions of up to 10,000 entries until the log holds `target` events,
    through the submission service itself (the code behind POST /api/v1/submissions, with
    signature check and validation, without HTTP), so every row is what the API writes."""
    from audit.actors import Actor
    from consortium_client.payloads import submission_envelope
    from hashes.services import submission_create

    actor = Actor.for_api_key(setup.api_key, client_ip="127.0.0.1")
    added = 0
    while (missing := target - log_size()) > 0:
        count = min(FILL_CHUNK, missing)
        signed = submission_envelope(LIST_NAME, random_entries(count), setup.private_key)
        result = submission_create(actor=actor, body=signed.body())
        assert len(result.entries) == count
        added += count
    return added


def sync_raw(conn: psycopg.Connection, limit: int, query: str = RAW_FEED_SQL) -> int:
    after, count = -1, 0
    while True:
        rows = conn.execute(query, [after, limit]).fetchall()
        count += len(rows)
        if len(rows) < limit:
            return count
        after = rows[-1][0]


def headers(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


# Seconds the last sync_api spent in json.loads, the client's share of the sync.
client_parse_seconds = 0.0


def sync_api(client: Any, key: str, limit: int) -> int:
    global client_parse_seconds
    params: dict[str, Any] = {"limit": limit}
    count = 0
    client_parse_seconds = 0.0
    while True:
        response = client.get("/api/v1/feed", params, **headers(key))
        started = time.perf_counter()
        page = json.loads(response.content)
        client_parse_seconds += time.perf_counter() - started
        assert response.status_code == 200, response.content[:500]
        count += len(page["events"])
        if not page["has_more"]:
            return count
        params["after"] = page["next"]


def timed(function: Any, *args: Any) -> tuple[int, float]:  # (its result, seconds)
    start = time.perf_counter()
    count = function(*args)
    return count, time.perf_counter() - start


def bench_feed(
    setup: Setup, conn: psycopg.Connection, limits: list[int], rounds: int
) -> dict[int, dict]:
    """Full syncs, API and raw taking turns, `rounds` times each; the best time of each
    counts (the machine is shared: the best run is the one least disturbed)."""
    from django.test import Client

    size = log_size()
    client = Client()
    sync_raw(conn, max(limits))  # warm the cache: every run reads from memory alike
    syncs = {
        "raw": lambda limit: sync_raw(conn, limit),
        "raw_text": lambda limit: sync_raw(conn, limit, RAW_FEED_TEXT_SQL),
        "api": lambda limit: sync_api(client, setup.reader_key, limit),
    }
    results = {}
    for limit in limits:
        best = dict.fromkeys([*syncs, "api_server"], float("inf"))
        for _ in range(rounds):
            for name, sync in syncs.items():
                count, seconds = timed(sync, limit)
                assert count == size, (name, count, size)
                best[name] = min(best[name], seconds)
                if name == "api":
                    best["api_server"] = min(best["api_server"], seconds - client_parse_seconds)
        results[limit] = {name: size / seconds for name, seconds in best.items()}
        print(
            f"  limit {limit:>6}: {size:,} events in {-(-size // limit):,} pages, best of "
            f"{rounds}: API {best['api']:.2f} s (of which the server "
            f"{best['api_server']:.2f} s, the rest the client's json.loads), raw "
            f"{best['raw']:.2f} s, raw as text {best['raw_text']:.2f} s"
        )
    # The fixed cost of a request: pages of one event at cursors spread over the log.
    cursors = [size * n // 200 for n in range(200)]
    start = time.perf_counter()
    for after in cursors:
        client.get("/api/v1/feed", {"after": after, "limit": 1}, **headers(setup.reader_key))
    api_floor = (time.perf_counter() - start) / len(cursors)
    start = time.perf_counter()
    for after in cursors:
        conn.execute(RAW_FEED_SQL, [after, 1]).fetchall()
    raw_floor = (time.perf_counter() - start) / len(cursors)
    print(
        f"  one-event pages (the fixed cost of a request): API {api_floor * 1000:.2f} ms, "
        f"raw {raw_floor * 1000:.2f} ms"
    )
    return results


# --- 3. the feed query plan ---------------------------------------------------------------


def feed_query_explain(setup: Setup, after: int, limit: int) -> tuple[str, list[str]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = Client().get(
            "/api/v1/feed",
            {"after": after, "limit": limit},
            **headers(setup.reader_key),
        )
    assert response.status_code == 200
    (query,) = [
        q["sql"]
        for q in captured.captured_queries
        if '"audit_logevent"' in q["sql"] and "ORDER BY" in q["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}")
        plan = [line for (line,) in cursor.fetchall()]
    return query, plan


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batches", type=int, default=50, help="timed submissions of 1,000 entries (default 50)"
    )
    parser.add_argument(
        "--feed-entries",
        type=int,
        default=1_000_000,
        help="log size for the feed sync (default 1,000,000)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="full syncs per method and page size (default 2)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    begun = time.perf_counter()
    db = bench_start()
    print(f"database {db.name}: dropped, created and migrated for this run")
    setup = partners_create()
    conn = psycopg.connect(db.libpq_url)
    print(
        f"server: {conn.execute('SELECT version()').fetchone()[0].split(' on ')[0]}; "
        f"client: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(
        "API calls: django.test.Client, in-process WSGI through the full middleware and "
        "DRF stack; no HTTP server, no network"
    )

    print(f"\n1. ingest: {args.batches} timed batches of {BATCH:,} PDQ entries (+1 warm-up)")
    ingest = bench_ingest(setup, conn, args.batches)
    timings = ", ".join(f"{name} {sec:.2f} s" for name, sec in ingest["seconds"].items())
    print(f"  {ingest['entries']:,} entries each: {timings}")

    print(f"\n2. feed: log of {args.feed_entries:,} events")
    start = time.perf_counter()
    added = feed_fill(setup, args.feed_entries)
    filled = time.perf_counter() - start
    with psycopg.connect(db.libpq_url, autocommit=True) as vacuum:
        vacuum.execute("VACUUM (ANALYZE) audit_logevent, hashes_entry, hashes_submission")
    size = log_size()
    print(
        f"  filled: {added:,} events through submission_create in {FILL_CHUNK:,}-entry "
        f"submissions, {filled:.1f} s ({added / max(filled, 1e-9):,.0f}/s), then VACUUM "
        f"ANALYZE; log size {size:,}"
    )
    limits = [1000, 10_000]
    with psycopg.connect(db.libpq_url, autocommit=True) as reader:  # like Django's
        feed = bench_feed(setup, reader, limits, args.rounds)

    print("\n3. EXPLAIN (ANALYZE, BUFFERS) of the feed page query as Django sent it")
    query, plan = feed_query_explain(setup, after=size // 2, limit=1000)
    print(f"  {query}")
    for line in plan:
        print(f"    {line}")

    rate_ok = ingest["api"] >= INGEST_MIN_RATE
    rows = [
        ("ingest vs raw binary COPY", ingest["api"], ingest["copy"], GOALS["ingest"], rate_ok),
        ("ingest vs raw executemany", ingest["api"], ingest["executemany"], None, True),
    ]
    for limit in limits:
        result = feed[limit]
        rows.append((f"feed, limit {limit:,}", result["api"], result["raw"], GOALS["feed"], True))
        rows.append(
            (f"feed, limit {limit:,}, raw as text", result["api"], result["raw_text"], None, True)
        )
        rows.append(
            (f"feed, limit {limit:,}, server only", result["api_server"], result["raw"], None, True)
        )
    print("\nsummary (entries/s; ratio = API / raw, measured in this run)")
    print(f"  {'':<34}{'API':>10}{'raw':>10}{'ratio':>8}  goal")
    for label, api, raw, goal, extra_ok in rows:
        ratio = api / raw
        if goal is None:
            goal_text = "(reference)"
        else:
            goal_text = f">= {goal}x"
            if label.startswith("ingest"):
                goal_text += f" and >= {INGEST_MIN_RATE:,}/s"
            goal_text += ": " + ("met" if ratio >= goal and extra_ok else "MISSED")
        print(f"  {label:<34}{api:>10,.0f}{raw:>10,.0f}{ratio:>7.2f}x  {goal_text}")
    print(
        "  (reference rows: the slower raw insert; the raw feed loop reading leaves as text, "
        "as the feed now does; the API's sync without the client's json.loads of each page, "
        "which the raw loops do not do)"
    )
    print(f"total run time {time.perf_counter() - begun:.0f} s")

    conn.close()
    if not args.keep:
        from django.db import connections

        connections.close_all()
        database_reset(db, create=False)
        print(f"database {db.name} dropped (--keep keeps it)")


if __name__ == "__main__":
    main()
