"""`log_verify` throughput against the raw SHA-256 rate of the same leaf bytes, in one run.

What it measures
----------------
The log is filled to ``--events`` events through the submission service (signed
submissions of 10,000 PDQ entries, as bench/ingest_feed.py fills it), with a checkpoint
signed after each submission, one partner revocation of ``--revoked`` entries, and one
sealed access period; then VACUUM ANALYZE.

1. ``log_verify`` (audit.log_verify, what ``manage.py log_verify`` runs, without the bar):
   every leaf parsed and hashed, every tile hash compared, every checkpoint root and
   signature, every entry's row and commitment opening, every envelope verified once, the
   access period re-hashed. Best of ``--rounds``; events/s.
2. Baselines on the same leaves, in the same run: the RFC 9162 leaf hash alone,
   ``sha256(0x00 || leaf)`` over the leaf bytes held in memory (the raw SHA-256 rate), and
   the same hash over the leaves as read from PostgreSQL by a keyset loop with psycopg.
3. The peak Python memory of one more run under tracemalloc, against the log's size.

Which database: ``<name>_bench`` of ``DATABASE_URL``, dropped and created (bench/ingest_feed.py),
and dropped at the end unless ``--keep``.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/log_verify.py [--events 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import (
    FILL_CHUNK,
    bench_start,
    database_reset,
    feed_fill,
    log_size,
    partners_create,
)

RAW_LEAVES_SQL = (
    'SELECT "index", leaf FROM audit_logevent WHERE "index" > %s ORDER BY "index" LIMIT %s'
)


def leaves_read(conn: psycopg.Connection, page: int = 10_000) -> list[bytes]:
    leaves: list[bytes] = []
    after = -1
    while rows := conn.execute(RAW_LEAVES_SQL, [after, page]).fetchall():
        leaves += [bytes(leaf) for _, leaf in rows]
        after = rows[-1][0]
    return leaves


def hash_rate(leaves: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for leaf in leaves:
            hashlib.sha256(b"\x00" + leaf).digest()
        best = min(best, time.perf_counter() - started)
    return len(leaves) / best


def read_and_hash_rate(conn: psycopg.Connection, rounds: int, page: int = 5000) -> float:
    best = float("inf")
    count = 0
    for _ in range(rounds):
        started = time.perf_counter()
        after, count = -1, 0
        while rows := conn.execute(RAW_LEAVES_SQL, [after, page]).fetchall():
            for _, leaf in rows:
                hashlib.sha256(b"\x00" + leaf).digest()
            count += len(rows)
            after = rows[-1][0]
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="log size (default 100,000)")
    parser.add_argument("--revoked", type=int, default=1000, help="entries revoked in one go")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    os.environ["LOG_KEY_FILE"] = str(Path(tempfile.mkdtemp()) / "log.key")
    db = bench_start()
    from audit.actors import ACCESS_PERIOD_SEALER, Actor
    from audit.log_verify import log_verify
    from audit.services import access_period_seal, checkpoint_sign
    from consortium_client.payloads import revocation_envelope
    from hashes.models import Entry
    from hashes.services import revocation_create

    setup = partners_create()
    started = time.perf_counter()
    while log_size() < args.events:
        feed_fill(setup, min(args.events, log_size() + FILL_CHUNK))
        checkpoint_sign()
    actor = Actor.for_api_key(setup.api_key, client_ip="127.0.0.1")
    victims = list(Entry.objects.order_by("id").values_list("id", flat=True)[: args.revoked])
    revocation_create(
        actor=actor, envelope=revocation_envelope(victims, "bench", setup.private_key)
    )
    access_period_seal(actor=ACCESS_PERIOD_SEALER)
    checkpoint_sign()
    filled = time.perf_counter() - started
    with psycopg.connect(db.libpq_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        size = log_size()
        print(
            f"database {db.name}; log of {size:,} events filled in {filled:.1f} s; "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )

        best = float("inf")
        report = None
        for _ in range(args.rounds):
            begun = time.perf_counter()
            report = log_verify()
            best = min(best, time.perf_counter() - begun)
        assert report is not None
        assert report.size == size
        print(f"  {report.summary}")
        verify_rate = size / best

        leaves = leaves_read(conn)
        assert len(leaves) == size
        mean = sum(map(len, leaves)) / size
        raw = hash_rate(leaves, args.rounds)
        read_raw = read_and_hash_rate(conn, args.rounds)
        del leaves

    tracemalloc.start()
    log_verify()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    print(f"\nsummary (events/s; leaves of {mean:.0f} bytes on average, this run)")
    print(f"  log_verify                                   {verify_rate:>12,.0f}")
    print(
        f"  raw SHA-256 leaf hash, leaves in memory      {raw:>12,.0f}"
        f"   log_verify / raw = {verify_rate / raw:.3f}"
    )
    print(
        f"  PostgreSQL keyset read + leaf hash (psycopg) {read_raw:>12,.0f}"
        f"   log_verify / read = {verify_rate / read_raw:.3f}"
    )
    print(f"  peak Python memory of log_verify (tracemalloc): {peak / 2**20:.1f} MiB")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        database_reset(db, create=False)


if __name__ == "__main__":
    main()
