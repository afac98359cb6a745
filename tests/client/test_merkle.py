"""The log's Merkle math: RFC 9162 reference vectors, proofs under attack, and tiles."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium_client import merkle
from consortium_client.merkle import (
    EMPTY_ROOT,
    EntryBundle,
    ProofError,
    Tile,
    TilePathError,
)

# The 8-leaf test tree of the certificate-transparency C++ reference (merkletree/
# merkle_tree_test.cc), as transparency-dev/merkle proof/verify_test.go carries it.
REFERENCE_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]
# The roots of its first 1, 2, ..., 8 leaves.
REFERENCE_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# transparency-dev/merkle proof/verify_test.go `inclusionProofs`: (leaf index, size, proof);
# the Go file counts leaves from 1, these from 0.
REFERENCE_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# transparency-dev/merkle proof/verify_test.go `consistencyProofs`: (old size, new size, proof).
REFERENCE_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def leaves_of(size: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]


def reference_root(hashes: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, written as the recursive definition reads."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return merkle.node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def reference_path(m: int, hashes: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, as the recursive definition reads."""
    if len(hashes) == 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return [*reference_path(m, hashes[:k]), reference_root(hashes[k:])]
    return [*reference_path(m - k, hashes[k:]), reference_root(hashes[:k])]


