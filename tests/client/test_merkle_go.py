"""Our roots, proofs and tiles against Go's golang.org/x/mod/sumdb/tlog, which we did not write.

tests/go/tlogcheck is built once per session from Debian's golang-golang-x-mod-dev sources
(GOPATH mode, so no network); `scripts/services-up` installs Go and those sources.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from consortium_client import merkle

GOPATH = Path("/usr/share/gocode")
TLOG_SOURCES = GOPATH / "src/golang.org/x/mod/sumdb/tlog"
PROGRAM = Path(__file__).resolve().parent.parent / "go" / "tlogcheck" / "main.go"


@pytest.fixture(scope="session")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not TLOG_SOURCES.is_dir():
        pytest.fail(
            "Go and golang.org/x/mod/sumdb/tlog are missing: scripts/services-up installs "
            "golang-go and golang-golang-x-mod-dev"
        )
    build = tmp_path_factory.mktemp("tlogcheck")
    binary = build / "tlogcheck"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(build / "cache"),
        "GOFLAGS": "",
    }
    done = subprocess.run(  # noqa: S603 - a fixed command line
        [go, "build", "-o", str(binary), str(PROGRAM)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return binary


def ask_go(binary: Path, leaf_hashes: list[bytes], checks: list[dict[str, Any]]) -> dict[str, Any]:
    request = {"leaf_hashes": [h.hex() for h in leaf_hashes], "checks": checks}
    done = subprocess.run(  # noqa: S603 - the program built above
        [str(binary)], input=json.dumps(request), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def leaves_of(size: int) -> list[bytes]:
    return [merkle.leaf_hash(b"leaf %d" % i) for i in range(size)]


SIZES = [1, 2, 3, 7, 8, 9, 255, 256, 257, 300, 1000, 1025]


def test_go_builds_the_same_stored_hashes_and_roots(tlogcheck: Path) -> None:
    hashes = leaves_of(max(SIZES))
    checks = [{"kind": "root", "size": size} for size in SIZES]
    answer = ask_go(tlogcheck, hashes, checks)

    stored: list[bytes] = []
    read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
    for index, hashed in enumerate(hashes):
        stored.extend(merkle.stored_hashes_for_leaf(index, hashed, read))
    assert [h.hex() for h in stored] == answer["stored_hashes"]
    for size, go in zip(SIZES, answer["answers"], strict=True):
        assert go["error"] == ""
        assert go["root"] == merkle.root(hashes[:size]).hex() == merkle.tree_hash(size, read).hex()


def test_go_accepts_our_inclusion_and_consistency_proofs(tlogcheck: Path) -> None:
    hashes = leaves_of(max(SIZES))
    subtree_hash = merkle.leaves_subtree_hash(hashes)
    checks = []
    for size in SIZES:
        root = merkle.root(hashes[:size]).hex()
        for index in sorted({0, 1 % size, size // 2, size - 1}):
            proof = merkle.inclusion_proof(index, size, subtree_hash)
            checks.append(
                {"kind": "inclusion", "index": index, "size": size, "root": root}
                | {"proof": [p.hex() for p in proof]}
            )
        for old_size in sorted({1, size // 3 or 1, size - 1 or 1, size}):
            proof = merkle.consistency_proof(old_size, size, subtree_hash)
            checks.append(
                {"kind": "consistency", "old_size": old_size, "size": size, "root": root}
                | {"old_root": merkle.root(hashes[:old_size]).hex()}
                | {"proof": [p.hex() for p in proof]}
            )
    answers = ask_go(tlogcheck, hashes, checks)["answers"]
    for check, go in zip(checks, answers, strict=True):
        assert go["error"] == "", check
        # Go's own proof is ours, element for element.
        assert go.get("proof", []) == check["proof"], check


def test_go_refuses_our_proofs_once_tampered(tlogcheck: Path) -> None:
    """The comparison above means something only if Go does check what it is sent."""
    hashes = leaves_of(300)
    subtree_hash = merkle.leaves_subtree_hash(hashes)
    root = merkle.root(hashes)
    inclusion = [p.hex() for p in merkle.inclusion_proof(77, 300, subtree_hash)]
    consistency = [p.hex() for p in merkle.consistency_proof(100, 300, subtree_hash)]
    tampered = [("0" if inclusion[2][0] != "0" else "1") + inclusion[2][1:]]
    checks = [
        {"kind": "inclusion", "index": 77, "size": 300, "root": root.hex()}
        | {"proof": inclusion[:2] + tampered + inclusion[3:]},
        {"kind": "inclusion", "index": 78, "size": 300, "root": root.hex(), "proof": inclusion},
        {"kind": "consistency", "old_size": 100, "size": 300, "root": root.hex()}
        | {"old_root": merkle.root(hashes[:101]).hex(), "proof": consistency},
        {"kind": "consistency", "old_size": 100, "size": 300, "root": root.hex()}
        | {"old_root": merkle.root(hashes[:100]).hex(), "proof": consistency[:-1]},
    ]
    for go in ask_go(tlogcheck, hashes, checks)["answers"]:
        assert go["error"] != ""


def test_go_lists_the_same_tiles_with_the_same_bytes(tlogcheck: Path) -> None:
    size = 256 * 256 + 256 * 2 + 3
    hashes = leaves_of(size)
    transitions = [(0, 1), (0, 300), (255, 257), (300, 66_000), (0, size)]
    checks = [{"kind": "tiles", "old_size": old, "size": new} for old, new in transitions]
    answers = ask_go(tlogcheck, hashes, checks)["answers"]

    stored = [bytes.fromhex(h) for h in ask_go(tlogcheck, hashes, [])["stored_hashes"]]
    read = lambda indexes: [stored[i] for i in indexes]  # noqa: E731
    for (old, new), go in zip(transitions, answers, strict=True):
        assert go["error"] == ""
        tiles = merkle.new_tiles(old, new)
        assert [tile.path for tile in tiles] == go["order"]
        for tile in tiles:
            assert merkle.tile_data(tile, read).hex() == go["tiles"][tile.path]
            assert merkle.parse_tile_path(tile.path) == tile
