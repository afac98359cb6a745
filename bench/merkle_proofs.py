"""The log's Merkle math in Python: appending, and proofs from tiles against proofs from leaves.

What it measures
----------------
``consortium_client.merkle`` alone, in memory, with no database: what the tree costs the
server before any storage is involved.

- **append**: ``--leaves`` leaves (1,000,000) appended with ``stored_hashes_for_leaf``, the
  hashes kept in a list as a table would keep them, against hashing the same leaves alone
  (``leaf_hash``): the extra work is about one node hash per leaf.
- **proofs**: ``--proofs`` inclusion and consistency proofs at random indexes and sizes of
  that tree, each from a fresh ``tile_subtree_hash`` over the tree's tiles (as the server
  will read stored tiles: at most a few tiles per proof), against the same proof from the
  leaves (``leaves_subtree_hash``, which rehashes every leaf under each subtree it needs);
  each proof is verified. Latencies are medians; the leaf baseline uses ``--baseline`` proofs.

Usage::

    PYTHONPATH=client python bench/merkle_proofs.py [--leaves 1000000] [--proofs 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from consortium_client import merkle


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    size = args.leaves

    leaves = [b'{"v":1,"index":%d,"type":"entry_added"}' % i for i in range(size)]
    start = time.perf_counter()
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    hash_only = time.perf_counter() - start

    stored: list[bytes] = []

    def read(indexes):
        return [stored[i] for i in indexes]

    start = time.perf_counter()
    for index, leaf in enumerate(leaves):
        stored.extend(merkle.stored_hashes_for_leaf(index, merkle.leaf_hash(leaf), read))
    append = time.perf_counter() - start
    print(
        f"append {size:,} leaves: {size / append:,.0f} leaves/s with the tree's stored hashes, "
        f"{size / hash_only:,.0f} leaves/s leaf hashes alone ({len(stored):,} stored hashes)"
    )

    tiles = {(t.level, t.index): merkle.tile_data(t, read) for t in merkle.tiles_for_size(size)}
    root = merkle.tree_hash(size, read)
    reads: list[int] = []

    def from_tiles() -> merkle.SubtreeHash:
        def read_tile(tile: merkle.Tile) -> bytes:
            reads.append(1)
            return tiles[(tile.level, tile.index)]

        return merkle.tile_subtree_hash(read_tile)

    from_leaves = merkle.leaves_subtree_hash(hashes)
    cases = []
    for _ in range(args.proofs):
        old_size = rng.randrange(1, size)
        cases.append((rng.randrange(size), old_size))
    roots = {old: merkle.tree_hash(old, read) for _, old in cases}

    provers = {
        "inclusion": lambda source, index, old: merkle.inclusion_proof(index, size, source),
        "consistency": lambda source, index, old: merkle.consistency_proof(old, size, source),
    }
    verifiers = {
        "inclusion": lambda proof, index, old: merkle.inclusion_verify(
            index, size, hashes[index], proof, root
        ),
        "consistency": lambda proof, index, old: merkle.consistency_verify(
            old, size, roots[old], root, proof
        ),
    }
    for kind, prove in provers.items():
        tiled, leafed, verified = [], [], []
        reads.clear()
        for number, (index, old) in enumerate(cases):
            start = time.perf_counter()
            proof = prove(from_tiles(), index, old)
            tiled.append(time.perf_counter() - start)
            start = time.perf_counter()
            verifiers[kind](proof, index, old)
            verified.append(time.perf_counter() - start)
            if number < args.baseline:
                start = time.perf_counter()
                assert prove(from_leaves, index, old) == proof
                leafed.append(time.perf_counter() - start)
        print(
            f"{kind} proof at size {size:,}: {_median_ms(tiled):.3f} ms from tiles "
            f"({len(reads) / len(cases):.1f} tiles read per proof), "
            f"{_median_ms(leafed):.1f} ms from the leaves: "
            f"{statistics.median(leafed) / statistics.median(tiled):,.0f}x faster; "
            f"verification {_median_ms(verified):.3f} ms"
        )


if __name__ == "__main__":
    main()
