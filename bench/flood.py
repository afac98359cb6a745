"""One partner floods, another partner's latency: rate limits on, and off, in one run.

A real gunicorn is started with the repository's ``gunicorn.conf.py`` on a loopback port,
on PostgreSQL and Redis (the deployment settings, rate limits at their defaults), against a
throwaway database: ``<name>_bench`` of ``DATABASE_URL`` (or ``<name>`` when that already
ends in ``_bench``), dropped, created, migrated, filled with ``--entries`` PDQ entries
through the submission service, and dropped at the end unless ``--keep`` is given.

Partner B probes ``GET /api/v1/me`` at a steady ``--probe-rate`` per second (a partner
going about its business, within its own limits), one new connection per request, for
``--probes`` requests: first idle, then while partner A floods ``POST /api/v1/match`` with
``MATCH_MAX_HASHES`` random PDQ hashes per request from ``--threads`` threads (in another
process, one new connection per request, back to back), bounded by B's probes and
``--flood-seconds``. With rate limits on (the defaults), A floods twice: ignoring 429s (a
hostile or broken client: every refusal is still authenticated and audited, so it costs the
server about what B's ``/me`` costs), then waiting as long as each 429's ``Retry-After``
says (as urllib3's ``Retry`` and most HTTP client libraries do). With rate limits off
(``RATE_LIMIT_ENABLED=false``, its own gunicorn and idle figures) A floods once, the
baseline. Printed: B's p50 and p95 idle and under each flood, the p95 ratio to idle (goal:
within 3x with limits on), and what A got.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium REDIS_URL=... SECRET_KEY=x \\
    ALLOWED_HOSTS=127.0.0.1,localhost .venv/bin/python bench/flood.py [--probes 200]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import bench_start, database_reset, feed_fill, partners_create

ROOT = Path(__file__).resolve().parent.parent
GOAL = 3.0


def request(port: int, method: str, path: str, key: str, body: bytes | None = None) -> int:
    """One request on a new connection; the status, after reading the whole answer."""
    return exchange(port, method, path, key, body)[0]


def exchange(
    port: int, method: str, path: str, key: str, body: bytes | None = None
) -> tuple[int, int]:
    """One request on a new connection: the status and the Retry-After seconds (or 0)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, int(response.getheader("Retry-After") or 0)
    finally:
        conn.close()


