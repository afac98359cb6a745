import secrets
import sqlite3

import numpy as np
import pytest

from consortium_client.hashvalues import (
    ALGORITHMS,
    HashValueError,
    VideoFrame,
    vpdq_value_format,
    vpdq_value_parse,
)
from consortium_client.mirror_index import (
    MirrorMatcher,
    MirrorNotSynced,
    snapshot_refresh,
    snapshots_stale,
)
from consortium_client.mirror_store import MirrorStoreError, mirror_connect
from consortium_client.vpdq import video_shares
from tests.client.mirrorrows import ENVELOPE_SHA256, MirrorRows


def flipped(value: str, bits: int) -> str:
    """`value` with its first `bits` bits inverted."""
    number = int(value, 16) ^ (((1 << bits) - 1) << (len(value) * 4 - bits))
    return f"{number:0{len(value)}x}"


def pdq() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def rows(tmp_path):
    return MirrorRows(tmp_path / "mirror.db")


def only_ids(results):
    return [[(m.entry, m.distance) for m in result.matches] for result in results]


@pytest.mark.parametrize("tables", [True, False])
def test_exact_and_perceptual_hashes_match_within_the_default_distance(rows, tables):
    near, far = pdq(), pdq()
    md5 = secrets.token_hex(16)
    near_id = rows.add("pdq", near, labels=("a", "b"), quality=90)
    rows.add("pdq", far)
    md5_id = rows.add("md5", md5, hash_list="csam", partner="ngo")
    matcher = MirrorMatcher.load(rows.path, tables=tables)
    results = matcher.search(
        [("pdq", flipped(near, 31)), ("pdq", flipped(near, 32)), ("md5", md5.upper())]
    )
    assert only_ids(results) == [[(near_id, 31)], [], [(md5_id, 0)]]
    found = results[0].matches[0]
    assert (found.hash_list, found.labels, found.quality, found.partner) == (
        "ncii",
        ["a", "b"],
        90,
        "hotline",
    )
    assert (found.signing_key, found.submission, found.log_index) == ("key-hotline", 1000, near_id)
    assert found.envelope_sha256 == ENVELOPE_SHA256
    assert results[2].matches[0].hash_list == "csam"


def test_a_radius_widens_or_narrows_one_algorithm(rows):
    value = pdq()
    entry = rows.add("pdq", value)
    matcher = MirrorMatcher.load(rows.path, tables=False)
    assert only_ids(matcher.search([("pdq", flipped(value, 40))], radii={"pdq": 40})) == [
        [(entry, 40)]
    ]
    assert only_ids(matcher.search([("pdq", flipped(value, 5))], radii={"pdq": 4})) == [[]]
    with pytest.raises(HashValueError, match="exact hash"):
        matcher.search([("md5", secrets.token_hex(16))], radii={"md5": 1})
    with pytest.raises(HashValueError, match="between 0 and 256"):
        matcher.search([("pdq", value)], radii={"pdq": 257})


def test_matches_are_nearest_first_and_cut_at_the_limit(rows):
    value = pdq()
    ids = [rows.add("pdq", flipped(value, bits)) for bits in (9, 3, 3, 20)]
    matcher = MirrorMatcher.load(rows.path)
    [result] = matcher.search([("pdq", value)], limit=3)
    assert [(m.entry, m.distance) for m in result.matches] == [
        (ids[1], 3),
        (ids[2], 3),
        (ids[0], 9),
    ]
    assert result.truncated
    [result] = matcher.search([("pdq", value)], limit=4)
    assert not result.truncated


def test_revoked_and_erased_entries_never_match(rows):
    revoked, erased, kept = pdq(), pdq(), pdq()
    revoked_id = rows.add("pdq", revoked)
    erased_id = rows.add("pdq", erased)
    kept_id = rows.add("pdq", kept)
    md5 = secrets.token_hex(16)
    md5_id = rows.add("md5", md5)
    rows.revoke(revoked_id)
    rows.erase(erased_id)
    rows.revoke(md5_id)
    for tables in (True, False):
        matcher = MirrorMatcher.load(rows.path, tables=tables)
        results = matcher.search([("pdq", revoked), ("pdq", erased), ("pdq", kept), ("md5", md5)])
        assert only_ids(results) == [[], [], [(kept_id, 0)], []]


