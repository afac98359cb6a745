"""A partner's verified sync against the raw download of the same bytes, in one run.

What it measures
----------------
The log is filled with ``--entries`` entries (signed submissions of 10,000, through the
submission service, as bench/ingest_feed.py does) and a checkpoint is signed. A real HTTP
server (gunicorn, ``--workers`` sync workers) serves it from the benchmark's own database;
the client runs in this process, over HTTP on localhost, as a partner's would.

- ``verified``: ``consortium_client.mirror_sync.sync()`` into an empty mirror: the checkpoint, the
  tiles up to its root, every page's leaves against the level-0 tiles, every value against
  its commitment, every submission's envelope signature and signed entries, and one SQLite
  transaction per page (``synchronous=FULL``).
- ``download``: the same requests without verifying or storing anything: every feed page
  (the next cursor read from the end of the body), every level-0 tile, the partial tiles of
  the tree's right edge, and each submission's envelope.

Both use the same page size (``--page-size``) and take turns ``--rounds`` times; the best
of each counts. Goal: the verified sync costs at most twice the download. Rate limits are
off (the benchmark measures the client, not the limits).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium REDIS_URL=... SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver,127.0.0.1 .venv/bin/python bench/client_sync.py \\
    [--entries 1000000] [--page-size 10000] [--rounds 2] [--keep]

CI never runs it (``make bench`` does): at the default million entries the fill alone takes
minutes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client"))

from bench.ingest_feed import (  # noqa: E402 - after the path is set
    bench_start,
    database_reset,
    feed_fill,
    partners_create,
)

GOAL = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_start(workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environment = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": str(workers),
        "WEB_TIMEOUT": "300",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "RATE_LIMIT_ENABLED": "false",
    }
    process = subprocess.Popen(  # noqa: S603 - this virtualenv's gunicorn, fixed arguments
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "consortium.wsgi",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()  # noqa: S310
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("the server did not start")


def download(api: object, size: int, page_size: int) -> int:
    """Fetch what a sync fetches, verifying and storing nothing; return the bytes read."""
    from consortium_client import merkle
    from consortium_client.api import ConsortiumApi

    assert isinstance(api, ConsortiumApi)
    total = len(api.checkpoint())
    for tile in merkle.partial_tiles(size):
        total += len(api.tile(tile.level, tile.index, tile.width))
    for index in range(size // merkle.TILE_WIDTH):
        total += len(api.tile(0, index))
    after, submissions = -1, set()
    while True:
        body = api.feed_page(after, page_size)
        total += len(body)
        # The envelopes a sync fetches: one per submission (their ids, without parsing JSON).
        start = 0
        while (found := body.find(b'"submission":', start)) >= 0:
            end = body.index(b",", found)
            submissions.add(int(body[found + 13 : end]))
            start = end
        tail = body[body.rindex(b'"next":') :]
        after = int(tail.split(b'"')[3])
        if b'"has_more":false' in tail or after >= size - 1:
            break
    for submission in sorted(submissions):
        total += len(api.envelope(submission))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    os.environ["LOG_KEY_FILE"] = str(Path(tempfile.mkdtemp()) / "log.key")
    db = bench_start()
    from audit.selectors import log_size
    from audit.services import checkpoint_sign
    from consortium_client.api import ConsortiumApi
    from consortium_client.mirror_sync import Mirror, sync

    setup = partners_create()
    started = time.perf_counter()
    while log_size() < args.entries:
        feed_fill(setup, min(args.entries + 3, log_size() + 10_000))
    checkpoint = checkpoint_sign()
    print(
        f"database {db.name}; log of {checkpoint.size:,} events filled in "
        f"{time.perf_counter() - started:.1f} s; page size {args.page_size:,}; "
        f"{args.workers} server workers; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    server, url = server_start(args.workers)
    try:
        api = ConsortiumApi(url, setup.reader_key, timeout=300)
        best = {"download": float("inf"), "verified": float("inf")}
        for round_number in range(1, args.rounds + 1):
            began = time.perf_counter()
            read = download(api, checkpoint.size, args.page_size)
            took = time.perf_counter() - began
            best["download"] = min(best["download"], took)
            print(
                f"round {round_number} download: {took:.1f} s, {checkpoint.size / took:,.0f} "
                f"events/s, {read / 2**20:,.0f} MiB"
            )
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "mirror.db"
                began = time.perf_counter()
                result = sync(api, path, page_size=args.page_size)
                took = time.perf_counter() - began
                with Mirror(path) as mirror:
                    assert mirror.tree_size == checkpoint.size
                    assert mirror.counts() == {"active": args.entries}, mirror.counts()
                size = path.stat().st_size
            best["verified"] = min(best["verified"], took)
            print(
                f"round {round_number} verified sync: {took:.1f} s, "
                f"{result.added / took:,.0f} entries/s, mirror {size / 2**20:,.0f} MiB"
            )
        ratio = best["verified"] / best["download"]
        print(
            f"best: verified sync {args.entries / best['verified']:,.0f} entries/s, download "
            f"{checkpoint.size / best['download']:,.0f} events/s; verification costs "
            f"{ratio:.2f}x the download (goal <= {GOAL:g}x): {'met' if ratio <= GOAL else 'MISSED'}"
        )
    finally:
        server.terminate()
        server.wait()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            database_reset(db, create=False)


if __name__ == "__main__":
    main()
