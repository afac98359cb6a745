"""The match index returns exactly what a brute-force scan returns, through adds and removals."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium_client import index
from consortium_client.hashvalues import ALGORITHMS, hamming_distance
from consortium_client.index import ExactIndex, HammingIndex, index_for

RADIUS = {64: 10, 256: 31}


def brute_force(live: dict[int, str], query: str, radius: int) -> list[tuple[int, int]]:
    """The reference answer, computed on Python integers rather than numpy words."""
    found = [(i, hamming_distance(value, query)) for i, value in live.items()]
    return sorted(((i, d) for i, d in found if d <= radius), key=lambda m: (m[1], m[0]))


def flip(value: str, bits: list[int]) -> str:
    width = len(value) * 4
    number = int(value, 16)
    for bit in set(bits):
        number ^= 1 << (width - 1 - bit)
    return f"{number:0{len(value)}x}"


def random_hash(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


@dataclass(frozen=True)
class Layout:
    """A forced table shape: `chunks` equal chunks, each keyed on its first `key_bits` bits."""

    chunks: int
    key_bits: int

    def chunk_width(self, bits: int) -> int:
        return bits // self.chunks

    def spread(self, bits: int, count: int, rng: random.Random) -> list[int]:
        """`count` bit positions dealt round-robin over the chunks' key bits.

        A value this far from a query differs in every chunk's key by about count / chunks
        bits, so that the one chunk that finds it differs by exactly radius // chunks bits: the
        edge of the per-chunk enumeration.
        """
        width = self.chunk_width(bits)
        key_bits = min(width, self.key_bits)
        positions: list[int] = []
        for n in range(count):
            chunk = (n + rng.randrange(self.chunks)) % self.chunks if n >= self.chunks else n
            free = [
                chunk * width + b for b in range(key_bits) if chunk * width + b not in positions
            ]
            positions.append(rng.choice(free) if free else rng.randrange(bits))
        return positions


@dataclass(frozen=True)
class History:
    bits: int
    layout: Layout | None
    operations: list[tuple[str, object]]
    queries: list[str]


@contextmanager
def small_index_parts(
    layout: Layout | None, crowd_scan: float = float("inf"), bitmap: float = 64.0
) -> Iterator[None]:
    """Shrink the buffer so that a few dozen entries exercise segments and merges.

    With `layout`, every segment is searched through multi-index tables of that shape, as
    large segments are (the tables are priced at nothing, so a segment is never scanned
    whole); a query then scans its segment instead when its keys hold more than `crowd_scan`
    times a scan's worth of rows (infinity: never; 0: always; 1: whenever the cost model says
    a scan is cheaper, at the scan's real cost). Without `layout`, the cost model picks whole
    segment scans for segments this small. `bitmap` is the slots per candidate up to which
    candidates are made unique through a bitmap rather than a sort (0: never; infinity:
    always).
    """
    layout_choose = index._layout_choose

    def layout_forced(bits: int, radius: int, rows: int) -> index._Layout | None:
        if layout is None:
            return layout_choose(bits, radius, rows)
        width = layout.chunk_width(bits)
        starts = tuple(c * width for c in range(layout.chunks))
        return index._Layout(starts, min(width, layout.key_bits))

    table_cost = index._Layout.table_cost if layout is None else (lambda *_: 0.0)
    with (
        mock.patch.object(index, "_BUFFER_ROWS", 8),
        mock.patch.object(index, "_layout_choose", layout_forced),
        mock.patch.object(index._Layout, "table_cost", table_cost),
        mock.patch.object(index, "_CROWD_SCAN", crowd_scan),
        mock.patch.object(index, "_BITMAP_PER_VALUE", bitmap),
    ):
        yield


@st.composite
def histories(draw: st.DrawFn) -> History:
    """A width, a table shape, an interleaving of adds and removals, and queries.

    Added values are random or planted near an earlier value or a query: 0 to radius + 2 bits
    flipped at random, or radius - 1 to radius + 1 bits spread over the chunks, so that answers
    are not empty and matches sit at the edge of what each chunk must enumerate.
    """
    bits = draw(st.sampled_from([64, 256]))
    radius = RADIUS[bits]
    layout = draw(
        st.none() | st.builds(Layout, chunks=st.integers(1, 16), key_bits=st.integers(1, 12))
    )
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    queries = [random_hash(rng, bits) for _ in range(draw(st.integers(1, 4)))]
    values: list[str] = list(queries)
    operations: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()) or not operations:
            batch = []
            for _ in range(draw(st.integers(1, 30))):
                near = rng.choice(values)
                planting = rng.random()
                if planting < 0.4 and layout is not None:
                    value = flip(
                        near, layout.spread(bits, rng.randint(radius - 1, radius + 1), rng)
                    )
                elif planting < 0.8:
                    value = flip(near, rng.sample(range(bits), rng.randint(0, radius + 2)))
                else:
                    value = random_hash(rng, bits)
                values.append(value)
                batch.append(value)
            operations.append(("add", batch))
        else:
            operations.append(("remove", draw(st.floats(0.0, 1.0))))
    return History(bits, layout, operations, queries)


def replay(
    hamming: HammingIndex, operations: list[tuple[str, object]], rng: random.Random
) -> dict[int, str]:
    """Apply `operations` to the index and to a dict; return the dict of live entries."""
    live: dict[int, str] = {}
    removed: list[int] = []
    next_id = 0
    for kind, argument in operations:
        if kind == "add":
            assert isinstance(argument, list)
            ids = []
            for _ in argument:
                # Now and then an id that was removed comes back with a new value.
                if removed and rng.random() < 0.2:
                    ids.append(removed.pop())
                else:
                    ids.append(next_id)
                    next_id += 1
            hamming.add(ids, argument)
            live.update(zip(ids, argument, strict=True))
        else:
            assert isinstance(argument, float)
            doomed = [i for i in live if rng.random() < argument]
            assert hamming.remove(doomed) == len(doomed)
            for i in doomed:
                del live[i]
            removed.extend(doomed)
    return live


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), seed=st.integers(0, 2**32 - 1))
def test_search_matches_brute_force_after_adds_and_removes(history: History, seed: int) -> None:
    with small_index_parts(history.layout):
        hamming = HammingIndex(history.bits)
        live = replay(hamming, history.operations, random.Random(seed))
        assert len(hamming) == len(live)
        for radius in range(RADIUS[history.bits] + 1):
            expected = [brute_force(live, q, radius) for q in history.queries]
            assert hamming.search_batch(history.queries, radius) == expected
        assert hamming.search(history.queries[0], RADIUS[history.bits]) == expected[0]


@pytest.mark.parametrize(("bits", "entries"), [(256, 40_000), (64, 150_000)])
def test_search_matches_brute_force_with_production_layout(bits: int, entries: int) -> None:
    """Sizes at which the default cost model chooses multi-index tables, with planted matches."""
    rng = np.random.default_rng(bits)
    raw = rng.integers(0, 256, size=(entries, bits // 8), dtype=np.uint8)
    queries = raw[:50].copy()
    planted = raw[50:100]
    for row in range(50):
        planted[row] = queries[row]
        for bit in rng.choice(bits, size=rng.integers(0, RADIUS[bits] + 3), replace=False):
            planted[row, bit // 8] ^= np.uint8(1 << (7 - bit % 8))
    hamming = HammingIndex(bits)
    hamming.add(np.arange(entries - 5_000), raw[: entries - 5_000])
    for first in range(entries - 5_000, entries, 500):
        hamming.add(np.arange(first, first + 500), raw[first : first + 500])
    removed = np.arange(0, entries, 7)
    hamming.remove(removed)
    assert hamming.memory_breakdown()["tables"] > 0
    keep = np.ones(entries, dtype=bool)
    keep[removed] = False
    distances = np.bitwise_count(raw[None, :, :] ^ queries[:, None, :]).sum(axis=2)
    for radius in range(RADIUS[bits] + 1):
        expected = []
        for row in range(len(queries)):
            near = np.flatnonzero((distances[row] <= radius) & keep)
            expected.append(sorted(((int(i), int(distances[row, i])) for i in near), key=_order))
        assert hamming.search_batch(queries, radius) == expected
    assert sum(len(m) for m in hamming.search_batch(queries, RADIUS[bits])) > 40


def _order(match: tuple[int, int]) -> tuple[int, int]:
    return match[1], match[0]


@pytest.mark.parametrize("bits", [64, 256])
def test_search_beyond_default_radius_stays_exact(bits: int) -> None:
    rng = random.Random(bits)
    live = {i: random_hash(rng, bits) for i in range(3_000)}
    hamming = HammingIndex(bits)
    hamming.add(list(live), list(live.values()))
    query = flip(live[5], list(range(RADIUS[bits] * 2)))
    radius = bits // 2 - 4
    assert hamming.search(query, radius) == brute_force(live, query, radius)
    assert hamming.search(query, bits) == brute_force(live, query, bits)


@given(seed=st.integers(0, 2**32 - 1), key_bits=st.integers(1, 24))
def test_chunk_keys_are_the_hash_bits_at_their_offsets(seed: int, key_bits: int) -> None:
    value = random_hash(random.Random(seed), 256)
    starts = range(256 - key_bits + 1)
    keys = index._keys_extract(index.hashes_pack([value], 256), np.array(starts), key_bits)[0]
    number = int(value, 16)
    expected = [(number >> (256 - start - key_bits)) & ((1 << key_bits) - 1) for start in starts]
    assert keys.tolist() == expected


def test_search_is_inclusive_at_the_radius() -> None:
    value = "ab" * 32
    hamming = HammingIndex(256)
    hamming.add([1, 2], [flip(value, list(range(31))), flip(value, list(range(32)))])
    assert hamming.search(value, 31) == [(1, 31)]
    assert hamming.search(value, 30) == []


def test_search_orders_by_distance_then_id() -> None:
    value = "0f" * 8
    hamming = HammingIndex(64)
    hamming.add([9, 3, 5, 4], [flip(value, [1]), flip(value, [2, 3]), flip(value, [0]), value])
    assert hamming.search(value, 10) == [(4, 0), (5, 1), (9, 1), (3, 2)]


def test_add_refuses_an_id_already_live_and_changes_nothing() -> None:
    hamming = HammingIndex(64)
    hamming.add([1], ["00" * 8])
    with pytest.raises(ValueError, match="already in the index"):
        hamming.add([2, 1], ["11" * 8, "22" * 8])
    with pytest.raises(ValueError, match="twice"):
        hamming.add([3, 3], ["11" * 8, "22" * 8])
    assert len(hamming) == 1
    assert hamming.search("11" * 8, 0) == []


def test_removed_id_can_be_added_again_with_a_new_value() -> None:
    hamming = HammingIndex(64)
    hamming.add([1], ["00" * 8])
    assert hamming.remove([1, 1, 99]) == 1
    assert hamming.remove([1]) == 0
    hamming.add([1], ["ff" * 8])
    assert len(hamming) == 1
    assert hamming.search("00" * 8, 10) == []
    assert hamming.search("ff" * 8, 0) == [(1, 0)]


def test_small_adds_keep_segments_geometric() -> None:
    rng = random.Random(0)
    with mock.patch.object(index, "_BUFFER_ROWS", 16):
        hamming = HammingIndex(256)
        for first in range(0, 5_000, 7):
            ids = list(range(first, min(first + 7, 5_000)))
            hamming.add(ids, [random_hash(rng, 256) for _ in ids])
    *segments, buffered = hamming.segment_sizes()
    assert sum(segments) + buffered == len(hamming) == 5_000
    assert buffered < 16
    assert all(older > index._MERGE_RATIO * newer for older, newer in pairwise(segments))
    assert len(segments) <= 10


def test_bulk_add_builds_one_segment() -> None:
    rng = np.random.default_rng(0)
    hamming = HammingIndex(256)
    hamming.add(np.arange(50_000), rng.integers(0, 256, size=(50_000, 32), dtype=np.uint8))
    assert hamming.segment_sizes() == [50_000, 0]


def test_removing_most_of_a_segment_compacts_it() -> None:
    rng = np.random.default_rng(0)
    hamming = HammingIndex(64)
    hamming.add(np.arange(20_000), rng.integers(0, 256, size=(20_000, 8), dtype=np.uint8))
    hamming.remove(range(15_000))
    assert hamming.segment_sizes() == [5_000, 0]
    assert len(hamming) == 5_000


def test_memory_bytes_counts_hashes_ids_tables_and_postings() -> None:
    rng = np.random.default_rng(0)
    hamming = HammingIndex(256)
    hamming.add(np.arange(100_000), rng.integers(0, 256, size=(100_000, 32), dtype=np.uint8))
    parts = hamming.memory_breakdown()
    assert hamming.memory_bytes() == sum(parts.values())
    assert parts["hashes"] >= 100_000 * 32
    assert parts["tables"] > 0
    assert parts["postings"] > 0


def test_hex_and_array_inputs_agree() -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(3, 32), dtype=np.uint8)
    from_hex, from_array = HammingIndex(256), HammingIndex(256)
    from_hex.add([1, 2, 3], [row.tobytes().hex() for row in raw])
    from_array.add(np.array([1, 2, 3]), raw)
    assert from_hex.search(raw[0], 256) == from_array.search(raw[0].tobytes().hex(), 256)


@pytest.mark.parametrize(
    "value",
    ["ab" * 7, "ab" * 9, "zz" * 8, "ab ab ab ab ab a", "0x" + "ab" * 7],
    ids=["short", "long", "not-hex", "space", "prefix"],
)
def test_add_refuses_malformed_values(value: str) -> None:
    hamming = HammingIndex(64)
    with pytest.raises(ValueError, match="hex"):
        hamming.add([1], [value])
    assert len(hamming) == 0


def test_search_refuses_a_negative_radius() -> None:
    with pytest.raises(ValueError, match="negative"):
        HammingIndex(64).search("00" * 8, -1)


def test_exact_index_matches_equal_values_only() -> None:
    exact = ExactIndex(128)
    exact.add([1, 2, 3], ["aa" * 16, "bb" * 16, "AA" * 16])
    assert exact.search("aa" * 16) == [(1, 0), (3, 0)]
    assert exact.search_batch(["bb" * 16, "cc" * 16]) == [[(2, 0)], []]
    assert exact.remove([1, 7]) == 1
    assert exact.search("aa" * 16) == [(3, 0)]
    assert len(exact) == 2
    assert exact.memory_bytes() > 0


def test_exact_index_refuses_a_radius() -> None:
    with pytest.raises(ValueError, match="radius 0"):
        ExactIndex(256).search("00" * 32, 1)


def test_index_for_follows_the_algorithm() -> None:
    pdq = index_for("pdq")
    assert isinstance(pdq, HammingIndex)
    assert (pdq.bits, pdq.radius_hint) == (256, 31)
    phash = index_for("phash")
    assert isinstance(phash, HammingIndex)
    assert (phash.bits, phash.radius_hint) == (64, ALGORITHMS["phash"].default_distance)
    md5 = index_for("md5")
    assert isinstance(md5, ExactIndex)
    assert md5.bits == 128


@pytest.mark.parametrize("bits", [64, 256])
def test_a_search_limit_keeps_the_nearest_of_the_whole_answer(bits: int) -> None:
    rng = random.Random(bits)
    queries = [random_hash(rng, bits) for _ in range(3)]
    # Crowds of near-duplicates around each query, spread over a tabled segment, small
    # segments and the buffer, among unrelated values.
    values = [random_hash(rng, bits) for _ in range(20_000)]
    for query in queries:
        values += [
            flip(query, rng.sample(range(bits), rng.randint(0, RADIUS[bits]))) for _ in range(300)
        ]
    rng.shuffle(values)
    hamming = HammingIndex(bits)
    hamming.add(range(15_000), values[:15_000])
    for first in range(15_000, len(values), 700):
        batch = values[first : first + 700]
        hamming.add(range(first, first + len(batch)), batch)
    hamming.remove(range(0, len(values), 11))
    whole = hamming.search_batch(queries, RADIUS[bits])
    assert min(len(found) for found in whole) > 250
    for limit in (0, 1, 7, 100, 10_000):
        assert hamming.search_batch(queries, RADIUS[bits], limit) == [
            found[:limit] for found in whole
        ]


def test_candidates_examined_counts_scanned_rows_and_verified_candidates() -> None:
    rng = random.Random(3)
    scanned = HammingIndex(256)
    scanned.add(range(100), [random_hash(rng, 256) for _ in range(100)])
    scanned.search_batch([random_hash(rng, 256) for _ in range(3)], 31)
    assert scanned.candidates_examined == 300  # the buffer is scanned: every row, every query
    tabled = HammingIndex(256)
    tabled.add(range(50_000), [random_hash(rng, 256) for _ in range(50_000)])
    tabled.search(random_hash(rng, 256), 31)
    assert 0 < tabled.candidates_examined < 50_000  # the tables verify a few candidates only
    exact = ExactIndex(128)
    value = random_hash(rng, 128)
    exact.add([1, 2, 3], [value, value, random_hash(rng, 128)])
    exact.search_batch([value, random_hash(rng, 128)])
    assert exact.candidates_examined == 2


def test_values_get_returns_the_live_values_only() -> None:
    rng = random.Random(4)
    values = [random_hash(rng, 256) for _ in range(10_000)]
    hamming = HammingIndex(256)
    hamming.add(range(9_000), values[:9_000])
    hamming.add(range(9_000, 10_000), values[9_000:])
    hamming.remove([5, 9_500])
    wanted = [4, 5, 6, 9_499, 9_500, 12_345]
    assert hamming.values_get(wanted) == {i: values[i] for i in (4, 6, 9_499)}
    exact = ExactIndex(128)
    exact.add([1, 2], ["0" * 32, "f" * 32])
    exact.remove([2])
    assert exact.values_get([1, 2, 3]) == {1: "0" * 32}


def test_an_exact_search_limit_keeps_the_lowest_ids() -> None:
    exact = ExactIndex(128)
    exact.add([9, 3, 7, 1], ["a" * 32] * 4)
    assert exact.search_batch(["a" * 32], 0, 2) == [[(1, 0), (3, 0)]]


@pytest.mark.parametrize("bits", [64, 256])
def test_a_crowd_of_near_duplicates_costs_no_more_than_a_scan(bits: int) -> None:
    rng = random.Random(5)
    crowd = random_hash(rng, bits)
    near = {flip(crowd, rng.sample(range(bits), rng.randint(0, 3))) for _ in range(10_000)}
    values = sorted(near) + [random_hash(rng, bits) for _ in range(30_000)]
    hamming = HammingIndex(bits)
    hamming.add(range(len(values)), values)
    assert hamming.memory_breakdown()["tables"] > 0
    queries = [crowd, random_hash(rng, bits)]
    found = hamming.search_batch(queries, RADIUS[bits])
    live = dict(enumerate(values))
    assert found == [brute_force(live, query, RADIUS[bits]) for query in queries]
    assert hamming.candidates_examined <= len(values) * len(queries)


@pytest.mark.parametrize("tables", [True, False])
def test_an_index_loaded_from_packed_words_finds_what_a_built_one_finds(tables: bool) -> None:
    rng = random.Random(5)
    values = {entry_id: random_hash(rng, 256) for entry_id in range(0, 30_000, 3)}
    ids = np.array(sorted(values), dtype=np.int64)
    words = index.hashes_pack([values[i] for i in ids.tolist()], 256)
    loaded = HammingIndex.from_packed(ids, words, bits=256, tables=tables)
    assert len(loaded) == len(values)
    queries = [flip(values[i], rng.sample(range(256), 25)) for i in rng.sample(sorted(values), 20)]
    queries += [random_hash(rng, 256) for _ in range(5)]
    for query in queries:
        assert loaded.search(query, 31) == brute_force(values, query, 31)
    # It changes as any index does.
    loaded.remove([int(ids[0])])
    loaded.add([30_001], [values[int(ids[0])]])
    assert loaded.search(values[int(ids[0])], 0) == [(30_001, 0)]


def test_loading_packed_words_refuses_unordered_ids_or_a_wrong_shape() -> None:
    words = index.hashes_pack(["00" * 32, "ff" * 32], 256)
    with pytest.raises(ValueError, match="strictly increasing"):
        HammingIndex.from_packed(np.array([2, 1], dtype=np.int64), words, bits=256)
    with pytest.raises(ValueError, match="shape"):
        HammingIndex.from_packed(np.array([1], dtype=np.int64), words, bits=256)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.sampled_from([64, 256]),
    layout=st.none() | st.builds(Layout, chunks=st.integers(1, 16), key_bits=st.integers(1, 12)),
    clustered=st.booleans(),
    crowd_scan=st.sampled_from([0.0, 1.0, float("inf")]),
    bitmap=st.sampled_from([0.0, 64.0, float("inf")]),
    limit=st.none() | st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_search_matches_brute_force_on_uniform_and_clustered_data(
    bits: int,
    layout: Layout | None,
    clustered: bool,
    crowd_scan: float,
    bitmap: float,
    limit: int | None,
    seed: int,
) -> None:
    """Values spread uniformly, or crowded around a few centres (templated images), searched
    through the tables with the per-query scan fallback always taken (0), taken when the
    cost model says a scan is cheaper (1: on clustered data a batch then mixes scanned and
    table-searched queries), or never (infinity); or, without a forced layout, with whole
    segments scanned as the cost model chooses for segments this small. Candidates made
    unique by sorting, through a bitmap, or as the cost decides. With and without a limit,
    as the server asks."""
    rng = random.Random(seed)
    radius = RADIUS[bits]
    centres = [random_hash(rng, bits) for _ in range(rng.randint(1, 3))]
    if clustered:
        values = [
            flip(rng.choice(centres), rng.sample(range(bits), rng.randint(0, radius + 6)))
            for _ in range(rng.randint(20, 200))
        ]
        queries = [flip(c, rng.sample(range(bits), rng.randint(0, 4))) for c in centres]
    else:
        values = [random_hash(rng, bits) for _ in range(rng.randint(20, 200))]
        spread = layout or Layout(chunks=4, key_bits=8)
        values += [flip(c, spread.spread(bits, radius, rng)) for c in centres]
        queries = centres
    queries.append(random_hash(rng, bits))
    with small_index_parts(layout, crowd_scan, bitmap):
        hamming = HammingIndex(bits)
        half = len(values) // 2
        hamming.add(range(half), values[:half])
        hamming.add(range(half, len(values)), values[half:])
        hamming.remove(range(0, len(values), 5))
        live = {i: v for i, v in enumerate(values) if i % 5}
        for searched in (radius, radius // 2):
            expected = [brute_force(live, query, searched)[:limit] for query in queries]
            assert hamming.search_batch(queries, searched, limit) == expected
            if limit is None:
                assert [hamming.search(query, searched) for query in queries] == expected


@pytest.mark.parametrize("bits", [64, 256])
def test_one_batch_scans_its_crowded_queries_and_looks_the_others_up(bits: int) -> None:
    """At the scan's real cost, a query near a cluster scans the segment and a query far
    from every cluster goes through the tables, in the same batch, and both answers are
    the brute-force ones."""
    rng = random.Random(11)
    radius = RADIUS[bits]
    centre = random_hash(rng, bits)
    values = [flip(centre, rng.sample(range(bits), rng.randint(0, 3))) for _ in range(150)]
    values += [random_hash(rng, bits) for _ in range(50)]
    # Chunks that put a random value's keys in nearly empty buckets.
    layout = {64: Layout(chunks=4, key_bits=16), 256: Layout(chunks=16, key_bits=12)}[bits]
    with small_index_parts(layout, crowd_scan=1.0):
        hamming = HammingIndex(bits)
        hamming.add(range(len(values)), values)
        assert hamming.segment_sizes() == [len(values), 0]
        lone = random_hash(rng, bits)
        examined = []
        for query in (centre, lone):
            before = hamming.candidates_examined
            hamming.search(query, radius)
            examined.append(hamming.candidates_examined - before)
        assert examined[0] == len(values)  # scanned: every row once
        assert examined[1] < len(values) // 4  # the tables: a few candidates at most
        live = dict(enumerate(values))
        assert hamming.search_batch([centre, lone], radius) == [
            brute_force(live, centre, radius),
            brute_force(live, lone, radius),
        ]


def test_search_matches_brute_force_on_clustered_data_with_production_layout() -> None:
    """Clustered PDQ values at a size where the default cost model builds tables, without
    any forced part: queries near a centre are scanned, the others looked up, and every
    answer (with and without a limit) is the brute-force one."""
    rng = np.random.default_rng(7)
    entries, bits, radius = 40_000, 256, RADIUS[256]
    centres = rng.integers(0, 256, size=(20, bits // 8), dtype=np.uint8)
    raw = centres[rng.integers(0, len(centres), size=entries)]
    bits_set = np.unpackbits(raw, axis=1)
    for row, count in enumerate(rng.integers(0, 17, size=entries)):
        bits_set[row, rng.choice(bits, size=count, replace=False)] ^= 1
    raw = np.packbits(bits_set, axis=1)
    queries = np.concatenate(
        [centres[:5], rng.integers(0, 256, size=(5, bits // 8), dtype=np.uint8)]
    )
    hamming = HammingIndex(bits)
    hamming.add(np.arange(entries), raw)
    removed = np.arange(0, entries, 9)
    hamming.remove(removed)
    assert hamming.memory_breakdown()["tables"] > 0
    keep = np.ones(entries, dtype=bool)
    keep[removed] = False
    distances = np.bitwise_count(raw[None, :, :] ^ queries[:, None, :]).sum(axis=2)
    expected = []
    for row in range(len(queries)):
        near = np.flatnonzero((distances[row] <= radius) & keep)
        expected.append(sorted(((int(i), int(distances[row, i])) for i in near), key=_order))
    before = hamming.candidates_examined
    assert hamming.search_batch(queries, radius) == expected
    assert hamming.candidates_examined - before <= entries * len(queries)
    assert hamming.search_batch(queries, radius, 10) == [found[:10] for found in expected]
    assert all(len(found) > 100 for found in expected[:5])
    examined = []
    for query in queries:
        before = hamming.candidates_examined
        hamming.search(query, radius)
        examined.append(hamming.candidates_examined - before)
    assert examined[:5] == [entries] * 5  # near a centre: the segment is scanned
    assert max(examined[5:]) < entries // 100  # elsewhere: a few candidates from the tables
