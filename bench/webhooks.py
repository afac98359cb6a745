"""Webhook fan-out: messages/s delivered to 100 subscriptions by real Celery workers, against
the rate the log is appended, and the delay from commit to delivery.

What it measures
----------------
100 partners each subscribe one endpoint to `entry.added` on a list they all see. The
endpoint is one local receiver (a threading HTTP server in this process, answering 200 at
once) that notes when each message id first arrives. Celery workers (prefork,
``--concurrency``) deliver, as in a deployment: every write queues the wake-up on commit,
each subscription's follower delivers its messages in log order.

1. Burst: ``--burst`` entries are submitted as fast as the submission service goes (one
   entry per signed submission, through ``submission_create``, the code behind
   ``POST /api/v1/submissions``), then the clock runs until all burst x 100 messages
   arrived: the workers' capacity in messages/s.
2. Steady: entries are submitted at ``--rate`` per second for ``--seconds``; each message's
   delay is its arrival time minus its entry's commit time (both read in this process),
   reported as median and p99, with the messages/s delivered against the x 100 the log's
   rate asks for.
3. Baseline, in the same run: the same messages (same signed bodies, built by the same
   code) POSTed straight to the receiver by ``--concurrency`` threads through
   ``webhooks.outbound.post``: the cost of signing and HTTP alone, without database,
   broker or follower. Fan-out throughput is reported as a ratio to it.

Run it with a broker (``REDIS_URL``) no test or other worker uses: its workers would take
each other's tasks. Which database: ``<name>_bench`` beside the one in ``DATABASE_URL``
(dropped and created again, then dropped unless ``--keep``), as bench/ingest_feed.py does.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium REDIS_URL=redis://... \\
    SECRET_KEY=x ALLOWED_HOSTS=testserver .venv/bin/python bench/webhooks.py \\
    [--subscriptions 100] [--burst 20] [--rate 2] [--seconds 20] [--concurrency 2] \\
    [--rounds 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest_feed import (
    LIST_NAME,
    bench_start,
    database_reset,
    partners_create,
    random_entries,
)

ROOT = Path(__file__).resolve().parent.parent
CELERY = Path(sys.executable).parent / "celery"


class Arrivals:
    """First arrival time of each message id at the receiver."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: dict[str, float] = {}
        self.requests = 0

    def note(self, message_id: str) -> None:
        now = time.time()
        with self.lock:
            self.requests += 1
            self.first.setdefault(message_id, now)

    def count(self) -> int:
        with self.lock:
            return len(self.first)