def test_a_revocation_synced_after_loading_stops_the_match_at_once(rows):
    value = pdq()
    entry = rows.add("pdq", value)
    matcher = MirrorMatcher.load(rows.path)
    rows.revoke(entry)
    # The index still holds the entry, but its row is read at match time and is not active.
    assert only_ids(matcher.search([("pdq", value)])) == [[]]


def test_loading_brings_a_stale_snapshot_forward_and_saves_it(rows):
    first, second, third = pdq(), pdq(), pdq()
    first_id = rows.add("pdq", first)
    second_id = rows.add("pdq", second)
    assert snapshot_refresh(rows.connection)  # every algorithm, as of the cursor
    assert snapshots_stale(rows.connection) == []
    rows.revoke(first_id)
    third_id = rows.add("pdq", third)
    rows.other_event()
    assert "pdq" in snapshots_stale(rows.connection)
    matcher = MirrorMatcher.load(rows.path, tables=False)
    assert matcher.cursor == rows.cursor
    assert only_ids(matcher.search([("pdq", first), ("pdq", second), ("pdq", third)])) == [
        [],
        [(second_id, 0)],
        [(third_id, 0)],
    ]
    # Saved, so that the next process reads it as it is.
    assert snapshots_stale(rows.connection) == []


def test_a_snapshot_brought_forward_equals_one_built_from_scratch(rows):
    rng = np.random.default_rng(7)
    entries = []
    for step in range(300):
        if entries and rng.random() < 0.3:
            entry = entries.pop(int(rng.integers(len(entries))))
            (rows.erase if step % 2 else rows.revoke)(entry)
        else:
            algorithm = str(rng.choice(["pdq", "phash", "md5"]))
            entries.append(rows.add(algorithm, _value(rng, ALGORITHMS[algorithm].bits // 8)))
        if rng.random() < 0.1:
            snapshot_refresh(rows.connection)
    snapshot_refresh(rows.connection)
    forward = _snapshots(rows.connection)
    snapshot_refresh(rows.connection, rebuild=True)
    assert _snapshots(rows.connection) == forward
    active = rows.connection.execute(
        "SELECT count(*) FROM entries WHERE status = 'active'"
    ).fetchone()[0]
    assert len(MirrorMatcher.load(rows.path)) == active == len(entries)


def _value(rng, width):
    return bytes(rng.integers(0, 256, width, dtype=np.uint8)).hex()


def _snapshots(connection):
    return connection.execute(
        "SELECT algorithm, cursor, ids, hashes FROM index_snapshots ORDER BY algorithm"
    ).fetchall()


def test_refresh_joins_the_callers_transaction(rows):
    rows.add("pdq", pdq())
    connection = rows.connection
    connection.execute("BEGIN IMMEDIATE")
    snapshot_refresh(connection)
    connection.execute("ROLLBACK")
    # Rolled back with the step it was part of.
    assert "pdq" in snapshots_stale(connection)


def test_advance_applies_adds_and_ends_without_a_reload(rows):
    old, new = pdq(), pdq()
    old_id = rows.add("pdq", old)
    matcher = MirrorMatcher.load(rows.path)
    assert not matcher.advance()
    rows.revoke(old_id)
    new_id = rows.add("pdq", new)
    assert matcher.advance()
    assert matcher.cursor == rows.cursor
    assert len(matcher.indexes["pdq"]) == 1
    assert only_ids(matcher.search([("pdq", old), ("pdq", new)])) == [[], [(new_id, 0)]]


def test_a_mirror_never_synced_or_missing_is_refused(tmp_path):
    with pytest.raises(MirrorStoreError, match="run 'consortium sync'"):
        MirrorMatcher.load(tmp_path / "none.db")
    mirror_connect(tmp_path / "empty.db").close()
    with pytest.raises(MirrorNotSynced):
        MirrorMatcher.load(tmp_path / "empty.db")


def test_a_damaged_snapshot_is_refused(rows):
    rows.add("pdq", pdq())
    snapshot_refresh(rows.connection)
    rows.connection.execute("UPDATE index_snapshots SET hashes = x'00' WHERE algorithm = 'pdq'")
    with pytest.raises(MirrorStoreError, match="damaged"):
        MirrorMatcher.load(rows.path)


def test_a_bad_query_is_refused(rows):
    rows.add("pdq", pdq())
    matcher = MirrorMatcher.load(rows.path)
    with pytest.raises(HashValueError, match="unknown algorithm"):
        matcher.search([("sha1", "00")])
    with pytest.raises(HashValueError, match="64 hex characters"):
        matcher.search([("pdq", "abc")])
    assert isinstance(rows.connection, sqlite3.Connection)


# Videos ------------------------------------------------------------------------------------


def _video(rng: np.random.Generator, frames: int) -> list[VideoFrame]:
    return [VideoFrame(rng.bytes(32).hex(), int(rng.integers(30, 100))) for _ in range(frames)]


def _near(rng: np.random.Generator, frames: list[VideoFrame], keep: float) -> list[VideoFrame]:
    """A copy: `keep` of the frames, each within 0 to 20 bits, and a few frames of its own."""
    copy = []
    for frame in frames:
        if rng.random() < keep:
            number = int(frame.pdq, 16)
            for bit in rng.choice(256, int(rng.integers(0, 21)), replace=False):
                number ^= 1 << int(bit)
            copy.append(VideoFrame(f"{number:064x}", frame.quality))
    return copy + _video(rng, int(rng.integers(0, 3)))


def _scan(path, query: str) -> list[tuple[int, int]]:
    """Every matchable video judged frame by frame: what the frame index must agree with."""
    connection = sqlite3.connect(path)
    rows = connection.execute(
        "SELECT id, value FROM entries WHERE algorithm = 'vpdq' AND status = 'active' "
        "AND review IS NOT 'pending' AND quarantined = 0 AND value IS NOT NULL"
    ).fetchall()
    connection.close()
    found = []
    for entry_id, value in rows:
        share = video_shares(vpdq_value_parse(query), vpdq_value_parse(value))
        if share.matches():
            found.append((share.distance, entry_id))
    return sorted(found)


def _found(matcher: MirrorMatcher, query: str) -> list[tuple[int, int]]:
    (result,) = matcher.search([("vpdq", query)], limit=100)
    return [(match.distance, match.entry) for match in result.matches]


@pytest.mark.parametrize("tables", [True, False])
def test_video_matches_through_the_frame_index_equal_a_scan_of_every_video(rows, tables):
    rng = np.random.default_rng(5)
    originals = [_video(rng, int(rng.integers(3, 30))) for _ in range(12)]
    stored: list[int] = []
    for frames in originals:
        stored.append(rows.add("vpdq", vpdq_value_format(frames)))
        for keep in (1.0, 0.9, 0.6):  # copies that match, and one too cut to
            stored.append(rows.add("vpdq", vpdq_value_format(_near(rng, frames, keep))))
    matcher = MirrorMatcher.load(rows.path, tables=tables)
    queries = [vpdq_value_format(_near(rng, frames, 0.95)) for frames in originals]
    queries.append(vpdq_value_format(_video(rng, 10)))  # nothing like it stored
    for query in queries:
        assert _found(matcher, query) == _scan(rows.path, query)
    assert any(_found(matcher, query) for query in queries)
    # Ends, holds and new videos synced after the index was built count at once.
    rows.revoke(stored[0])
    rows.erase(stored[4])
    rows.hold(stored[8], review="pending")
    rows.hold(stored[12], quarantined=True)
    for frames in originals[:3]:
        rows.add("vpdq", vpdq_value_format(_near(rng, frames, 1.0)))
    assert matcher.advance()
    for query in queries:
        assert _found(matcher, query) == _scan(rows.path, query)
    rows.hold(stored[12], quarantined=False)
    assert matcher.advance()
    assert stored[12] in {entry for _, entry in _found(matcher, queries[3])}


def test_a_video_awaiting_review_or_quarantined_does_not_match_in_the_mirror(rows):
    rng = np.random.default_rng(6)
    frames = _video(rng, 8)
    pending = rows.add("vpdq", vpdq_value_format(frames))
    rows.hold(pending, review="pending")
    quarantined = rows.add("vpdq", vpdq_value_format(_near(rng, frames, 1.0)))
    rows.hold(quarantined, quarantined=True)
    matcher = MirrorMatcher.load(rows.path)

    assert _found(matcher, vpdq_value_format(frames)) == []
