"""PDQ match index: our exact index against FAISS, on the same database and queries in one run.

What it measures
----------------
For each database size: random 256-bit PDQ values, and ``--queries`` random query values each
with ``--planted`` near-duplicates written into the database at random rows, 0 to 31 bits
flipped (uniformly, so matches sit all the way out to the edge of the default distance).
The indexes are built in turn (one at a time, so that their memory is measured apart):

- ``consortium_client.index.HammingIndex(256)`` (searched with ``search(query, 31)``), which
  runs on one thread;
- FAISS ``IndexBinaryFlat`` with ``range_search(query, 32)``: FAISS keeps distances strictly
  below the radius, so 32 returns distances <= 31. It compares every row: the exact answer.
  Measured on one OpenMP thread (per core, like ours, and steady when other processes load
  the machine) and again on all of FAISS's threads;
- FAISS ``IndexBinaryMultiHash(256, 16, 16)``: 16 tables of 16 bits, with ``nflip = 1`` so
  that by pigeonhole (31 // 16 = 1) it too finds every value within 31 bits; one thread.

Data sets (``--data``): ``uniform`` random values; ``clustered`` values crowded around a few
hundred centres (templated or featureless images); ``variants`` the rows image entries bring,
each entry's value and its 20 submitted variants (simulated as random neighbours of the
entry's value, ``VARIANT_FLIPS`` bits away; sizes then count stored rows, 21 per entry).

For each: build time (adding every row, from the packed array in memory), memory (resident
set growth across the build; ours also prints what its ``memory_breakdown`` counts), latency
of single queries (one per call, median and p99 over all queries after a warm-up) and recall
against the planted set. Each index's answers are also compared, as sets of (id, distance), to
``IndexBinaryFlat``'s, which are exact. Then our index takes 100,000 adds and 10,000
removals in batches of 100, as a matcher following the log would, and its latency is measured
again.

Usage::

    PYTHONPATH=client python bench/match_index.py [--sizes 1000000,10000000] [--queries 200] \\
        [--data uniform,clustered,variants] [--flat-only]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import faiss
import numpy as np
import numpy.typing as npt

from consortium_client.index import HammingIndex

BITS = 256
RADIUS = 31
Matches = set[tuple[int, int]]
# Changes applied to our index after its searches, as a feed consumer would apply them.
ADDS = 100_000
REMOVALS = 10_000
CHANGE_BATCH = 100
# The clustered data set: templated or featureless images (screenshots of one app, flat skies)
# give PDQ values crowded around a few hundred centres. Each value is 0 to CLUSTER_SPREAD bits
# from its centre, so a query near a centre shares chunk keys with thousands of rows that are
# mostly beyond the radius: the multi-index gathers them all before verifying.
CLUSTERS = 300
CLUSTER_SPREAD = 16
# The variants data set: stored rows as image entries bring them, each entry's own value and
# the 20 variant values its client submits beside it (consortium_client.variants: crops and
# small rotations). They are simulated, as independent random neighbours of the entry's
# value at VARIANT_FLIPS bits: a 5-10% crop or a 3-6 degree rotation moves a PDQ hash beyond
# the default distance of 31 on nearly every photograph (docs/matching.md, the robustness
# table: PDQ alone matches none of those edits), yet nearer than an unrelated picture (128).
VARIANTS_PER_ENTRY = 20
VARIANT_FLIPS = (32, 96)


@dataclass
class Result:
    name: str
    build_seconds: float
    memory_bytes: int
    latencies: list[float]
    answers: list[Matches]

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def resident_bytes() -> int:
    """Resident set size from /proc (Linux), the measure of what an index really holds.

    Free heap memory is handed back to the system first: otherwise an index built after another
    one was freed reuses those pages and seems to cost nothing.
    """
    gc.collect()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bits_flip(
    rng: np.random.Generator, values: npt.NDArray[np.uint8], most: int
) -> npt.NDArray[np.uint8]:
    """Each row of `values` with 0 to `most` distinct random bits flipped (uniformly many)."""
    flipped = np.unpackbits(values, axis=1)
    counts = rng.integers(0, most + 1, size=len(values))
    # A random permutation per row, of which the first `count` positions are flipped.
    positions = np.argsort(rng.random((len(values), BITS)), axis=1)
    chosen = np.arange(BITS)[None, :] < counts[:, None]
    rows = np.broadcast_to(np.arange(len(values))[:, None], positions.shape)
    flipped[rows[chosen], positions[chosen]] ^= 1
    return np.packbits(flipped, axis=1)


def clustered_make(
    rng: np.random.Generator, count: int, centres: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """`count` values around `centres`, each 0 to CLUSTER_SPREAD bits from its centre."""
    values = np.empty((count, BITS // 8), dtype=np.uint8)
    block = 1 << 18  # bounds the (block, 256) temporaries of bits_flip
    for start in range(0, count, block):
        picked = centres[rng.integers(0, len(centres), size=min(block, count - start))]
        values[start : start + block] = bits_flip(rng, picked, CLUSTER_SPREAD)
    return values


def bits_flip_between(
    rng: np.random.Generator, values: npt.NDArray[np.uint8], low: int, high: int
) -> npt.NDArray[np.uint8]:
    """Each row of `values` with `low` to `high` distinct random bits flipped (uniformly many),
    in blocks that bound the (block, 256) temporaries."""
    flipped = np.empty_like(values)
    block = 1 << 18
    for start in range(0, len(values), block):
        part = values[start : start + block]
        bits = np.unpackbits(part, axis=1)
        counts = rng.integers(low, high + 1, size=len(part))
        positions = np.argsort(rng.random((len(part), BITS)), axis=1)
        chosen = np.arange(BITS)[None, :] < counts[:, None]
        rows = np.broadcast_to(np.arange(len(part))[:, None], positions.shape)
        bits[rows[chosen], positions[chosen]] ^= 1
        flipped[start : start + block] = np.packbits(bits, axis=1)
    return flipped


def variants_make(
    rng: np.random.Generator, entries: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """VARIANTS_PER_ENTRY rows per entry, each VARIANT_FLIPS bits from its entry's value."""
    rows = np.repeat(entries, VARIANTS_PER_ENTRY, axis=0)
    return bits_flip_between(rng, rows, *VARIANT_FLIPS)