def flood(
    port: int, key: str, body: bytes, threads: int, honour: bool, stop: Any, results: Any
) -> None:
    """Partner A: `threads` threads sending matches back to back until `stop` is set; when
    `honour`, each thread waits as long as a 429's Retry-After says (as urllib3's Retry
    does), else it ignores it."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    deadline = time.monotonic() + 600  # should the parent die without saying stop

    def loop() -> None:
        mine: Counter[int] = Counter()
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, retry_after = exchange(port, "POST", "/api/v1/match", key, body)
            except OSError:
                status, retry_after = 0, 0
            mine[status] += 1
            if honour and retry_after:
                stop.wait(retry_after)
        with lock:
            statuses.update(mine)

    began = time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((dict(statuses), time.perf_counter() - began))


def probe(port: int, key: str, count: int, rate: float, deadline: float) -> list[float]:
    """Partner B: `count` requests to /me, never more than `rate` per second (a slow answer
    is not made up for by a burst); the latencies in seconds."""
    latencies = []
    next_at = time.perf_counter()
    for _ in range(count):
        time.sleep(max(0.0, next_at - time.perf_counter()))
        began = time.perf_counter()
        if began > deadline:
            break
        next_at = began + 1 / rate
        status = request(port, "GET", "/api/v1/me", key)
        latencies.append(time.perf_counter() - began)
        if status != 200:
            sys.exit(f"partner B, within its own limits, got {status}")
    return latencies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_start(db_url: str, limits_on: bool, log: Any) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": db_url,
        "BIND": f"127.0.0.1:{port}",
        "RATE_LIMIT_ENABLED": "true" if limits_on else "false",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "consortium.wsgi"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)  # noqa: S603
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if server.poll() is not None:
                sys.exit(f"gunicorn exited with {server.returncode}; see {log.name}")
            time.sleep(0.2)
    server.terminate()
    sys.exit(f"gunicorn did not listen within 60 s; see {log.name}")


def warm_up(port: int, key: str, body: bytes) -> None:
    """Load each process's match index and connections before anything is timed (a few
    waves of concurrent matches, a second apart so that the limits let them through)."""
    for _ in range(3):
        threads = [
            threading.Thread(target=request, args=(port, "POST", "/api/v1/match", key, body))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.1)


def percentiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1e3, cuts[94] * 1e3


def run(args: argparse.Namespace, db_url: str, keys: dict[str, str], limits_on: bool) -> dict:
    body = json.dumps(
        {"hashes": [{"algorithm": "pdq", "value": secrets.token_hex(32)} for _ in range(1000)]}
    ).encode()
    warm_body = json.dumps({"hashes": [{"algorithm": "pdq", "value": "0" * 64}]}).encode()
    with tempfile.NamedTemporaryFile("w", prefix="flood-gunicorn-", suffix=".log") as log:
        server, port = server_start(db_url, limits_on, log)
        try:
            warm_up(port, keys["warm"], warm_body)
            budget = args.probes / args.probe_rate * 2
            idle = probe(
                port, keys["b"], args.probes, args.probe_rate, time.perf_counter() + budget
            )
            floods = {}
            for honour in (False, True) if limits_on else (False,):
                floods[honour] = flood_phase(args, port, keys, body, honour)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {"idle": idle, "floods": floods}


def flood_phase(
    args: argparse.Namespace, port: int, keys: dict[str, str], body: bytes, honour: bool
) -> dict:
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    flooder = context.Process(
        target=flood,
        args=(port, keys["a"], body, args.threads, honour, stop, results),
        daemon=True,
    )
    flooder.start()
    try:
        time.sleep(1.0)  # let the flood reach full speed
        flooded = probe(
            port, keys["b"], args.probes, args.probe_rate, time.perf_counter() + args.flood_seconds
        )
    finally:
        stop.set()
    statuses, seconds = results.get(timeout=120)
    flooder.join()
    time.sleep(1.1)  # A's windows end before the next phase
    return {"b": flooded, "a": statuses, "a_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=100, help="B's requests per phase")
    parser.add_argument("--probe-rate", type=float, default=4.0, help="B's requests per second")
    parser.add_argument("--threads", type=int, default=16, help="A's flooding threads")
    parser.add_argument("--flood-seconds", type=float, default=30.0, help="longest flood")
    parser.add_argument("--entries", type=int, default=20_000, help="PDQ entries to match")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--only", choices=["on", "off"], help="run one mode only")
    args = parser.parse_args()
    db = bench_start()

    from django.conf import settings
    from django.db import connections

    from audit.actors import Actor
    from partners import services
    from partners.models import Partner

    setup = partners_create()
    feed_fill(setup, args.entries)
    admin = Actor.command("bench")
    flooder = Partner.objects.get(name="bench-submitter")
    _, key_a = services.apikey_create(partner=flooder, scopes=["match"], actor=admin)
    warmer = services.partner_onboard(
        name="bench-warm", display_name="Warm-up", kind="platform", actor=admin
    )
    _, key_warm = services.apikey_create(partner=warmer, scopes=["match"], actor=admin)
    keys = {"a": key_a, "b": setup.reader_key, "warm": key_warm}
    connections.close_all()

    print(
        f"gunicorn.conf.py on 127.0.0.1, {args.entries:,} PDQ entries; partner B probes "
        f"GET /api/v1/me {args.probes}x at {args.probe_rate:g}/s; partner A floods POST "
        f"/api/v1/match (1,000 hashes) from {args.threads} threads"
    )
    print(f"rate limits when on: key {settings.RATE_LIMITS['key']}")
    print(f"                     partner {settings.RATE_LIMITS['partner']}")
    rows = {}
    for limits_on in (True, False):
        if args.only != ("off" if limits_on else "on"):
            rows[limits_on] = run(args, db.django_url, keys, limits_on)

    print(f"\n{'':16}{'':19}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'p95/idle':>10}   partner A")
    ratios = {}
    for limits_on, row in rows.items():
        label = "rate limits on" if limits_on else "rate limits off"
        idle50, idle95 = percentiles(row["idle"])
        print(f"{label:16}{'idle':19}{len(row['idle']):5}{idle50:9.1f}{idle95:9.1f}")
        for honour, phase in row["floods"].items():
            flood50, flood95 = percentiles(phase["b"])
            a = phase["a"]
            a_text = f"{sum(a.values()) / phase['a_seconds']:.0f} req/s: " + ", ".join(
                f"{status}: {count}" for status, count in sorted(a.items())
            )
            name = "flood, A backs off" if honour else "flood, A ignores"
            ratios[limits_on, honour] = flood95 / idle95
            print(
                f"{'':16}{name:19}{len(phase['b']):5}{flood50:9.1f}{flood95:9.1f}"
                f"{flood95 / idle95:9.1f}x   {a_text}"
            )
    for (limits_on, honour), ratio in ratios.items():
        if limits_on:
            verdict = "within" if ratio <= GOAL else "NOT within"
            who = "honours Retry-After" if honour else "ignores Retry-After"
            print(f"rate limits on, A {who}: B's p95 {ratio:.1f}x idle, {verdict} {GOAL:g}x")

    if not args.keep:
        connections.close_all()
        database_reset(db, create=False)


if __name__ == "__main__":
    main()
