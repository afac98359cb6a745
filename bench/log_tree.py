"""The log's tree as tiles at scale: what it costs submissions, and what it saves proofs.

What it measures, in one run, on a log of ``--events`` events (default 1,000,000)
-----------------------------------------------------------------------------------
0. **Growing the log** to ``--events`` events through the submission service itself
   (``hashes.services.submission_create``: signature check, commitments opened, the
   submission, the log events with the tree extended in their transaction, the entries),
   in signed submissions of 10,000 entries. Reported as events/s.
1. **Submission throughput with the tree kept current against the event log alone**, at
   batches of ``--batches`` entries (default 1, 100 and 1,000): signed version 2 submissions
   through ``submission_create``, each in its own transaction and timed up to and including
   its commit. Submissions take turns between the code as it is and the same code with
   ``audit.services.tree_extend`` replaced by a no-op (in this process only: there is no
   production switch); the median of ``--rounds`` rounds counts. After each submission
   without the tree, its leaves are added to the tiles untimed, so the next submission
   finds the tree in step with the log. Reported as entries/s per batch size, with the
   tree's cost (the goal: under 20%). The two throughputs are each as noisy as the
   machine; the time spent inside ``tree_extend``, as a share of the time with the tree, is
   measured in the same submissions and is the steadier figure of the same cost.
2. **Proof latency from stored tiles against recomputing the same proof from the leaves**
   (read every leaf below the size from the database, hash it, build the proof, as a
   server without tiles would), for inclusion and consistency proofs at the final size; the
   two are checked equal. Medians, and the ratio (the goal: at least 100x).
3. **Checkpoint signing latency**: one submission of one entry, then ``checkpoint_sign()``
   (root from tiles, Ed25519 signature, insert), repeated; median.

Which database: ``<name>_bench`` of ``DATABASE_URL``, dropped and created (bench/ingest_feed.py).
Checkpoint tasks queued by submissions go to an in-memory broker, never to Redis.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/log_tree.py [--events 1000000] \\
    [--batches 1,100,1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import (
    FILL_CHUNK,
    LIST_NAME,
    Setup,
    bench_start,
    database_reset,
    partners_create,
    random_entries,
)

GOAL_TREE_COST = 0.20
GOAL_PROOF_SPEEDUP = 100


def envelopes(setup: Setup, count: int, size: int) -> list[bytes]:
    from consortium_client.payloads import submission_envelope

    return [
        submission_envelope(LIST_NAME, random_entries(size), setup.private_key).body()
        for _ in range(count)
    ]


def grow(setup: Setup, total: int) -> int:
    """Submit signed batches of up to 10,000 entries until the log holds `total` events."""
    from audit.actors import Actor
    from audit.selectors import log_size
    from hashes.services import submission_create

    actor = Actor.for_api_key(setup.api_key, client_ip="127.0.0.1")
    added = 0
    while (missing := total - log_size()) > 0:
        (body,) = envelopes(setup, 1, min(FILL_CHUNK, missing))
        added += len(submission_create(actor=actor, body=body).entries)
    return added


def tree_catch_up() -> None:
    """Extend the tiles to the committed log size, in one transaction under the log head
    lock: the repair after a submission made without the tree."""
    from django.db import connection, transaction

    from audit.models import LogEvent, LogTile
    from audit.tree import tree_extend
    from consortium_client import merkle

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT size FROM audit_loghead WHERE id = 1 FOR UPDATE")
            (size,) = cursor.fetchone()
        last = (
            LogTile.objects.filter(level=0).order_by("-index").values_list("index", "hashes")
        ).first()
        tiled = last[0] * merkle.TILE_WIDTH + len(last[1]) // merkle.HASH_SIZE if last else 0
        leaves = (
            LogEvent.objects.filter(index__gte=tiled, index__lt=size)
            .order_by("index")
            .values_list("leaf", flat=True)
        )
        tree_extend(old_size=tiled, leaves=[bytes(leaf) for leaf in leaves])


def submit_round(setup: Setup, bodies: list[bytes], *, tree: bool) -> tuple[float, float]:
    """Seconds spent submitting `bodies`, one transaction each, commit included, and of
    those the seconds spent in tree_extend."""
    from audit import services
    from audit.actors import Actor
    from hashes.services import submission_create

    actor = Actor.for_api_key(setup.api_key, client_ip="127.0.0.1")
    spent = extending = 0.0
    extend = services.tree_extend

    def timed_extend(**kwargs: Any) -> None:
        nonlocal extending
        started = time.perf_counter()
        extend(**kwargs)
        extending += time.perf_counter() - started

    for body in bodies:
        services.tree_extend = timed_extend if tree else lambda **kwargs: None  # type: ignore[assignment]
        try:
            started = time.perf_counter()
            submission_create(actor=actor, body=body)
            spent += time.perf_counter() - started
        finally:
            services.tree_extend = extend
        if not tree:
            tree_catch_up()
    return spent, extending


def median_ms(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def from_leaves(size: int) -> list[bytes]:
    """Every leaf hash below `size`, read from the database: what a server without tiles
    must do for a proof."""
    from audit.models import LogEvent
    from consortium_client import merkle

    leaves = (
        LogEvent.objects.filter(index__lt=size)
        .order_by("index")
        .values_list("leaf", flat=True)
        .iterator(chunk_size=10_000)
    )
    return [merkle.leaf_hash(bytes(leaf)) for leaf in leaves]


def bench_submissions(setup: Setup, batches: list[int], rounds: int, seconds: float) -> dict:
    """Entries/s with and without the tree for each batch size: the median of `rounds`
    rounds, each of `count` submissions per mode."""
    results = {}
    for batch in batches:
        # About `seconds` of submitting per round and mode, at least 10 submissions: with
        # fewer, one disturbed submission decides a round.
        count = max(10, min(300, int(seconds * 1500 / batch)))
        rates: dict[str, list[float]] = {"tree": [], "no_tree": []}
        shares = []
        submit_round(setup, envelopes(setup, 2, batch), tree=True)  # warm-up
        for _ in range(rounds):
            # The two modes take turns submission by submission (tree, none, none, tree,
            # ...), so that the load of other processes falls on both alike.
            spent = {"tree": 0.0, "no_tree": 0.0}
            extending = 0.0
            for number, body in enumerate(envelopes(setup, 2 * count, batch)):
                mode = "tree" if number % 4 in (0, 3) else "no_tree"
                seconds_spent, seconds_extending = submit_round(setup, [body], tree=mode == "tree")
                spent[mode] += seconds_spent
                extending += seconds_extending
            for mode, seconds_spent in spent.items():
                rates[mode].append(count * batch / seconds_spent)
            shares.append(extending / spent["tree"])
        with_tree = statistics.median(rates["tree"])
        without = statistics.median(rates["no_tree"])
        share = statistics.median(shares)
        results[batch] = {
            "submissions_per_round": count,
            "entries_per_s": {"tree": round(with_tree), "no_tree": round(without)},
            "rounds": {mode: [round(r) for r in values] for mode, values in rates.items()},
            "tree_cost": round(1 - with_tree / without, 3),
            "tree_extend_share": round(share, 4),
            "tree_extend_ms_per_submission": round(share * batch / with_tree * 1000, 3),
        }
        print(
            f"  batch {batch:>5}: {with_tree:>9,.0f} entries/s with the tree, "
            f"{without:>9,.0f} without: the tree costs {(1 - with_tree / without) * 100:.1f}% "
            f"(goal < {GOAL_TREE_COST:.0%}); tree_extend itself takes {share * 100:.1f}% of "
            f"the time with the tree; rounds {results[batch]['rounds']}",
            flush=True,
        )
    return results


def bench_proofs(size: int, proofs: int, recomputed: int) -> dict:
    from audit.tree import tree_consistency_proof, tree_inclusion_proof
    from consortium_client import merkle

    rng = random.Random(7)
    indexes = [rng.randrange(size) for _ in range(proofs)]
    olds = [rng.randrange(1, size) for _ in range(proofs)]
    picks = iter(range(10**9))

    def tiles_inclusion() -> Any:
        return tree_inclusion_proof(index=indexes[next(picks) % proofs], size=size)

    def tiles_consistency() -> Any:
        return tree_consistency_proof(old=olds[next(picks) % proofs], new=size)

    def leaves_inclusion() -> Any:
        index = indexes[next(picks) % proofs]
        return merkle.inclusion_proof(index, size, merkle.leaves_subtree_hash(from_leaves(size)))

    def leaves_consistency() -> Any:
        old = olds[next(picks) % proofs]
        return merkle.consistency_proof(old, size, merkle.leaves_subtree_hash(from_leaves(size)))

    # The two ways give the same proofs.
    hashes = merkle.leaves_subtree_hash(from_leaves(size))
    assert tree_inclusion_proof(index=indexes[0], size=size)[1] == merkle.inclusion_proof(
        indexes[0], size, hashes
    )
    assert tree_consistency_proof(old=olds[0], new=size)[2] == merkle.consistency_proof(
        olds[0], size, hashes
    )
    del hashes
    result = {}
    for name, tiles, leaves in (
        ("inclusion", tiles_inclusion, leaves_inclusion),
        ("consistency", tiles_consistency, leaves_consistency),
    ):
        from_tiles = median_ms(tiles, proofs)
        recomputing = median_ms(leaves, recomputed)
        result[name] = {
            "tiles_ms": round(from_tiles, 3),
            "leaves_ms": round(recomputing, 1),
            "speedup": round(recomputing / from_tiles),
        }
        print(
            f"  {name:<11} proof at size {size:,}: {from_tiles:.3f} ms from tiles, "
            f"{recomputing:,.1f} ms from the leaves: {recomputing / from_tiles:,.0f}x "
            f"(goal >= {GOAL_PROOF_SPEEDUP}x)",
            flush=True,
        )
    return result


def bench_signing(setup: Setup, repeat: int) -> float:
    from audit.actors import Actor
    from audit.services import checkpoint_sign
    from hashes.services import submission_create

    actor = Actor.for_api_key(setup.api_key, client_ip="127.0.0.1")
    bodies = envelopes(setup, repeat, 1)
    times = []
    for body in bodies:
        submission_create(actor=actor, body=body)
        begun = time.perf_counter()
        checkpoint_sign()
        times.append(time.perf_counter() - begun)
    signing = statistics.median(times) * 1000
    print(f"  checkpoint signing: {signing:.2f} ms (median of {repeat})", flush=True)
    return signing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="log size to grow to")
    parser.add_argument(
        "--batches", default="1,100,1000", help="entries per submission, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode and batch size")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="about how long one round submits"
    )
    parser.add_argument("--proofs", type=int, default=200, help="proofs timed from tiles")
    parser.add_argument("--recomputed", type=int, default=3, help="proofs timed from leaves")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    begun = time.perf_counter()

    key_dir = tempfile.mkdtemp()
    os.environ["LOG_KEY_FILE"] = str(Path(key_dir) / "log.key")
    # Checkpoint tasks that submissions queue stay in this process.
    os.environ["CELERY_BROKER_URL"] = "memory://"
    db = bench_start()
    setup = partners_create()
    from audit.selectors import log_size

    print(f"0. growing the log to {args.events:,} events", flush=True)
    started = time.perf_counter()
    added = grow(setup, args.events)
    grow_seconds = time.perf_counter() - started
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) audit_logevent, audit_logtile, hashes_entry")
    print(
        f"  {added:,} events through submission_create in {FILL_CHUNK:,}-entry submissions, "
        f"{grow_seconds:.1f} s ({added / max(grow_seconds, 1e-9):,.0f}/s)",
        flush=True,
    )

    print("1. submissions with the tree kept current against without it", flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    submissions = bench_submissions(setup, batches, args.rounds, args.seconds)

    size = log_size()
    print("2. proofs from stored tiles against recomputing them from the leaves", flush=True)
    proofs = bench_proofs(size, args.proofs, args.recomputed)

    print("3. checkpoint signing", flush=True)
    signing = bench_signing(setup, 20)

    report = {
        "events": size,
        "grow_events_per_s": round(added / max(grow_seconds, 1e-9)),
        "submissions": submissions,
        "proofs": proofs,
        "checkpoint_sign_ms": round(signing, 2),
        "goals": {
            "tree_cost_below": GOAL_TREE_COST,
            "tree_cost_met": all(r["tree_cost"] < GOAL_TREE_COST for r in submissions.values()),
            "proof_speedup_at_least": GOAL_PROOF_SPEEDUP,
            "proof_speedup_met": all(p["speedup"] >= GOAL_PROOF_SPEEDUP for p in proofs.values()),
        },
        "seconds": round(time.perf_counter() - begun),
    }
    print(json.dumps(report, indent=2))
    if not args.keep:
        from django.db import connections

        connections.close_all()
        database_reset(db, create=False)


if __name__ == "__main__":
    main()