def database_make(
    size: int, queries: int, planted: int, seed: int, data: str = "uniform"
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], list[Matches]]:
    """Random values (or values around CLUSTERS random centres, or entries with their
    variants), and queries (random, or near a centre) each planted `planted` times at
    0..RADIUS bits. With variants, `size` counts stored rows (an entry and its variants are
    1 + VARIANTS_PER_ENTRY rows), the entries' values come first, and queries are planted
    near entries, whose variants are made from the planted values."""
    rng = np.random.default_rng(seed)
    entries = size // (1 + VARIANTS_PER_ENTRY) if data == "variants" else size
    if data == "clustered":
        centres = rng.integers(0, 256, size=(CLUSTERS, BITS // 8), dtype=np.uint8)
        database = clustered_make(rng, size, centres)
        query_values = clustered_make(rng, queries, centres)
    else:
        database = rng.integers(0, 256, size=(entries, BITS // 8), dtype=np.uint8)
        query_values = rng.integers(0, 256, size=(queries, BITS // 8), dtype=np.uint8)
    rows = rng.choice(entries, size=(queries, planted), replace=False)
    truth: list[Matches] = []
    for query, query_rows in zip(query_values, rows, strict=True):
        expected = set()
        for row in query_rows:
            flips = int(rng.integers(0, RADIUS + 1))
            value = query.copy()
            for bit in rng.choice(BITS, size=flips, replace=False):
                value[bit // 8] ^= np.uint8(1 << (7 - bit % 8))
            database[row] = value
            expected.add((int(row), flips))
        truth.append(expected)
    if data == "variants":
        database = np.concatenate([database, variants_make(rng, database)])
    return database, query_values, truth


def measure(
    name: str,
    build: Callable[[], object],
    search: Callable[[object, npt.NDArray[np.uint8]], Matches],
    queries: npt.NDArray[np.uint8],
    after: Callable[[object], None] | None = None,
    threads: int = 1,
) -> Result:
    faiss.omp_set_num_threads(threads)
    before = resident_bytes()
    started = time.perf_counter()
    index = build()
    build_seconds = time.perf_counter() - started
    held = resident_bytes() - before
    for query in queries[: min(10, len(queries))]:
        search(index, query)
    latencies, answers = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(search(index, query))
        latencies.append(time.perf_counter() - started)
    if after:
        after(index)
    del index
    gc.collect()
    return Result(name, build_seconds, held, latencies, answers)


def ours_build(database: npt.NDArray[np.uint8]) -> HammingIndex:
    index = HammingIndex(BITS)
    index.add(np.arange(len(database), dtype=np.int64), database)
    return index


def ours_changes(
    breakdown: dict[str, int],
    notes: list[str],
    queries: npt.NDArray[np.uint8],
    seed: int,
    index: object,
) -> None:
    """Record the memory breakdown, then time adds and removals as a log feed would send them."""
    assert isinstance(index, HammingIndex)
    breakdown.update(index.memory_breakdown())
    searched = len(queries) + min(10, len(queries))  # the warm-up queries count too
    notes.append(
        "ours, rows verified or scanned per query (mean):"
        f" {index.candidates_examined / searched:,.0f}"
    )
    rng = np.random.default_rng(seed + 1)
    first = len(index)
    added = rng.integers(0, 256, size=(ADDS, BITS // 8), dtype=np.uint8)
    started = time.perf_counter()
    for offset in range(0, ADDS, CHANGE_BATCH):
        ids = np.arange(first + offset, first + offset + CHANGE_BATCH, dtype=np.int64)
        index.add(ids, added[offset : offset + CHANGE_BATCH])
    add_seconds = time.perf_counter() - started
    doomed = rng.choice(first, size=REMOVALS, replace=False)
    started = time.perf_counter()
    for offset in range(0, REMOVALS, CHANGE_BATCH):
        index.remove(doomed[offset : offset + CHANGE_BATCH])
    remove_seconds = time.perf_counter() - started
    latencies = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, RADIUS)
        latencies.append(time.perf_counter() - started)
    notes.append(
        f"ours, changes after the searches: {ADDS:,} adds in batches of {CHANGE_BATCH}:"
        f" {add_seconds:.2f} s ({add_seconds / ADDS * 1e6:.0f} us/entry amortised);"
        f" {REMOVALS:,} removals in batches of {CHANGE_BATCH}: {remove_seconds:.2f} s;"
        f" segment rows now {index.segment_sizes()[:-1]} + buffer {index.segment_sizes()[-1]};"
        f" median latency then {statistics.median(latencies) * 1e3:.3f} ms"
    )


def ours_search(index: object, query: npt.NDArray[np.uint8]) -> Matches:
    assert isinstance(index, HammingIndex)
    return set(index.search(query, RADIUS))


def faiss_search(index: object, query: npt.NDArray[np.uint8]) -> Matches:
    # Strictly below the radius: 32 keeps distances up to 31.
    _, distances, labels = index.range_search(query[None, :], RADIUS + 1)  # type: ignore[attr-defined]
    return {(int(i), int(d)) for i, d in zip(labels, distances, strict=True)}


def flat_build(database: npt.NDArray[np.uint8]) -> object:
    index = faiss.IndexBinaryFlat(BITS)
    index.add(database)
    return index


def multihash_build(database: npt.NDArray[np.uint8]) -> object:
    index = faiss.IndexBinaryMultiHash(BITS, 16, 16)
    index.nflip = RADIUS // 16
    index.add(database)
    return index


def recall(result: Result, truth: list[Matches]) -> float:
    found = sum(
        len(answer & expected) for answer, expected in zip(result.answers, truth, strict=True)
    )
    return found / sum(len(expected) for expected in truth)


def report(
    size: int, data: str, results: list[Result], truth: list[Matches], breakdown: dict[str, int]
) -> None:
    ours, flat = results[0], results[1]
    described = data
    if data == "variants":
        entries = size // (1 + VARIANTS_PER_ENTRY)
        described = (
            f"variants: {entries:,} entries, each with {VARIANTS_PER_ENTRY} variants"
            f" {VARIANT_FLIPS[0]}-{VARIANT_FLIPS[1]} bits away"
        )
    print(
        f"\n{size:,} PDQ values ({described}), {len(truth)} queries,"
        f" {sum(map(len, truth))} planted matches (0..{RADIUS} bits), radius {RADIUS} inclusive"
    )
    print(
        f"{'index':<48}{'build s':>9}{'memory MiB':>12}{'median ms':>11}{'p99 ms':>9}"
        f"{'recall':>8}  same as flat"
    )
    for result in results:
        same = all(a == b for a, b in zip(result.answers, flat.answers, strict=True))
        print(
            f"{result.name:<48}{result.build_seconds:>9.2f}{result.memory_bytes / 2**20:>12.0f}"
            f"{result.percentile(0.5) * 1e3:>11.3f}{result.percentile(0.99) * 1e3:>9.3f}"
            f"{recall(result, truth):>8.3f}  {'yes' if same else 'NO'}"
        )
    for other in results[1:]:
        median = other.percentile(0.5) / ours.percentile(0.5)
        p99 = other.percentile(0.99) / ours.percentile(0.99)
        print(
            f"ours vs {other.name}: speed-up median {median:.1f}x, p99 {p99:.1f}x;"
            f" memory {ours.memory_bytes / other.memory_bytes:.2f}x"
        )
    raw = size * BITS // 8
    counted = sum(breakdown.values())
    parts = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in breakdown.items())
    print(
        f"ours memory_bytes {counted / 2**20:.0f} MiB ({parts}) ="
        f" {counted / raw:.2f}x the raw hashes ({raw / 2**20:.0f} MiB);"
        f" {(counted - breakdown['tables']) / raw:.2f}x without the offset tables,"
        f" {(counted - breakdown['tables'] - breakdown['postings']) / raw:.2f}x without"
        " tables and postings"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument(
        "--data",
        default="uniform,clustered,variants",
        help="comma-separated: uniform, clustered, variants",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--planted", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--flat-only", action="store_true", help="compare with FAISS flat on one thread only"
    )
    arguments = parser.parse_args()
    all_threads = faiss.omp_get_max_threads()
    for size in (int(s) for s in arguments.sizes.split(",")):
        for data in arguments.data.split(","):
            database, queries, truth = database_make(
                size, arguments.queries, arguments.planted, arguments.seed, data
            )
            breakdown: dict[str, int] = {}
            notes: list[str] = []
            results = [
                measure(
                    "consortium HammingIndex",
                    partial(ours_build, database),
                    ours_search,
                    queries,
                    partial(ours_changes, breakdown, notes, queries, arguments.seed),
                ),
                measure(
                    "faiss IndexBinaryFlat, 1 thread",
                    partial(flat_build, database),
                    faiss_search,
                    queries,
                ),
            ]
            if not arguments.flat_only:
                results.append(
                    measure(
                        f"faiss IndexBinaryFlat, {all_threads} threads",
                        partial(flat_build, database),
                        faiss_search,
                        queries,
                        threads=all_threads,
                    )
                )
                results.append(
                    measure(
                        "faiss IndexBinaryMultiHash(256,16,16) nflip=1",
                        partial(multihash_build, database),
                        faiss_search,
                        queries,
                    )
                )
            report(len(database), data, results, truth, breakdown)
            print(*notes, sep="\n")
            del database
            gc.collect()


if __name__ == "__main__":
    main()
