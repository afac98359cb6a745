"""Merkle tree math of the log: RFC 9162 hashing and proofs, C2SP tlog-tiles layout.

Pure functions over bytes, so that a partner verifies with exactly the code the server
proves with. Three parts:

- RFC 9162 §2.1 (the same tree as RFC 6962): leaf and node hashes, the root of a list of
  leaf hashes, inclusion and consistency proofs, and their verification by the iterative
  algorithms of §2.1.3.2 and §2.1.4.2.
- Proof generation from a `SubtreeHash` function, `(level, n) -> hash` of the complete
  subtree holding leaves ``[n * 2**level, (n + 1) * 2**level)``. The server feeds it from
  stored hashes or tiles, so a proof costs O(log n) reads and never rehashes leaves.
- The storage layouts of Go's ``golang.org/x/mod/sumdb/tlog``, which the C2SP tlog-tiles
  specification (https://c2sp.org/tlog-tiles) generalises: the "stored hash index" that
  numbers every complete subtree in the order it is completed as leaves are appended, and
  tiles of height 8 (256 hashes) with their paths.

Go's ``tlog.TreeHash`` returns 32 zero bytes for the empty tree; here the empty tree's root
is SHA-256 of the empty string, as RFC 9162 and C2SP tlog-checkpoint define it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
EMPTY_ROOT = hashlib.sha256(b"").digest()
# A level-0 leaf is a uint16 length and its bytes in an entry bundle.
MAX_BUNDLED_LEAF = 0xFFFF

SubtreeHash = Callable[[int, int], bytes]
"""`(level, n)` -> hash of the complete subtree of leaves ``[n << level, (n + 1) << level)``."""

HashReader = Callable[[Sequence[int]], Sequence[bytes]]
"""Stored hash indexes -> the stored hashes, in the same order (Go's ``tlog.HashReader``)."""


class ProofError(ValueError):
    """A proof, a root or its sizes do not verify; the message says which check failed."""


class TilePathError(ValueError):
    """A path that is not the canonical C2SP tlog-tiles path of a tile or entry bundle."""


# RFC 9162 §2.1.1 hashing


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1 over hashes already leaf-hashed, in O(n) time.

    Folding complete subtrees as they close and then the remaining peaks from the right is
    the largest-power-of-two split, without the recursion's slicing.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    peaks: list[bytes] = []
    for index, hashed in enumerate(leaf_hashes):
        # Leaf `index` completes one subtree per trailing one bit of `index`.
        for _ in range((index ^ (index + 1)).bit_length() - 1):
            hashed = node_hash(peaks.pop(), hashed)
        peaks.append(hashed)
    hashed = peaks[-1]
    for left in reversed(peaks[:-1]):
        hashed = node_hash(left, hashed)
    return hashed


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(lo: int, hi: int, subtree_hash: SubtreeHash) -> bytes:
    """MTH(D[lo:hi]) for a range the RFC recursion produces (lo aligned to hi - lo's span).

    The range splits into complete subtrees of decreasing size from the left; its hash
    folds them from the right, as the largest-power-of-two split does.
    """
    peaks = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo & ((1 << level) - 1):
            raise ValueError(f"range [{lo}, {hi}) is not aligned to complete subtrees")
        peaks.append(subtree_hash(level, lo >> level))
        lo += 1 << level
    hashed = peaks[-1]
    for left in reversed(peaks[:-1]):
        hashed = node_hash(left, hashed)
    return hashed


# Proof generation (RFC 9162 §2.1.3.1 and §2.1.4.1)


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf `index` in the tree of `size` leaves.

    Only the sibling on the tree's right edge may be incomplete, so the proof costs
    O(log size) calls of `subtree_hash`.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    path = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            path.append(_range_hash(lo + k, hi, subtree_hash))
            hi = lo + k
        else:
            path.append(_range_hash(lo, lo + k, subtree_hash))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PROOF(old_size, D[new_size]): the tree of `old_size` leaves is a prefix of the new one.

    Empty when either tree is empty or both are the same size (nothing to prove).
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree sizes out of order: {old_size} then {new_size}")
    if old_size in (0, new_size):
        return []
    proof = []
    lo, hi, m = 0, new_size, old_size
    whole_old_tree = True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            proof.append(_range_hash(lo + k, hi, subtree_hash))
            hi = lo + k
        else:
            proof.append(_range_hash(lo, lo + k, subtree_hash))
            lo += k
            m -= k
            whole_old_tree = False
    if not whole_old_tree:
        proof.append(_range_hash(lo, hi, subtree_hash))
    proof.reverse()
    return proof


def leaves_subtree_hash(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """A `SubtreeHash` that rehashes `leaf_hashes` on every call: for tests and small trees."""

    def subtree_hash(level: int, n: int) -> bytes:
        lo, hi = n << level, (n + 1) << level
        if level < 0 or n < 0 or hi > len(leaf_hashes):
            raise ValueError(f"no complete subtree ({level}, {n}) in {len(leaf_hashes)} leaves")
        return root(leaf_hashes[lo:hi])

    return subtree_hash


# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        _check_hash(f"proof element {position}", element)


def inclusion_verify(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise `ProofError` unless `proof` shows leaf `index` hashing to `leaf_hash` in `root`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    _check_proof(proof)
    fn, sn = index, size - 1
    computed = leaf_hash
    for element in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is longer than a tree of size {size} needs")
        if fn & 1 or fn == sn:
            computed = node_hash(element, computed)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            computed = node_hash(computed, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is shorter than a tree of size {size} needs")
    if computed != root:
        raise ProofError(f"inclusion proof of leaf {index} does not lead to the root")


def consistency_verify(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise `ProofError` unless `proof` shows the tree `old_root` is a prefix of `new_root`.

    Stricter than RFC 9162 at the edges: an empty old tree must have the empty root, and
    equal sizes need equal roots and an empty proof.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree sizes out of order: {old_size} then {new_size}")
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    _check_proof(proof)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(f"consistency proof from {old_size} to {new_size} must be empty")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError("old root is not the root of the empty tree")
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"two different roots for tree size {old_size}")
        return
    if not proof:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for element in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof is longer than sizes {old_size}, {new_size} need")
        if fn & 1 or fn == sn:
            first = node_hash(element, first)
            second = node_hash(element, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof is shorter than sizes {old_size}, {new_size} need")
    if first != old_root:
        raise ProofError(f"consistency proof does not lead to the old root of size {old_size}")
    if second != new_root:
        raise ProofError(f"consistency proof does not lead to the new root of size {new_size}")


# Go's stored hash numbering (sumdb/tlog): every complete subtree, in the order it completes


def stored_hash_index(level: int, n: int) -> int:
    """The position of subtree `(level, n)` in the append-only sequence of stored hashes.

    Appending leaf n stores its hash, then the hash of every subtree that leaf completes,
    lowest first; so the sequence only ever grows at its end.
    """
    if level < 0 or n < 0:
        raise ValueError(f"no stored hash ({level}, {n})")
    # Subtree (L, n) is stored right after subtree (L - 1, 2n + 1), its right child.
    for _ in range(level):
        n = 2 * n + 1
    # Leaf n is stored after the n + n/2 + n/4 + ... hashes of the leaves and subtrees before it.
    index = 0
    while n > 0:
        index += n
        n >>= 1
    return index + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The `(level, n)` of stored hash `index`; the inverse of `stored_hash_index`."""
    if index < 0:
        raise ValueError(f"no stored hash {index}")
    # stored_hash_index(0, n) <= 2n, so the leaf stored last before `index` is near index / 2.
    n = index // 2
    leaf_index = stored_hash_index(0, n)
    while True:
        following = leaf_index + 1 + ((n + 1) & -(n + 1)).bit_length() - 1
        if following > index:
            break
        n += 1
        leaf_index = following
    level = index - leaf_index
    return level, n >> level


def stored_hash_count(size: int) -> int:
    """How many hashes a tree of `size` leaves has stored."""
    if size == 0:
        return 0
    last = size - 1
    return stored_hash_index(0, last) + 1 + ((size & -size).bit_length() - 1)


def stored_hashes_for_leaf(index: int, leaf_hash: bytes, read_hashes: HashReader) -> list[bytes]:
    """The hashes to append when leaf `index` is appended: its own, then each completed subtree.

    Reads the left siblings, which are already stored (Go's ``tlog.StoredHashesForRecordHash``).
    """
    _check_hash("leaf hash", leaf_hash)
    completed = ((index + 1) & -(index + 1)).bit_length() - 1
    siblings = [stored_hash_index(level, (index >> level) - 1) for level in range(completed)]
    read = list(read_hashes(siblings))
    if len(read) != completed:
        raise ValueError(f"read {len(read)} hashes, asked for {completed}")
    hashes = [leaf_hash]
    for sibling in read:
        hashes.append(node_hash(sibling, hashes[-1]))
    return hashes


def stored_subtree_hash(read_hashes: HashReader) -> SubtreeHash:
    """A `SubtreeHash` reading one stored hash per call."""

    def subtree_hash(level: int, n: int) -> bytes:
        return read_hashes([stored_hash_index(level, n)])[0]

    return subtree_hash


def tree_hash(size: int, read_hashes: HashReader) -> bytes:
    """The root of the tree of `size` leaves from at most log2(size) + 1 stored hashes."""
    if size < 0:
        raise ValueError(f"no tree of size {size}")
    if size == 0:
        return EMPTY_ROOT
    peaks = []
    lo = 0
    while lo < size:
        level = (size - lo).bit_length() - 1
        peaks.append(stored_hash_index(level, lo >> level))
        lo += 1 << level
    return _range_hash(0, size, _memo(dict(zip(peaks, read_hashes(peaks), strict=True))))


def _memo(hashes: dict[int, bytes]) -> SubtreeHash:
    return lambda level, n: hashes[stored_hash_index(level, n)]


# C2SP tlog-tiles


def _path_index(n: int) -> str:
    """`n` in three-digit groups, all but the last prefixed with x: 1234067 -> x001/x234/067."""
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _path_width(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


@dataclass(frozen=True)
class Tile:
    """Tile `index` of `level`: `width` hashes of tree level 8 * `level`, from 256 * `index`.

    A partial tile (width < 256) is a prefix of the full tile it grows into.
    """

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not (0 <= self.level < 64 and self.index >= 0 and 1 <= self.width <= TILE_WIDTH):
            raise ValueError(f"no tile ({self.level}, {self.index}, {self.width})")

    @property
    def path(self) -> str:
        return f"tile/{self.level}/{_path_index(self.index)}{_path_width(self.width)}"


@dataclass(frozen=True)
class EntryBundle:
    """Entry bundle `index`: leaves ``[256 * index, 256 * index + width)``, verbatim."""

    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not (self.index >= 0 and 1 <= self.width <= TILE_WIDTH):
            raise ValueError(f"no entry bundle ({self.index}, {self.width})")

    @property
    def path(self) -> str:
        return f"tile/entries/{_path_index(self.index)}{_path_width(self.width)}"


_TILE_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/){0,6}[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def parse_tile_path(path: str) -> Tile | EntryBundle:
    """The tile or entry bundle at `path`; only its canonical spelling is accepted.

    One object has one path, so caches and access events never see two names for it.
    """
    match = _TILE_PATH.fullmatch(path)
    if match is None:
        raise TilePathError(f"not a tile path: {path!r}")
    index = int(match["index"].replace("x", "").replace("/", ""))
    width = int(match["width"]) if match["width"] else TILE_WIDTH
    try:
        parsed: Tile | EntryBundle
        if match["level"] == "entries":
            parsed = EntryBundle(index, width)
        else:
            parsed = Tile(int(match["level"]), index, width)
    except ValueError as error:
        raise TilePathError(f"not a tile path: {path!r}") from error
    if parsed.path != path:
        raise TilePathError(f"not the canonical tile path: {path!r}, not {parsed.path!r}")
    return parsed


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """The tiles that appear or grow when the tree grows from `old_size` to `new_size`.

    Each at its width in the new tree (Go's ``tlog.NewTiles`` with height 8); from an old
    size of 0, every tile of the tree.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"tree sizes out of order: {old_size} then {new_size}")
    tiles: list[Tile] = []
    level = 0
    while new_size >> (TILE_HEIGHT * level) > 0:
        old_n = old_size >> (TILE_HEIGHT * level)
        new_n = new_size >> (TILE_HEIGHT * level)
        if old_n != new_n:
            tiles.extend(Tile(level, n) for n in range(old_n >> TILE_HEIGHT, new_n >> TILE_HEIGHT))
            width = new_n % TILE_WIDTH
            if width:
                tiles.append(Tile(level, new_n >> TILE_HEIGHT, width))
        level += 1
    return tiles


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile of the tree of `size` leaves, the rightmost of each level partial if need be."""
    return new_tiles(0, size)


def entry_bundles_for_size(size: int) -> list[EntryBundle]:
    """Every entry bundle of a log of `size` leaves."""
    bundles = [EntryBundle(n) for n in range(size // TILE_WIDTH)]
    if size % TILE_WIDTH:
        bundles.append(EntryBundle(size // TILE_WIDTH, size % TILE_WIDTH))
    return bundles


def tile_for_stored_hash(index: int) -> tuple[Tile, int, int]:
    """The smallest tile holding stored hash `index`, and the byte range in it to hash.

    A hash of a tree level inside a tile (not a multiple of 8) is not stored in the tile
    but computed from the 2**k hashes below it in that byte range (Go's ``tileForIndex``).
    """
    level, n = split_stored_hash_index(index)
    tile_level, within = divmod(level, TILE_HEIGHT)
    tile_index = (n << within) >> TILE_HEIGHT
    n -= (tile_index << TILE_HEIGHT) >> within
    start, end = n << within, (n + 1) << within
    return Tile(tile_level, tile_index, end), start * HASH_SIZE, end * HASH_SIZE


def _tile_range_hash(data: bytes) -> bytes:
    if len(data) == HASH_SIZE:
        return data
    half = len(data) // 2
    return node_hash(_tile_range_hash(data[:half]), _tile_range_hash(data[half:]))


def hash_from_tile(tile: Tile, data: bytes, index: int) -> bytes:
    """Stored hash `index` from the bytes of `tile` (which may be wider than needed)."""
    if len(data) != tile.width * HASH_SIZE:
        raise ValueError(f"{tile.path} must be {tile.width * HASH_SIZE} bytes, not {len(data)}")
    needed, start, end = tile_for_stored_hash(index)
    if (needed.level, needed.index) != (tile.level, tile.index) or tile.width < needed.width:
        raise ValueError(f"stored hash {index} is in {needed.path}, not {tile.path}")
    return _tile_range_hash(data[start:end])


def tile_data(tile: Tile, read_hashes: HashReader) -> bytes:
    """The bytes of `tile`, from the stored hashes of its bottom row."""
    first = tile.index << TILE_HEIGHT
    level = tile.level * TILE_HEIGHT
    indexes = [stored_hash_index(level, first + i) for i in range(tile.width)]
    hashes = list(read_hashes(indexes))
    if len(hashes) != tile.width or any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError(f"read hashes do not make {tile.path}")
    return b"".join(hashes)


def tile_subtree_hash(read_tile: Callable[[Tile], bytes]) -> SubtreeHash:
    """A `SubtreeHash` from tiles: each tile is read at most once, so a proof reads O(log n).

    `read_tile` returns the bytes of its tile at that width or wider (a tile only grows at
    its end, so any wider version holds the same prefix).
    """
    tiles: dict[tuple[int, int], bytes] = {}

    def subtree_hash(level: int, n: int) -> bytes:
        needed, start, end = tile_for_stored_hash(stored_hash_index(level, n))
        key = (needed.level, needed.index)
        data = tiles.get(key)
        if data is None or len(data) < end:
            data = read_tile(needed)
            if len(data) % HASH_SIZE or not end <= len(data) <= TILE_WIDTH * HASH_SIZE:
                raise ValueError(f"{needed.path} read as {len(data)} bytes")
            tiles[key] = data
        return _tile_range_hash(data[start:end])

    return subtree_hash


def tree_root_from(size: int, subtree_hash: SubtreeHash) -> bytes:
    """The root of the tree of `size` leaves from its O(log size) complete subtrees."""
    if size < 0:
        raise ValueError(f"no tree of size {size}")
    return EMPTY_ROOT if size == 0 else _range_hash(0, size, subtree_hash)


def partial_tiles(size: int) -> list[Tile]:
    """The rightmost tile of each level of the tree of `size` leaves, where it is partial.

    What appending to the tree must read: a full tile never changes again, and a tile that
    does not exist yet starts empty.
    """
    if size < 0:
        raise ValueError(f"no tree of size {size}")
    tiles = []
    level = 0
    # O(log size), unlike listing every tile: this runs on every append.
    while size >> (TILE_HEIGHT * level) > 0:
        n = size >> (TILE_HEIGHT * level)
        if n % TILE_WIDTH:
            tiles.append(Tile(level, n >> TILE_HEIGHT, n % TILE_WIDTH))
        level += 1
    return tiles


def tiles_append(
    old_size: int, tiles: dict[tuple[int, int], bytes], leaf_hashes: Sequence[bytes]
) -> dict[tuple[int, int], bytes]:
    """The tiles that change when `leaf_hashes` are appended to a tree of `old_size` leaves.

    `tiles` holds (at least) the `partial_tiles(old_size)`, keyed `(level, index)`, each
    exactly as wide as the old tree makes it; the result maps every tile that grows or
    appears to its new bytes. Each tile completed at one level (256 hashes) contributes its
    root, the hash of a subtree 8 levels higher, to the level above: so this is the whole
    tree's extension, in O(new leaves) hashing. Refuses tiles of the wrong width, which would
    mean the stored tiles are out of step with the log.
    """
    changed: dict[tuple[int, int], bytes] = {}
    level, start, new = 0, old_size, list(leaf_hashes)
    for hashed in new:
        _check_hash("leaf hash", hashed)
    while new:
        completed = []
        position, taken = start, 0
        while taken < len(new):
            index, offset = divmod(position, TILE_WIDTH)
            count = min(TILE_WIDTH - offset, len(new) - taken)
            key = (level, index)
            data = changed.get(key, tiles.get(key, b"")) if offset else b""
            if len(data) != offset * HASH_SIZE:
                raise ValueError(
                    f"{Tile(level, index).path} holds {len(data) // HASH_SIZE} hashes, "
                    f"a tree of {old_size} leaves has {offset} there"
                )
            data += b"".join(new[taken : taken + count])
            changed[key] = data
            if len(data) == TILE_WIDTH * HASH_SIZE:
                completed.append(_tile_range_hash(data))
            position += count
            taken += count
        # The hashes this level completed are numbered from the full tiles it had before.
        level, start, new = level + 1, start >> TILE_HEIGHT, completed
    return changed


def entry_bundle_encode(leaves: Sequence[bytes]) -> bytes:
    """An entry bundle: each leaf as a big-endian uint16 length and its bytes."""
    if not 1 <= len(leaves) <= TILE_WIDTH:
        raise ValueError(f"an entry bundle holds 1 to {TILE_WIDTH} leaves, not {len(leaves)}")
    parts = []
    for leaf in leaves:
        if len(leaf) > MAX_BUNDLED_LEAF:
            raise ValueError(f"a leaf of {len(leaf)} bytes does not fit an entry bundle")
        parts.append(len(leaf).to_bytes(2, "big") + leaf)
    return b"".join(parts)


def entry_bundle_decode(data: bytes) -> list[bytes]:
    """The leaves of an entry bundle; refuses truncated data and more than 256 leaves."""
    leaves = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise ValueError("entry bundle ends inside a length")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + length > len(data):
            raise ValueError("entry bundle ends inside a leaf")
        leaves.append(data[offset : offset + length])
        offset += length
    if not 1 <= len(leaves) <= TILE_WIDTH:
        raise ValueError(f"an entry bundle holds 1 to {TILE_WIDTH} leaves, not {len(leaves)}")
    return leaves


# Streaming: the tree of a log read once, front to back, in O(log n) memory


@dataclass(frozen=True)
class Subtree:
    """A complete subtree: leaves ``[n << level, (n + 1) << level)`` and their hash."""

    level: int
    n: int
    hash: bytes


class CompactRange:
    """The right edge of a tree being built leaf by leaf: one hash per one bit of the size.

    A verifier that reads a whole log front to back keeps only this, so it checks a log of
    any length in O(log n) memory; `append` hands back every subtree the leaf completes, so
    stored tiles can be compared as they close, and `root` gives the root at every size.
    """

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[Subtree] = []

    def append(self, leaf_hash: bytes) -> list[Subtree]:
        """Add the next leaf hash; return the subtrees it completes, lowest (the leaf) first."""
        _check_hash("leaf hash", leaf_hash)
        index = self.size
        completed = [Subtree(0, index, leaf_hash)]
        # Leaf `index` completes one subtree per trailing one bit of `index`.
        for level in range(1, (index ^ (index + 1)).bit_length()):
            left = self._peaks.pop()
            completed.append(
                Subtree(level, index >> level, node_hash(left.hash, completed[-1].hash))
            )
        self._peaks.append(completed[-1])
        self.size += 1
        return completed

    def root(self) -> bytes:
        """The root of the tree of the leaves appended so far."""
        if not self._peaks:
            return EMPTY_ROOT
        hashed = self._peaks[-1].hash
        for left in reversed(self._peaks[:-1]):
            hashed = node_hash(left.hash, hashed)
        return hashed
