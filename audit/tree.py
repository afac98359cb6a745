"""The log's Merkle tree, stored as C2SP tlog-tiles tiles (audit.models.LogTile).

The tiles are extended in the transaction that appends the events (`tree_extend`, called
by log_append while it holds the log head lock), so the tree is never behind the log: a
committed size always has committed tiles, and tree extension is serialised with index
assignment. Everything read here comes from stored tiles: the root at any size and every
proof cost one query of O(log n) rows and O(log n) hashing, never a rehash of leaves.

The math is consortium_client.merkle's (the partners' own code); this module only decides
which tiles to read and write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db import connection, transaction

from audit.models import LogEvent, LogHead, LogTile
from consortium_client import merkle

T = TypeVar("T")

TileKey = tuple[int, int]


class TreeError(Exception):
    """The stored tiles cannot answer: a size beyond the log, or tiles out of step with it."""


def _tiles_fetch(keys: Iterable[TileKey], model: Any = LogTile) -> dict[TileKey, bytes]:
    """The stored bytes of the tiles `keys`, in one query (raw SQL: it runs in appends and
    proofs, where building an ORM query of OR-ed conditions cost more than the query)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    table = connection.ops.quote_name(model._meta.db_table)
    pairs = ", ".join(["(%s, %s)"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT level, "index", hashes FROM {table} '  # noqa: S608
            f'WHERE (level, "index") IN (VALUES {pairs})',
            [value for key in keys for value in key],
        )
        return {(level, index): bytes(hashes) for level, index, hashes in cursor.fetchall()}


def _tiles_store(tiles: dict[TileKey, bytes], model: Any = LogTile) -> None:
    """Insert or overwrite `tiles` (each a longer version of itself: tiles only grow)."""
    if not tiles:
        return
    model.objects.bulk_create(
        [model(level=level, index=index, hashes=data) for (level, index), data in tiles.items()],
        update_conflicts=True,
        unique_fields=["level", "index"],
        update_fields=["hashes"],
    )


def tree_extend(*, old_size: int, leaves: list[bytes]) -> None:
    """Append the Merkle leaf hashes of `leaves` (log events old_size, old_size + 1, ...).

    Must run inside log_append's transaction, after it took the log head lock: the tiles of
    size `old_size` are then exactly the committed ones, and no other writer changes them
    before this transaction ends.

    This runs in every transaction that appends to the log, so it is built to cost little:
    one statement in the common case. A stored tile is only ever extended at its end, so
    the new hashes are appended to it in SQL (`hashes || new`) and the tile's old bytes
    are read only where this append completes it (the root of a full tile goes to the level
    above): for one-event appends, once in 256. Every written tile's new length is checked
    against the tree's, so tiles out of step with the log fail the append, never extend it.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("tree_extend must run inside log_append's transaction")
    if not leaves:
        return
    new_size = old_size + len(leaves)
    partial = {(tile.level, tile.index): tile.width for tile in merkle.partial_tiles(old_size)}
    # A partial tile is completed when the new tree has moved past it at its level.
    completed = [
        (level, index)
        for level, index in partial
        if new_size >> (merkle.TILE_HEIGHT * (level + 1)) > index
    ]
    stored = _tiles_fetch(completed) if completed else {}
    # A tile that stays partial is never hashed here, only appended to: its old hashes
    # are not needed, and zeros of its width stand in for them.
    known = {
        key: stored.get(key, bytes(width * merkle.HASH_SIZE)) for key, width in partial.items()
    }
    leaf_hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    try:
        changed = merkle.tiles_append(old_size, known, leaf_hashes)
    except ValueError as error:
        raise TreeError(f"{error}: run `manage.py log_tiles_rebuild`") from error
    # Each row: the tile, the bytes to append, the length the tile must have afterwards.
    rows = [
        (level, index, data[partial.get((level, index), 0) * merkle.HASH_SIZE :], len(data))
        for (level, index), data in changed.items()
    ]
    _tiles_append(rows)


def _tiles_append(rows: list[tuple[int, int, bytes, int]]) -> None:
    """Append bytes to tiles, creating those that do not exist, in one statement; refuse
    (TreeError, which rolls back the append) if any tile does not end at its given length."""
    table = connection.ops.quote_name(LogTile._meta.db_table)
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        # `||` of two blobs is text in SQLite (the quick start): cast back to a blob there.
        appended = f"{table}.hashes || excluded.hashes"
        if connection.vendor == "sqlite":
            appended = f"CAST({appended} AS BLOB)"
        cursor.execute(
            f'INSERT INTO {table} (level, "index", hashes) VALUES {values} '  # noqa: S608
            f'ON CONFLICT (level, "index") DO UPDATE SET hashes = {appended} '
            f'RETURNING level, "index", length(hashes)',
            [value for level, index, data, _ in rows for value in (level, index, data)],
        )
        lengths = {(level, index): length for level, index, length in cursor.fetchall()}
    for level, index, _, length in rows:
        if lengths.get((level, index)) != length:
            raise TreeError(
                f"tile {level}/{index} would hold {lengths.get((level, index))} bytes, not "
                f"{length}: the tiles are out of step with the log; run "
                "`manage.py log_tiles_rebuild`"
            )


def _from_tiles(plan: Callable[[merkle.SubtreeHash], T]) -> T:
    """Run `plan` (root or proof arithmetic over a SubtreeHash) on stored tiles.

    A first, dry run with dummy hashes only records which tiles the plan needs; they are
    then read in one query and the plan runs again on them. Both runs cost O(log n).
    """
    needed: set[TileKey] = set()
    widths: dict[TileKey, int] = {}

    def record(level: int, n: int) -> bytes:
        tile, _, end = merkle.tile_for_stored_hash(merkle.stored_hash_index(level, n))
        key = (tile.level, tile.index)
        needed.add(key)
        widths[key] = max(widths.get(key, 0), end)
        return bytes(merkle.HASH_SIZE)

    plan(record)
    tiles = _tiles_fetch(needed)
    for key, end in widths.items():
        if len(tiles.get(key, b"")) < end:
            raise TreeError(f"tile {key} is missing or short: run `manage.py log_tiles_rebuild`")

    def read_tile(tile: merkle.Tile) -> bytes:
        return tiles[(tile.level, tile.index)]

    return plan(merkle.tile_subtree_hash(read_tile))


def _committed_size() -> int:
    return LogHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0


def _check_size(size: int) -> None:
    if not 0 <= size <= _committed_size():
        raise TreeError(f"the log has no tree of size {size}")


def tree_root(*, size: int) -> bytes:
    """The root of the log's tree at `size` (the empty tree's root for 0)."""
    _check_size(size)
    return _from_tiles(lambda subtree_hash: merkle.tree_root_from(size, subtree_hash))


def tree_inclusion_proof(*, index: int, size: int) -> tuple[bytes, list[bytes]]:
    """The root at `size` and the inclusion proof of leaf `index` in it, from one query."""
    _check_size(size)
    if not 0 <= index < size:
        raise TreeError(f"leaf {index} is not in the tree of size {size}")
    return _from_tiles(
        lambda subtree_hash: (
            merkle.tree_root_from(size, subtree_hash),
            merkle.inclusion_proof(index, size, subtree_hash),
        )
    )


def tree_consistency_proof(*, old: int, new: int) -> tuple[bytes, bytes, list[bytes]]:
    """The roots at `old` and `new` and the consistency proof between them, from one query."""
    _check_size(new)
    if not 0 <= old <= new:
        raise TreeError(f"tree sizes out of order: {old} then {new}")
    return _from_tiles(
        lambda subtree_hash: (
            merkle.tree_root_from(old, subtree_hash),
            merkle.tree_root_from(new, subtree_hash),
            merkle.consistency_proof(old, new, subtree_hash),
        )
    )


def tile_read(*, level: int, index: int, width: int) -> bytes | None:
    """The bytes of tile `(level, index)` at `width` hashes, or None if the tree has no such
    tile yet. A stored tile wider than `width` serves its prefix: tiles only grow at the end,
    so the prefix is the tile as it was at the smaller tree."""
    row = LogTile.objects.filter(level=level, index=index).values_list("hashes", flat=True)
    data = row.first()
    end = width * merkle.HASH_SIZE
    if data is None or len(data) < end:
        return None
    return bytes(data[:end])


def tiles_rebuild(
    *, tile_model: Any = LogTile, event_model: Any = LogEvent, chunk: int = 4096
) -> int:
    """Make every tile again from the stored leaves, streaming; return the log size covered.

    The models are parameters so that a data migration can pass its historical ones. Holds
    the log head lock (FOR UPDATE) so that no event is appended meanwhile; run it in one
    transaction.
    """
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(LogHead._meta.db_table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        cursor.execute(f"SELECT size FROM {table} WHERE id = 1{lock}")  # noqa: S608
        row = cursor.fetchone()
    size = row[0] if row else 0
    tile_model.objects.all().delete()
    tiles: dict[TileKey, bytes] = {}
    done = 0
    batch: list[bytes] = []
    leaves = (
        event_model.objects.filter(index__lt=size)
        .order_by("index")
        .values_list("index", "leaf")
        .iterator(chunk_size=chunk)
    )
    for index, leaf in leaves:
        if index != done + len(batch):
            raise TreeError(f"the log has no event {done + len(batch)} below its size {size}")
        batch.append(merkle.leaf_hash(bytes(leaf)))
        if len(batch) == chunk:
            done = _rebuild_step(tiles, done, batch, tile_model)
            batch = []
    done = _rebuild_step(tiles, done, batch, tile_model)
    if done != size:
        raise TreeError(f"the log holds {done} events below its size {size}")
    return size


def _rebuild_step(
    tiles: dict[TileKey, bytes], done: int, batch: list[bytes], tile_model: Any
) -> int:
    changed = merkle.tiles_append(done, tiles, batch)
    _tiles_store(changed, tile_model)
    done += len(batch)
    # Keep only the partial tiles: bounded memory however long the log.
    partial = {(tile.level, tile.index) for tile in merkle.partial_tiles(done)}
    for key in list(tiles):
        if key not in partial:
            del tiles[key]
    tiles.update({key: data for key, data in changed.items() if key in partial})
    return done
