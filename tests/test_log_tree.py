"""The log's tree as stored tiles: roots and proofs from tiles verify, with our verifiers and
with Go's sumdb/tlog, at every size; the tiles equal the tree recomputed from the leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import tree
from audit.models import LogEvent, LogTile
from audit.services import EventDraft, log_append
from consortium_client import merkle
from consortium_client.merkle import ProofError
from tests.client.test_merkle_go import ask_go, tlogcheck  # noqa: F401 - a fixture
from tests.conftest import log_events_append

pytestmark = pytest.mark.django_db


def _leaf_hashes() -> list[bytes]:
    leaves = LogEvent.objects.order_by("index").values_list("leaf", flat=True)
    return [merkle.leaf_hash(bytes(leaf)) for leaf in leaves]


def _stored_tiles() -> dict[tuple[int, int], bytes]:
    rows = LogTile.objects.values_list("level", "index", "hashes")
    return {(level, index): bytes(data) for level, index, data in rows}


def _expected_tiles(hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    stored: list[bytes] = []
    read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
    for index, hashed in enumerate(hashes):
        stored.extend(merkle.stored_hashes_for_leaf(index, hashed, read))
    return {
        (tile.level, tile.index): merkle.tile_data(tile, read)
        for tile in merkle.tiles_for_size(len(hashes))
    }


def _flip(value: bytes, position: int) -> bytes:
    position %= len(value)
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


def test_tiles_grow_with_every_append_and_equal_the_tree_of_the_leaves() -> None:
    # Batches that cross tile edges one event at a time and many at once.
    for count in [1, 254, 1, 1, 300, 1, 512]:
        log_events_append(count)
        hashes = _leaf_hashes()
        assert _stored_tiles() == _expected_tiles(hashes)
        assert tree.tree_root(size=len(hashes)) == merkle.root(hashes)


def test_a_rolled_back_append_leaves_the_tiles_as_they_were() -> None:
    log_events_append(300)
    before = _stored_tiles()

    def failing_write() -> None:
        with transaction.atomic():
            log_append(drafts=[EventDraft("signing_key_registered", {"n": "x"})] * 5)
            raise RuntimeError("the write fails after appending")

    with pytest.raises(RuntimeError):
        failing_write()
    assert _stored_tiles() == before
    log_events_append(1)
    assert _stored_tiles() == _expected_tiles(_leaf_hashes())


LOG_SIZE = 600


@pytest.fixture
def grown_log() -> list[bytes]:
    log_events_append(LOG_SIZE)
    return _leaf_hashes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_served_proof_verifies_and_any_flipped_byte_fails(
    grown_log: list[bytes], data: st.DataObject
) -> None:
    hashes = grown_log
    new = data.draw(st.integers(1, LOG_SIZE), label="new")
    old = data.draw(st.integers(0, new), label="old")
    index = data.draw(st.integers(0, new - 1), label="index")
    root, proof = tree.tree_inclusion_proof(index=index, size=new)
    assert root == merkle.root(hashes[:new]) == tree.tree_root(size=new)
    merkle.inclusion_verify(index, new, hashes[index], proof, root)
    old_root, new_root, consistency = tree.tree_consistency_proof(old=old, new=new)
    assert old_root == merkle.root(hashes[:old])
    merkle.consistency_verify(old, new, old_root, new_root, consistency)

    position = data.draw(st.integers(0, 10_000), label="position")
    with pytest.raises(ProofError):
        merkle.inclusion_verify(index, new, _flip(hashes[index], position), proof, root)
    with pytest.raises(ProofError):
        merkle.inclusion_verify(index, new, hashes[index], proof, _flip(root, position))
    if proof:
        element = position % len(proof)
        bad = [*proof[:element], _flip(proof[element], position), *proof[element + 1 :]]
        with pytest.raises(ProofError):
            merkle.inclusion_verify(index, new, hashes[index], bad, root)
    if consistency:
        element = position % len(consistency)
        bad = [
            *consistency[:element],
            _flip(consistency[element], position),
            *consistency[element + 1 :],
        ]
        with pytest.raises(ProofError):
            merkle.consistency_verify(old, new, old_root, new_root, bad)
    if 0 < old < new:
        with pytest.raises(ProofError):
            merkle.consistency_verify(old, new, _flip(old_root, position), new_root, consistency)


def test_go_accepts_every_proof_served_from_tiles(
    grown_log: list[bytes],
    tlogcheck: Path,  # noqa: F811
) -> None:
    hashes = grown_log
    checks: list[dict[str, Any]] = []
    for new in [1, 2, 3, 255, 256, 257, 511, 512, 513, LOG_SIZE]:
        root = tree.tree_root(size=new)
        checks.append({"kind": "root", "size": new})
        for index in sorted({0, new // 2, new - 1}):
            _, proof = tree.tree_inclusion_proof(index=index, size=new)
            checks.append(
                {"kind": "inclusion", "index": index, "size": new, "root": root.hex()}
                | {"proof": [p.hex() for p in proof]}
            )
        for old in sorted({1, new // 3 or 1, new - 1 or 1, new}):
            old_root, _, proof = tree.tree_consistency_proof(old=old, new=new)
            checks.append(
                {"kind": "consistency", "old_size": old, "size": new, "root": root.hex()}
                | {"old_root": old_root.hex(), "proof": [p.hex() for p in proof]}
            )
    answers = ask_go(tlogcheck, hashes, checks)["answers"]
    for check, go in zip(checks, answers, strict=True):
        assert go["error"] == "", check
        if check["kind"] == "root":
            assert go["root"] == tree.tree_root(size=check["size"]).hex()
        else:
            assert go.get("proof", []) == check["proof"], check


def test_a_proof_reads_its_tiles_in_one_query(grown_log: list[bytes]) -> None:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        tree.tree_inclusion_proof(index=3, size=LOG_SIZE - 1)
    tile_queries = [q for q in queries.captured_queries if "audit_logtile" in q["sql"]]
    assert len(tile_queries) == 1


def test_sizes_beyond_the_log_are_refused() -> None:
    log_events_append(3)
    assert tree.tree_root(size=0) == merkle.EMPTY_ROOT
    with pytest.raises(tree.TreeError):
        tree.tree_root(size=4)
    with pytest.raises(tree.TreeError):
        tree.tree_inclusion_proof(index=3, size=3)
    with pytest.raises(tree.TreeError):
        tree.tree_consistency_proof(old=2, new=4)


def test_tiles_rebuild_makes_the_same_tiles_from_the_leaves() -> None:
    log_events_append(700)
    before = _stored_tiles()
    LogTile.objects.all().delete()
    with pytest.raises(tree.TreeError):
        log_events_append(1)
    call_command("log_tiles_rebuild", verbosity=0)
    assert _stored_tiles() == before
    log_events_append(1)
    assert _stored_tiles() == _expected_tiles(_leaf_hashes())


@pytest.mark.parametrize("count", [1, 100])
def test_an_append_onto_a_tile_out_of_step_is_refused_and_stores_nothing(count: int) -> None:
    # 200 events: one event stays inside the partial tile (its old bytes are never read),
    # 100 complete it (they are): both must notice the tile is one hash short.
    from audit.selectors import log_size

    log_events_append(200)
    LogTile.objects.filter(level=0, index=0).update(hashes=_stored_tiles()[(0, 0)][:-32])
    before = _stored_tiles()
    with pytest.raises(tree.TreeError):
        log_events_append(count)
    assert log_size() == 200
    assert LogEvent.objects.count() == 200
    assert _stored_tiles() == before


def test_tile_read_serves_prefixes_and_nothing_beyond_the_tree() -> None:
    log_events_append(300)
    full = tree.tile_read(level=0, index=0, width=256)
    assert full is not None
    assert tree.tile_read(level=0, index=0, width=10) == full[: 10 * 32]
    assert tree.tile_read(level=0, index=1, width=44) is not None
    assert tree.tile_read(level=0, index=1, width=45) is None
    assert tree.tile_read(level=1, index=0, width=1) is not None
    assert tree.tile_read(level=1, index=0, width=2) is None
    assert tree.tile_read(level=0, index=2, width=1) is None