def reference_subproof(m: int, hashes: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1, as the recursive definition reads."""
    if m == len(hashes):
        return [] if whole else [reference_root(hashes)]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m <= k:
        return [*reference_subproof(m, hashes[:k], whole), reference_root(hashes[k:])]
    return [*reference_subproof(m - k, hashes[k:], False), reference_root(hashes[:k])]


def verified_probes(verify, probes) -> list[str]:
    """The descriptions of the probes `verify` accepted (it must refuse them all)."""
    verified = []
    for description, *arguments in probes:
        try:
            verify(*arguments)
        except ProofError:
            continue
        verified.append(description)
    return verified


def flip(data: bytes, position: int, mask: int) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def test_hashes_are_domain_separated_sha256() -> None:
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        merkle.node_hash(b"L" * 32, b"R" * 32)
        == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert merkle.root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_roots_match_the_certificate_transparency_reference_tree() -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    assert [merkle.root(hashes[:n]).hex() for n in range(1, 9)] == REFERENCE_ROOTS


@pytest.mark.parametrize(("index", "size", "proof"), REFERENCE_INCLUSION)
def test_inclusion_proofs_match_the_reference_vectors(
    index: int, size: int, proof: list[str]
) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    generated = merkle.inclusion_proof(index, size, merkle.leaves_subtree_hash(hashes))
    assert [element.hex() for element in generated] == proof
    root = bytes.fromhex(REFERENCE_ROOTS[size - 1])
    merkle.inclusion_verify(index, size, hashes[index], [bytes.fromhex(p) for p in proof], root)


@pytest.mark.parametrize(("old_size", "new_size", "proof"), REFERENCE_CONSISTENCY)
def test_consistency_proofs_match_the_reference_vectors(
    old_size: int, new_size: int, proof: list[str]
) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in REFERENCE_LEAVES]
    generated = merkle.consistency_proof(old_size, new_size, merkle.leaves_subtree_hash(hashes))
    assert [element.hex() for element in generated] == proof
    merkle.consistency_verify(
        old_size,
        new_size,
        bytes.fromhex(REFERENCE_ROOTS[old_size - 1]),
        bytes.fromhex(REFERENCE_ROOTS[new_size - 1]),
        [bytes.fromhex(p) for p in proof],
    )


def test_proofs_equal_the_recursive_definitions_for_every_small_tree() -> None:
    hashes = leaves_of(40)
    subtree_hash = merkle.leaves_subtree_hash(hashes)
    for n in range(1, 41):
        assert merkle.root(hashes[:n]) == reference_root(hashes[:n])
        for m in range(n):
            assert merkle.inclusion_proof(m, n, subtree_hash) == reference_path(m, hashes[:n])
        for m in range(1, n + 1):
            expected = reference_subproof(m, hashes[:n], True)
            assert merkle.consistency_proof(m, n, subtree_hash) == expected


sizes = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n - 1), st.just(n))
)


@settings(max_examples=150, deadline=None)
@given(sizes, st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_byte_fails(
    index_size: tuple[int, int], data: st.DataObject
) -> None:
    index, size = index_size
    hashes = leaves_of(size)
    root = merkle.root(hashes)
    proof = merkle.inclusion_proof(index, size, merkle.leaves_subtree_hash(hashes))
    merkle.inclusion_verify(index, size, hashes[index], proof, root)

    mask = data.draw(st.integers(min_value=1, max_value=255))
    target = data.draw(st.sampled_from(["leaf", "root"] + ["proof"] * bool(proof)))
    position = data.draw(st.integers(min_value=0, max_value=merkle.HASH_SIZE - 1))
    leaf, bad_root, bad_proof = hashes[index], root, list(proof)
    if target == "leaf":
        leaf = flip(leaf, position, mask)
    elif target == "root":
        bad_root = flip(root, position, mask)
    else:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad_proof[element] = flip(proof[element], position, mask)
    with pytest.raises(ProofError, match="does not lead to the root"):
        merkle.inclusion_verify(index, size, leaf, bad_proof, bad_root)


old_new_sizes = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(st.integers(min_value=1, max_value=n), st.just(n))
)


@settings(max_examples=150, deadline=None)
@given(old_new_sizes, st.data())
def test_every_consistency_proof_verifies_and_any_flipped_byte_fails(
    sizes: tuple[int, int], data: st.DataObject
) -> None:
    old_size, new_size = sizes
    hashes = leaves_of(new_size)
    old_root, new_root = merkle.root(hashes[:old_size]), merkle.root(hashes)
    proof = merkle.consistency_proof(old_size, new_size, merkle.leaves_subtree_hash(hashes))
    merkle.consistency_verify(old_size, new_size, old_root, new_root, proof)

    mask = data.draw(st.integers(min_value=1, max_value=255))
    target = data.draw(st.sampled_from(["old", "new"] + ["proof"] * bool(proof)))
    position = data.draw(st.integers(min_value=0, max_value=merkle.HASH_SIZE - 1))
    bad_proof = list(proof)
    if target == "old":
        old_root = flip(old_root, position, mask)
    elif target == "new":
        new_root = flip(new_root, position, mask)
    else:
        element = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad_proof[element] = flip(proof[element], position, mask)
    with pytest.raises(ProofError):
        merkle.consistency_verify(old_size, new_size, old_root, new_root, bad_proof)


def corrupted_inclusion(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes):
    """The probes of transparency-dev/merkle's corruptInclusionProof, none of which may verify."""
    probes = [
        ("index - 1", index - 1, size, leaf, proof, root),
        ("index + 1", index + 1, size, leaf, proof, root),
        ("index ^ 2", index ^ 2, size, leaf, proof, root),
        ("size * 2", index, size * 2, leaf, proof, root),
        ("size // 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("preceding garbage", index, size, leaf, [b"", *proof], root),
        ("preceding root", index, size, leaf, [root, *proof], root),
    ]
    if proof:
        probes.append(("removed element", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append(
            ("inserted element", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root)
        )
    return probes


@pytest.mark.parametrize(("index", "size"), [(0, 8), (5, 8), (2, 3), (1, 5), (6, 7), (12, 13)])
def test_inclusion_verify_refuses_every_corruption(index: int, size: int) -> None:
    hashes = leaves_of(size)
    proof = merkle.inclusion_proof(index, size, merkle.leaves_subtree_hash(hashes))
    root = merkle.root(hashes)
    probes = corrupted_inclusion(index, size, proof, root, hashes[index])
    assert verified_probes(merkle.inclusion_verify, probes) == []


@pytest.mark.parametrize(
    ("old_size", "new_size"), [(1, 8), (6, 8), (2, 5), (6, 7), (3, 13), (4, 9)]
)
def test_consistency_verify_refuses_every_corruption(old_size: int, new_size: int) -> None:
    hashes = leaves_of(new_size)
    proof = merkle.consistency_proof(old_size, new_size, merkle.leaves_subtree_hash(hashes))
    old, new = merkle.root(hashes[:old_size]), merkle.root(hashes)
    probes = [
        ("old - 1", old_size - 1, new_size, old, new, proof),
        ("old + 1", old_size + 1, new_size, old, new, proof),
        ("old ^ 2", old_size ^ 2, new_size, old, new, proof),
        ("new * 2", old_size, new_size * 2, old, new, proof),
        ("new // 2", old_size, new_size // 2, old, new, proof),
        ("wrong old root", old_size, new_size, SOME_HASH, new, proof),
        ("wrong new root", old_size, new_size, old, SOME_HASH, proof),
        ("swapped roots", old_size, new_size, new, old, proof),
        ("empty proof", old_size, new_size, old, new, []),
        ("trailing garbage", old_size, new_size, old, new, [*proof, b""]),
        ("trailing old root", old_size, new_size, old, new, [*proof, old]),
        ("trailing new root", old_size, new_size, old, new, [*proof, new]),
        ("preceding garbage", old_size, new_size, old, new, [b"", *proof]),
        ("preceding old root", old_size, new_size, old, new, [old, *proof]),
        ("preceding new root", old_size, new_size, old, new, [new, *proof]),
        ("preceding proof[0]", old_size, new_size, old, new, [proof[0], *proof]),
        ("truncated proof", old_size, new_size, old, new, proof[:-1]),
    ]
    assert verified_probes(merkle.consistency_verify, probes) == []


def test_flipping_any_byte_of_a_proof_root_or_leaf_fails_every_time() -> None:
    """Every byte, not a sample: each of 32 bytes of each element, the roots and the leaf."""
    hashes = leaves_of(300)
    subtree_hash = merkle.leaves_subtree_hash(hashes)
    root = merkle.root(hashes)
    inclusion = merkle.inclusion_proof(123, 300, subtree_hash)
    old_root = merkle.root(hashes[:100])
    consistency = merkle.consistency_proof(100, 300, subtree_hash)
    accepted = []
    for mask in (0x01, 0x80):
        for position in range(merkle.HASH_SIZE):
            probes = [("leaf", 123, 300, flip(hashes[123], position, mask), inclusion, root)]
            probes.append(("root", 123, 300, hashes[123], inclusion, flip(root, position, mask)))
            for element in range(len(inclusion)):
                bad = list(inclusion)
                bad[element] = flip(bad[element], position, mask)
                probes.append((f"proof[{element}]", 123, 300, hashes[123], bad, root))
            accepted += verified_probes(merkle.inclusion_verify, probes)
            probes = [
                ("old root", 100, 300, flip(old_root, position, mask), root, consistency),
                ("new root", 100, 300, old_root, flip(root, position, mask), consistency),
            ]
            for element in range(len(consistency)):
                bad = list(consistency)
                bad[element] = flip(bad[element], position, mask)
                probes.append((f"proof[{element}]", 100, 300, old_root, root, bad))
            accepted += verified_probes(merkle.consistency_verify, probes)
    assert accepted == []


def test_inclusion_verify_names_the_failed_check() -> None:
    leaf = merkle.leaf_hash(b"data")
    merkle.inclusion_verify(0, 1, leaf, [], leaf)
    with pytest.raises(ProofError, match="leaf index 1 is not in a tree of size 1"):
        merkle.inclusion_verify(1, 1, leaf, [], leaf)
    with pytest.raises(ProofError, match="leaf index 0 is not in a tree of size 0"):
        merkle.inclusion_verify(0, 0, leaf, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="leaf index -1"):
        merkle.inclusion_verify(-1, 4, leaf, [], leaf)
    with pytest.raises(ProofError, match="leaf hash is 0 bytes, not 32"):
        merkle.inclusion_verify(0, 1, b"", [], leaf)
    with pytest.raises(ProofError, match="root is 31 bytes"):
        merkle.inclusion_verify(0, 1, leaf, [], leaf[:31])
    with pytest.raises(ProofError, match="proof element 1 is 33 bytes"):
        merkle.inclusion_verify(0, 4, leaf, [leaf, leaf + b"x"], leaf)
    with pytest.raises(ProofError, match="longer than a tree of size 1 needs"):
        merkle.inclusion_verify(0, 1, leaf, [leaf], leaf)
    with pytest.raises(ProofError, match="shorter than a tree of size 4 needs"):
        merkle.inclusion_verify(0, 4, leaf, [leaf], leaf)


def test_consistency_verify_names_the_failed_check() -> None:
    hashes = leaves_of(5)
    r1, r5 = merkle.root(hashes[:1]), merkle.root(hashes)
    with pytest.raises(ProofError, match="tree sizes out of order: 5 then 1"):
        merkle.consistency_verify(5, 1, r5, r1, [])
    with pytest.raises(ProofError, match="two different roots for tree size 5"):
        merkle.consistency_verify(5, 5, r5, r1, [])
    with pytest.raises(ProofError, match="from 5 to 5 must be empty"):
        merkle.consistency_verify(5, 5, r5, r5, [r1])
    with pytest.raises(ProofError, match="old root is not the root of the empty tree"):
        merkle.consistency_verify(0, 5, r1, r5, [])
    with pytest.raises(ProofError, match="from 1 to 5 is empty"):
        merkle.consistency_verify(1, 5, r1, r5, [])
    with pytest.raises(ProofError, match="old root is 3 bytes"):
        merkle.consistency_verify(1, 5, b"old", r5, [])
    # The edges that hold whatever the tree: nothing, or the same tree.
    merkle.consistency_verify(0, 5, EMPTY_ROOT, r5, [])
    merkle.consistency_verify(5, 5, r5, r5, [])


def test_proof_generation_refuses_impossible_sizes() -> None:
    subtree_hash = merkle.leaves_subtree_hash(leaves_of(4))
    with pytest.raises(ProofError, match="leaf index 4 is not in a tree of size 4"):
        merkle.inclusion_proof(4, 4, subtree_hash)
    with pytest.raises(ProofError, match="tree sizes out of order: 3 then 2"):
        merkle.consistency_proof(3, 2, subtree_hash)
    assert merkle.consistency_proof(0, 4, subtree_hash) == []
    with pytest.raises(ValueError, match=r"no complete subtree \(2, 1\) in 4 leaves"):
        subtree_hash(2, 1)


# Stored hashes, in Go's sumdb/tlog numbering


def build_stored(hashes: list[bytes]) -> list[bytes]:
    stored: list[bytes] = []
    read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
    for index, hashed in enumerate(hashes):
        new = merkle.stored_hashes_for_leaf(index, hashed, read)
        assert len(stored) + len(new) == merkle.stored_hash_count(index + 1)
        stored.extend(new)
    return stored


def test_stored_hash_index_numbers_subtrees_in_completion_order() -> None:
    # Leaf 0, leaf 1, subtree (1, 0), leaf 2, leaf 3, (1, 1), (2, 0), leaf 4: as sumdb/tlog.
    order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)]
    assert [merkle.stored_hash_index(level, n) for level, n in order] == list(range(8))
    for index in range(20_000):
        assert merkle.stored_hash_index(*merkle.split_stored_hash_index(index)) == index
    assert [merkle.stored_hash_count(size) for size in range(9)] == [0, 1, 3, 4, 7, 8, 10, 11, 15]


def test_stored_hashes_are_the_subtree_hashes_and_give_every_root() -> None:
    hashes = leaves_of(300)
    stored = build_stored(hashes)
    for index, value in enumerate(stored):
        level, n = merkle.split_stored_hash_index(index)
        assert value == merkle.root(hashes[n << level : (n + 1) << level])
    reads: list[int] = []

    def read(indexes):
        reads.append(len(indexes))
        return [stored[i] for i in indexes]

    for size in range(301):
        assert merkle.tree_hash(size, read) == merkle.root(hashes[:size])
    assert max(reads) <= 9  # one per set bit of the size


def test_proofs_from_stored_hashes_equal_proofs_from_leaves() -> None:
    hashes = leaves_of(300)
    stored = build_stored(hashes)
    from_store = merkle.stored_subtree_hash(lambda indexes: [stored[i] for i in indexes])
    from_leaves = merkle.leaves_subtree_hash(hashes)
    for size in (1, 2, 3, 255, 256, 257, 300):
        for index in {0, size // 2, size - 1}:
            assert merkle.inclusion_proof(index, size, from_store) == merkle.inclusion_proof(
                index, size, from_leaves
            )
        for old_size in {1, size // 3 or 1, size - 1 or 1, size}:
            assert merkle.consistency_proof(old_size, size, from_store) == merkle.consistency_proof(
                old_size, size, from_leaves
            )


def test_stored_hashes_for_leaf_refuses_a_short_read() -> None:
    with pytest.raises(ValueError, match="read 0 hashes, asked for 1"):
        merkle.stored_hashes_for_leaf(1, SOME_HASH, lambda indexes: [])
    with pytest.raises(ProofError, match="leaf hash is 4 bytes"):
        merkle.stored_hashes_for_leaf(0, b"leaf", lambda indexes: [])


# C2SP tlog-tiles


def test_tile_paths_follow_the_spec_examples() -> None:
    # c2sp.org/tlog-tiles: "index 1234067 will be encoded as x001/x234/067".
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(2, 1234067, 5).path == "tile/2/x001/x234/067.p/5"
    assert Tile(1, 0).path == "tile/1/000"
    assert Tile(0, 999).path == "tile/0/999"
    assert Tile(0, 1000).path == "tile/0/x001/000"
    assert Tile(0, 1_000_000, 255).path == "tile/0/x001/x000/000.p/255"
    assert EntryBundle(1234067).path == "tile/entries/x001/x234/067"
    assert EntryBundle(7, 1).path == "tile/entries/007.p/1"


@given(
    st.integers(min_value=0, max_value=63),
    st.integers(min_value=0, max_value=2**55),
    st.integers(min_value=1, max_value=256),
)
def test_every_tile_path_parses_back_to_its_tile(level: int, index: int, width: int) -> None:
    assert merkle.parse_tile_path(Tile(level, index, width).path) == Tile(level, index, width)
    assert merkle.parse_tile_path(EntryBundle(index, width).path) == EntryBundle(index, width)


def test_tile_paths_parse_back_to_their_tile() -> None:
    for tile in (Tile(0, 0), Tile(3, 1234067, 17), Tile(63, 10**15, 255)):
        assert merkle.parse_tile_path(tile.path) == tile
    for bundle in (EntryBundle(0), EntryBundle(1234067, 200)):
        assert merkle.parse_tile_path(bundle.path) == bundle


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/0",
        "tile/0/0000",
        "tile/0/x000/001",
        "tile/0/001/x002",
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/257",
        "tile/0/000.p/012",
        "tile/0/000.p/",
        "tile/entries/000.p/256",
        "tile/data/000",
        "tile/8/0/000",
        "tile/0/../000",
        "tile/0/000/",
        "/tile/0/000",
        "tile/0/\u0660\u0660\u0660",
        "tile/0/" + "x001/" * 7 + "000",
    ],
)
def test_tile_path_refuses_anything_but_the_canonical_spelling(path: str) -> None:
    with pytest.raises(TilePathError):
        merkle.parse_tile_path(path)


def test_tiles_of_a_tree_are_the_full_ones_and_the_partial_edge() -> None:
    assert merkle.tiles_for_size(0) == []
    assert merkle.tiles_for_size(1) == [Tile(0, 0, 1)]
    assert merkle.tiles_for_size(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert merkle.tiles_for_size(300) == [Tile(0, 0), Tile(0, 1, 44), Tile(1, 0, 1)]
    size = 256 * 256 + 256 * 3 + 5
    assert merkle.tiles_for_size(size) == [
        *(Tile(0, n) for n in range(259)),
        Tile(0, 259, 5),
        Tile(1, 0),
        Tile(1, 1, 3),
        Tile(2, 0, 1),
    ]
    assert merkle.new_tiles(256, 300) == [Tile(0, 1, 44)]
    assert merkle.new_tiles(300, 300) == []
    assert merkle.new_tiles(255, 257) == [Tile(0, 0), Tile(0, 1, 1), Tile(1, 0, 1)]
    assert merkle.entry_bundles_for_size(513) == [EntryBundle(0), EntryBundle(1), EntryBundle(2, 1)]
    assert merkle.entry_bundles_for_size(512) == [EntryBundle(0), EntryBundle(1)]


def tiles_of(stored: list[bytes], size: int) -> dict[tuple[int, int], bytes]:
    read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
    return {(t.level, t.index): merkle.tile_data(t, read) for t in merkle.tiles_for_size(size)}


def test_subtree_hashes_read_from_tiles_equal_hashes_computed_directly() -> None:
    size = 256 * 3 + 17
    hashes = leaves_of(size)
    stored = build_stored(hashes)
    tiles = tiles_of(stored, size)
    from_tiles = merkle.tile_subtree_hash(lambda tile: tiles[(tile.level, tile.index)])
    for index in range(len(stored)):
        level, n = merkle.split_stored_hash_index(index)
        assert from_tiles(level, n) == merkle.root(hashes[n << level : (n + 1) << level])
        tile, _, _ = merkle.tile_for_stored_hash(index)
        data = tiles[(tile.level, tile.index)]
        wider = Tile(tile.level, tile.index, len(data) // merkle.HASH_SIZE)
        assert merkle.hash_from_tile(wider, data, index) == stored[index]


def test_partial_tiles_are_prefixes_of_the_tiles_they_grow_into() -> None:
    hashes = leaves_of(600)
    stored = build_stored(hashes)
    final = tiles_of(stored, 600)
    for size in (1, 100, 255, 256, 257, 511, 513):
        for (level, index), data in tiles_of(stored, size).items():
            assert final[(level, index)].startswith(data)


def test_proofs_from_tiles_read_a_few_tiles_and_equal_proofs_from_stored_hashes() -> None:
    size = 256 * 256 + 256 * 2 + 3
    hashes = leaves_of(size)
    stored = build_stored(hashes)
    tiles = tiles_of(stored, size)
    from_store = merkle.stored_subtree_hash(lambda indexes: [stored[i] for i in indexes])
    root = merkle.tree_hash(size, lambda indexes: [stored[i] for i in indexes])
    assert root == merkle.root(hashes)
    read: list[Tile] = []

    def read_tile(tile: Tile) -> bytes:
        read.append(tile)
        return tiles[(tile.level, tile.index)]

    for index in (0, 1, 255, 256, 40_000, size - 1):
        read.clear()
        proof = merkle.inclusion_proof(index, size, merkle.tile_subtree_hash(read_tile))
        assert proof == merkle.inclusion_proof(index, size, from_store)
        merkle.inclusion_verify(index, size, hashes[index], proof, root)
        # Three tile levels, and at most the leaf's own tile and the right edge's in each.
        assert len(read) <= 2 * 3
    for old_size in (1, 256, 40_001, size - 1):
        read.clear()
        proof = merkle.consistency_proof(old_size, size, merkle.tile_subtree_hash(read_tile))
        assert proof == merkle.consistency_proof(old_size, size, from_store)
        merkle.consistency_verify(old_size, size, merkle.root(hashes[:old_size]), root, proof)
        assert len(read) <= 3 * 3


def test_tile_readers_refuse_the_wrong_bytes() -> None:
    hashes = leaves_of(10)
    stored = build_stored(hashes)
    data = tiles_of(stored, 10)[(0, 0)]
    with pytest.raises(ValueError, match="must be 320 bytes, not 319"):
        merkle.hash_from_tile(Tile(0, 0, 10), data[:-1], 0)
    with pytest.raises(
        ValueError, match=re.escape("stored hash 0 is in tile/0/000.p/1, not tile/0/001")
    ):
        merkle.hash_from_tile(Tile(0, 1), bytes(8192), 0)
    short = merkle.tile_subtree_hash(lambda tile: data[:64])
    with pytest.raises(ValueError, match=re.escape("tile/0/000.p/4 read as 64 bytes")):
        short(2, 0)
    with pytest.raises(ValueError, match="no tile"):
        Tile(0, 0, 0)


def test_entry_bundles_round_trip_and_refuse_truncation() -> None:
    leaves = [b"", b"a", b"x" * 65535]
    data = merkle.entry_bundle_encode(leaves)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert merkle.entry_bundle_decode(data) == leaves
    with pytest.raises(ValueError, match="ends inside a leaf"):
        merkle.entry_bundle_decode(data[:-1])
    with pytest.raises(ValueError, match="ends inside a length"):
        merkle.entry_bundle_decode(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="does not fit"):
        merkle.entry_bundle_encode([b"x" * 65536])
    with pytest.raises(ValueError, match="1 to 256 leaves, not 257"):
        merkle.entry_bundle_decode(b"\x00\x00" * 257)
    with pytest.raises(ValueError, match="not 0"):
        merkle.entry_bundle_encode([])


@given(st.lists(st.binary(max_size=8), max_size=300))
def test_compact_range_gives_every_root_and_every_complete_subtree(leaves):
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    compact = merkle.CompactRange()
    completed = {}
    for size, hashed in enumerate(hashes, start=1):
        for subtree in compact.append(hashed):
            completed[(subtree.level, subtree.n)] = subtree.hash
        assert compact.size == size
        assert compact.root() == merkle.root(hashes[:size])
    assert merkle.CompactRange().root() == EMPTY_ROOT
    reference = merkle.leaves_subtree_hash(hashes)
    for (level, n), hashed in completed.items():
        assert hashed == reference(level, n)
    # Exactly the subtrees Go's layout stores, so tiles can be checked as they close.
    assert len(completed) == merkle.stored_hash_count(len(hashes))


def _tiles_by_stored_hashes(hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    stored: list[bytes] = []
    read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
    for index, hashed in enumerate(hashes):
        stored.extend(merkle.stored_hashes_for_leaf(index, hashed, read))
    return {
        (tile.level, tile.index): merkle.tile_data(tile, read)
        for tile in merkle.tiles_for_size(len(hashes))
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=6),
    st.sampled_from([0, 1, 255, 256, 65_535, 65_536 - 300]),
)
def test_tiles_appended_in_any_batches_equal_the_tiles_of_the_whole_tree(
    batches: list[int], base: int
) -> None:
    """Extending tiles batch by batch gives the bytes of Go's layout for every size reached.

    `base` starts the tree just before the edges where tiles of two levels complete at once.
    """
    total = base + sum(batches)
    hashes = [merkle.leaf_hash(b"%d" % i) for i in range(total)]
    tiles = merkle.tiles_append(0, {}, hashes[:base])
    size = base
    for count in batches:
        wanted = {(t.level, t.index) for t in merkle.partial_tiles(size)}
        given_tiles = {key: tiles[key] for key in wanted}
        tiles.update(merkle.tiles_append(size, given_tiles, hashes[size : size + count]))
        size += count
    if size >= 65_536 - 300:
        # Only the tiles near the edge: rebuilding 65k stored hashes per example is slow.
        expected = {
            (t.level, t.index): merkle.tile_data(t, _stored_reader(hashes))
            for t in merkle.partial_tiles(size)
        }
        assert {key: tiles[key] for key in expected} == expected
        assert len(tiles) == len(merkle.tiles_for_size(size))
    else:
        assert tiles == _tiles_by_stored_hashes(hashes)
    subtree_hash = merkle.tile_subtree_hash(lambda t: tiles[(t.level, t.index)])
    assert merkle.tree_root_from(size, subtree_hash) == merkle.root(hashes)


_STORED: dict[int, list[bytes]] = {}


def _stored_reader(hashes: list[bytes]) -> merkle.HashReader:
    key = len(hashes)
    if key not in _STORED:
        stored: list[bytes] = []
        read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
        for index, hashed in enumerate(hashes):
            stored.extend(merkle.stored_hashes_for_leaf(index, hashed, read))
        _STORED[key] = stored
    stored = _STORED[key]
    return lambda indexes: [stored[i] for i in indexes]


def test_tiles_append_refuses_tiles_out_of_step_with_the_tree() -> None:
    hashes = [merkle.leaf_hash(b"%d" % i) for i in range(10)]
    tiles = merkle.tiles_append(0, {}, hashes[:5])
    with pytest.raises(ValueError, match="holds 5 hashes"):
        merkle.tiles_append(6, tiles, hashes[6:])
    with pytest.raises(ValueError, match="holds 0 hashes"):
        merkle.tiles_append(5, {}, hashes[5:])
    assert merkle.partial_tiles(256) == [Tile(1, 0, 1)]
    assert merkle.partial_tiles(0) == []


@given(st.integers(min_value=0, max_value=2**40))
def test_partial_tiles_are_the_partial_tiles_of_the_tree(size: int) -> None:
    if size > 300_000:
        # Listing every tile of a large tree is slow; its top levels are enough.
        size = size % 300_000
    expected = [t for t in merkle.tiles_for_size(size) if t.width < merkle.TILE_WIDTH]
    assert merkle.partial_tiles(size) == expected