def receiver_start(arrivals: Arrivals) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.note(self.headers.get("webhook-id", ""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hooks"


def subscribers_create(count: int, url: str) -> list[int]:
    """`count` partners, each with a read key and one subscription to entry.added."""
    from audit.actors import Actor
    from partners import services
    from webhooks.services import webhook_create

    admin = Actor.command("bench")
    ids = []
    for n in range(count):
        partner = services.partner_onboard(
            name=f"bench-subscriber-{n}",
            display_name=f"Subscriber {n}",
            kind="platform",
            actor=admin,
        )
        api_key, _ = services.apikey_create(partner=partner, scopes=["read"], actor=admin)
        subscription, _ = webhook_create(
            actor=Actor.for_api_key(api_key, client_ip=None), url=url, event_types=["entry.added"]
        )
        ids.append(subscription.pk)
    return ids


def worker_start(concurrency: int, schedule: Path) -> subprocess.Popen[bytes]:
    """Workers with beat, as deployed: beat's sweep is part of the delivery design."""
    return subprocess.Popen(  # noqa: S603 - the venv's celery, fixed arguments
        [
            str(CELERY),
            "-A",
            "consortium",
            "worker",
            "--beat",
            "--schedule",
            str(schedule),
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'client'}{os.pathsep}{ROOT}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def submit_one(setup: Any) -> tuple[int, float]:
    """Submit one entry; its log index and the time its transaction had committed."""
    from audit.actors import Actor
    from consortium_client.payloads import submission_envelope
    from hashes.services import submission_create

    actor = Actor.for_api_key(setup.api_key, client_ip="127.0.0.1")
    signed = submission_envelope(LIST_NAME, random_entries(1), setup.private_key)
    result = submission_create(actor=actor, body=signed.body())
    return result.entries[0].id, time.time()


def wait_for(arrivals: Arrivals, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while arrivals.count() < expected:
        if time.monotonic() > deadline:
            sys.exit(f"only {arrivals.count()} of {expected} messages arrived in {timeout:g} s")
        time.sleep(0.01)
    return time.time()


def bench_burst(setup: Any, arrivals: Arrivals, subscriptions: int, burst: int) -> float:
    before = arrivals.count()
    started = time.time()
    for _ in range(burst):
        submit_one(setup)
    done = wait_for(arrivals, before + burst * subscriptions, timeout=600)
    return burst * subscriptions / (done - started)


def bench_steady(
    setup: Any, arrivals: Arrivals, subscription_ids: list[int], rate: float, seconds: float
) -> dict[str, float]:
    from webhooks.services import message_id_of

    before = arrivals.count()
    committed: dict[int, float] = {}
    started = time.time()
    n = 0
    while (now := time.time()) < started + seconds:
        due = started + n / rate
        if now < due:
            time.sleep(due - now)
        index, at = submit_one(setup)
        committed[index] = at
        n += 1
    append_seconds = time.time() - started
    wait_for(arrivals, before + len(committed) * len(subscription_ids), timeout=600)
    delays = [
        arrivals.first[message_id_of(subscription_id=s, log_index=i)] - at
        for i, at in committed.items()
        for s in subscription_ids
    ]
    last = max(
        arrivals.first[message_id_of(subscription_id=s, log_index=i)]
        for i in committed
        for s in subscription_ids
    )
    delays.sort()
    return {
        "appended_per_s": len(committed) / append_seconds,
        "delivered_per_s": len(delays) / (last - started),
        "median_ms": 1000 * statistics.median(delays),
        "p99_ms": 1000 * delays[int(0.99 * (len(delays) - 1))],
        "max_ms": 1000 * delays[-1],
    }


def bench_baseline(subscription_ids: list[int], url: str, events: int, concurrency: int) -> float:
    """Signed messages/s POSTed straight to the receiver, `concurrency` threads."""
    from consortium_client.webhooks import webhook_headers
    from webhooks import outbound
    from webhooks.models import Subscription
    from webhooks.selectors import subscription_pending
    from webhooks.services import message_body

    subscription = Subscription.objects.select_related("partner").get(pk=subscription_ids[0])
    event = subscription_pending(subscription=subscription, after=-1, limit=1).events[0]
    body = message_body(event=event)
    secret = bytes(subscription.secret)
    jobs = [(s, i) for i in range(events) for s in subscription_ids]

    def send(job: tuple[int, int]) -> None:
        message_id = f"baseline_{job[0]}_{job[1]}"
        headers = webhook_headers(secret=secret, message_id=message_id, body=body)
        assert outbound.post(url=url, body=body, headers=headers).succeeded

    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, jobs))
    return len(jobs) / (time.time() - started)


def database_round_trip_ms(samples: int = 200) -> float:
    """Median milliseconds of `SELECT 1` from Django: what each of a message's queries costs
    at least on this machine, at this moment."""
    from django.db import connection

    times = []
    with connection.cursor() as cursor:
        for _ in range(samples):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    os.environ["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ["WEBHOOK_MAX_PER_PARTNER"] = str(args.subscriptions)
    # Beat's safety-net sweep every 5 s: a wake-up is never lost for long.
    os.environ.setdefault("WEBHOOK_SWEEP_INTERVAL", "5")
    db = bench_start()
    arrivals = Arrivals()
    server, url = receiver_start(arrivals)
    setup = partners_create()
    subscription_ids = subscribers_create(args.subscriptions, url)
    from consortium.celery import app

    app.control.purge()
    schedule = Path(tempfile.mkdtemp()) / "beat-schedule"
    worker = worker_start(args.concurrency, schedule)
    try:
        # Warm-up: the workers' first connections and imports.
        bench_burst(setup, arrivals, args.subscriptions, 1)
        print(
            f"{args.subscriptions} subscriptions, {args.concurrency} worker processes; "
            "messages/s as a ratio to signed POSTs sent straight (same run)"
        )
        for round_number in range(1, args.rounds + 1):
            baseline = bench_baseline(subscription_ids, url, args.burst, args.concurrency)
            burst = bench_burst(setup, arrivals, args.subscriptions, args.burst)
            print(
                f"round {round_number} burst of {args.burst} entries: {burst:,.0f} messages/s "
                f"delivered, baseline {baseline:,.0f}/s, ratio {burst / baseline:.2f}"
            )
            print(f"round {round_number} database round trip {database_round_trip_ms():.2f} ms")
            steady = bench_steady(setup, arrivals, subscription_ids, args.rate, args.seconds)
            print(
                f"round {round_number} steady {steady['appended_per_s']:.2f} entries/s appended "
                f"(x {args.subscriptions} = "
                f"{steady['appended_per_s'] * args.subscriptions:,.0f} messages/s asked): "
                f"{steady['delivered_per_s']:,.0f} messages/s delivered; commit to delivery "
                f"median {steady['median_ms']:.0f} ms, p99 {steady['p99_ms']:.0f} ms, "
                f"max {steady['max_ms']:.0f} ms"
            )
        print(f"receiver saw {arrivals.requests} requests for {arrivals.count()} message ids")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.shutdown()
        from django.db import connections

        connections.close_all()
        if not args.keep:
            database_reset(db, create=False)


if __name__ == "__main__":
    main()
