"""Concurrent submitters and revokers on the same lists: failures and latency, before and after.

What it measures
----------------
Five partners write at once through the full Django stack (``django.test.Client`` in this
process, one thread and one database connection each): two submit 1-entry batches, three
submit an entry and revoke it, in turn, on the same two lists. Each write is one request; the
benchmark counts answers by status and times each write.

It runs the same load twice per round, alternating, so that load from other processes hits
both alike:
- **before**: revocations lock their entries as the code did before issue 6, with
  ``select_for_update()`` over a query joined to the list and partner (PostgreSQL then locks
  the joined rows too, which blocks submissions' foreign-key checks while the revocation waits
  for the log head that those submissions hold: a deadlock). A faithful copy of that function
  is kept here only, as the baseline.
- **after**: the code as it is (entry rows only, ``FOR NO KEY UPDATE``).

Which database: ``<name>_bench`` of ``DATABASE_URL``, dropped and created (bench/ingest_feed.py).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/concurrent_writes.py [--rounds 2] [--ops 150]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import bench_start, database_reset

WRITERS = {"submitters": 2, "revokers": 3}


def old_entries_lock(*, actor: Any, entry_ids: list[int]) -> list[Any]:
    """The revocation's lock before issue 6, kept as the baseline (see the module doc)."""
    from hashes.models import Entry
    from hashes.selectors import entries_revocable

    source = entries_revocable(partner=actor.partner)
    found = {
        entry.pk: entry
        for entry in Entry.objects.select_for_update()
        .filter(pk__in=source.filter(pk__in=entry_ids).values("pk"))
        .select_related("hash_list", "partner")
        .order_by("pk")
    }
    return [found[entry_id] for entry_id in entry_ids]


@contextmanager
def locking(mode: str):
    from hashes.services import revocations

    current = revocations._entries_lock
    if mode == "before":
        revocations._entries_lock = old_entries_lock
    try:
        yield
    finally:
        revocations._entries_lock = current


class Writer:
    def __init__(self, name: str, admin: Any) -> None:
        from django.test import Client

        from consortium_client.keys import key_generate, public_key_pem
        from partners import services

        partner = services.partner_onboard(
            name=name, display_name=name, kind="platform", actor=admin
        )
        _, self.api_key = services.apikey_create(
            partner=partner, scopes=["submit", "read"], actor=admin
        )
        self.private_key = key_generate()
        services.signing_key_register(
            partner=partner, public_key=public_key_pem(self.private_key.public_key()), actor=admin
        )
        self.http = Client()

    def post(self, path: str, body: bytes) -> Any:
        return self.http.post(
            path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.api_key}"
        )


def run_load(writers: list[tuple[str, Writer]], lists: list[str], ops: int) -> dict[str, Any]:
    from django.db import connection

    from consortium_client.payloads import revocation_envelope, submission_envelope

    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()

    def timed_post(writer: Writer, path: str, body: bytes) -> Any:
        start = time.perf_counter()
        response = writer.post(path, body)
        elapsed = time.perf_counter() - start
        with lock:
            statuses[response.status_code] += 1
            latencies.append(elapsed)
        return response

    def work(role: str, writer: Writer, list_name: str) -> None:
        try:
            for _ in range(ops):
                entry = {"algorithm": "md5", "value": secrets.token_hex(16)}
                added = timed_post(
                    writer,
                    "/api/v1/submissions",
                    submission_envelope(list_name, [entry], writer.private_key).body(),
                )
                if role == "revokers" and added.status_code == 201:
                    ids = [e["id"] for e in json.loads(added.content)["entries"]]
                    timed_post(
                        writer,
                        "/api/v1/revocations",
                        revocation_envelope(ids, "consent withdrawn", writer.private_key),
                    )
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(role, writer, lists[n % len(lists)]))
        for n, (role, writer) in enumerate(writers)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "writes": sum(statuses.values()),
        "5xx": sum(n for status, n in statuses.items() if status >= 500),
        "other": sum(n for status, n in statuses.items() if status not in (201,) and status < 500),
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "max": latencies[-1] * 1000,
        "rate": len(latencies) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ops", type=int, default=150, help="writes per writer per run")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    db = bench_start()
    import logging

    # Each deadlock is logged with its traceback by the server; counted here instead.
    logging.getLogger("consortium.errors").setLevel(logging.CRITICAL)
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    from audit.actors import Actor
    from hashes.models import HashList
    from hashes.services.lists import hash_list_create
    from partners.models import Partner

    admin = Actor.command("bench")
    owner = Partner.objects.create(name="owner", display_name="Owner", status="active")
    lists = ["one", "two"]
    for name in lists:
        hash_list_create(name=name, owner=owner, visibility=HashList.Visibility.ALL, actor=admin)
    writers = [
        (role, Writer(f"{role}-{n}", admin))
        for role, count in WRITERS.items()
        for n in range(count)
    ]
    print(
        f"{len(writers)} writers x {args.ops} rounds each (revokers: submit + revoke), "
        f"2 lists, PostgreSQL, in-process WSGI"
    )
    print(
        f"{'round':>5} {'mode':>7} {'writes':>7} {'5xx':>5} {'4xx':>4} {'5xx %':>6} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'max ms':>8} {'writes/s':>9}"
    )
    for round_number in range(1, args.rounds + 1):
        for mode in ("before", "after"):
            with locking(mode):
                result = run_load(writers, lists, args.ops)
            share = 100 * result["5xx"] / result["writes"]
            print(
                f"{round_number:>5} {mode:>7} {result['writes']:>7} {result['5xx']:>5} "
                f"{result['other']:>4} {share:>5.1f}% {result['p50']:>7.1f} "
                f"{result['p95']:>7.1f} {result['max']:>8.1f} {result['rate']:>9.1f}"
            )
    from django.db import connections

    connections.close_all()
    if not args.keep:
        database_reset(db, create=False)


if __name__ == "__main__":
    main()
