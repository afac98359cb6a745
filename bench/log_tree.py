"""The log's tree as tiles: what it costs appends, and what it saves proofs.

What it measures
----------------
1. **Append throughput with the tree kept current against the event log alone**, in the same
   run: rounds of `log_append` (batches of ``--batch`` events, each in its own transaction)
   alternate between the code as it is (tiles extended in the transaction) and the same
   call with tree extension switched off. The rounds without the tree are rolled back (they
   would leave the tiles out of step); both kinds are timed up to, not including, the
   commit or rollback, so they compare the same work. Reported in events/s, with the ratio.
2. **Proof latency from stored tiles against recomputing the same proof from the leaves**
   (read every leaf below the size, hash it, build the proof), for inclusion and
   consistency proofs at the final size; the proofs are checked equal. Medians and ratio.
3. **Checkpoint signing latency**: one event appended, then `checkpoint_sign()` (root from
   tiles, Ed25519 signature, insert), repeated.

The log is first grown to ``--events`` events (with the tree), so the figures are at that size.

Which database: ``<name>_bench`` of ``DATABASE_URL``, dropped and created (bench/ingest_feed.py).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/log_tree.py [--events 20000] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import bench_start


class Rollback(Exception):
    pass


def drafts(count: int) -> list[Any]:
    from audit.services import EventDraft

    # About the size of an entry_added leaf.
    return [
        EventDraft("signing_key_registered", {"n": secrets.token_hex(16), "pad": "x" * 300})
        for _ in range(count)
    ]


def grow(total: int, chunk: int = 2000) -> None:
    from django.db import transaction

    from audit.selectors import log_size
    from audit.services import log_append

    while (size := log_size()) < total:
        with transaction.atomic():
            log_append(drafts=drafts(min(chunk, total - size)))


def append_round(*, ops: int, batch: int, tree: bool) -> float:
    """Seconds spent in log_append for `ops` transactions of `batch` events each."""
    from django.db import transaction

    from audit import services

    spent = 0.0
    extend = services.tree_extend
    if not tree:
        services.tree_extend = lambda **kwargs: None  # type: ignore[assignment]
    try:
        for _ in range(ops):
            work = drafts(batch)
            try:
                with transaction.atomic():
                    started = time.perf_counter()
                    services.log_append(drafts=work)
                    spent += time.perf_counter() - started
                    if not tree:
                        raise Rollback
            except Rollback:
                pass
    finally:
        services.tree_extend = extend
    return spent


def median_ms(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def from_leaves(size: int) -> list[bytes]:
    from audit.models import LogEvent
    from consortium_client import merkle

    leaves = (
        LogEvent.objects.filter(index__lt=size)
        .order_by("index")
        .values_list("leaf", flat=True)
        .iterator(chunk_size=5000)
    )
    return [merkle.leaf_hash(bytes(leaf)) for leaf in leaves]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="log size to grow to")
    parser.add_argument("--batch", type=int, default=1, help="events per append transaction")
    parser.add_argument("--ops", type=int, default=300, help="transactions per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proofs", type=int, default=200, help="proofs timed from tiles")
    parser.add_argument("--recomputed", type=int, default=3, help="proofs timed from leaves")
    args = parser.parse_args()

    key_dir = tempfile.mkdtemp()
    os.environ["LOG_KEY_FILE"] = str(Path(key_dir) / "log.key")
    bench_start()
    from audit.selectors import log_size
    from audit.services import checkpoint_sign
    from audit.tree import tree_consistency_proof, tree_inclusion_proof
    from consortium_client import merkle

    started = time.perf_counter()
    grow(args.events)
    grow_seconds = time.perf_counter() - started

    rates: dict[str, list[float]] = {"tree": [], "no_tree": []}
    for _ in range(args.rounds):
        for mode in ("tree", "no_tree"):
            spent = append_round(ops=args.ops, batch=args.batch, tree=mode == "tree")
            rates[mode].append(args.ops * args.batch / spent)
    with_tree = statistics.median(rates["tree"])
    without = statistics.median(rates["no_tree"])

    size = log_size()
    rng = random.Random(7)
    indexes = [rng.randrange(size) for _ in range(args.proofs)]
    olds = [rng.randrange(1, size) for _ in range(args.proofs)]
    picks = iter(range(10**9))

    def tiles_inclusion() -> Any:
        return tree_inclusion_proof(index=indexes[next(picks) % len(indexes)], size=size)

    def tiles_consistency() -> Any:
        return tree_consistency_proof(old=olds[next(picks) % len(olds)], new=size)

    def leaves_inclusion() -> Any:
        index = indexes[next(picks) % len(indexes)]
        hashes = from_leaves(size)
        return merkle.inclusion_proof(index, size, merkle.leaves_subtree_hash(hashes))

    def leaves_consistency() -> Any:
        old = olds[next(picks) % len(olds)]
        hashes = from_leaves(size)
        return merkle.consistency_proof(old, size, merkle.leaves_subtree_hash(hashes))

    # The two ways give the same proof.
    hashes = from_leaves(size)
    assert tree_inclusion_proof(index=indexes[0], size=size)[1] == merkle.inclusion_proof(
        indexes[0], size, merkle.leaves_subtree_hash(hashes)
    )
    del hashes
    inclusion_tiles = median_ms(tiles_inclusion, args.proofs)
    consistency_tiles = median_ms(tiles_consistency, args.proofs)
    inclusion_leaves = median_ms(leaves_inclusion, args.recomputed)
    consistency_leaves = median_ms(leaves_consistency, args.recomputed)

    sign_times = []
    for _ in range(20):
        grow(log_size() + 1)
        begun = time.perf_counter()
        checkpoint_sign()
        sign_times.append(time.perf_counter() - begun)
    signing = statistics.median(sign_times) * 1000

    report = {
        "events": size,
        "grow_seconds": round(grow_seconds, 1),
        "append_batch": args.batch,
        "append_events_per_s": {"tree": round(with_tree), "no_tree": round(without)},
        "append_rounds": {mode: [round(r) for r in values] for mode, values in rates.items()},
        "tree_cost_of_append_throughput": f"{(1 - with_tree / without) * 100:.1f}%",
        "inclusion_ms": {
            "tiles": round(inclusion_tiles, 3),
            "leaves": round(inclusion_leaves, 1),
            "speedup": round(inclusion_leaves / inclusion_tiles),
        },
        "consistency_ms": {
            "tiles": round(consistency_tiles, 3),
            "leaves": round(consistency_leaves, 1),
            "speedup": round(consistency_leaves / consistency_tiles),
        },
        "checkpoint_sign_ms": round(signing, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
