"""Go's golang.org/x/mod/sumdb/note and sumdb/tlog accept what we sign, and we accept what Go signs.

tests/go/notecheck is built once per session with Debian's golang-go and
golang-golang-x-mod-dev (x/mod 0.7.0), which `scripts/services-up` installs. That x/mod has no
cosignature (0x04) support, so cosignatures are checked only in that Go clients ignore them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium_client.notes import (
    COSIGNATURE_V1,
    NoteError,
    NoteSigner,
    checkpoint_format,
    checkpoint_parse,
    cosignature_sign,
    note_open,
    note_sign,
    note_verifier,
    skey_parse,
    vkey_parse,
)

SOURCE = Path(__file__).resolve().parent.parent / "go" / "notecheck"
GOPATH = "/usr/share/gocode"
ORIGIN = "consortium.example/log"
ROOT = hashlib.sha256(b"root").digest()
# golang.org/x/mod/sumdb/note, note_test.go.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"

GoCheck = Callable[..., dict[str, Any]]


class GoRefused(Exception):
    pass


@pytest.fixture(scope="session")
def notecheck(tmp_path_factory: pytest.TempPathFactory) -> GoCheck:
    go = shutil.which("go")
    if go is None or not (Path(GOPATH) / "src/golang.org/x/mod/sumdb/note").is_dir():
        pytest.fail(
            "Go and golang.org/x/mod are needed for the interop tests: "
            "`scripts/services-up` installs golang-go and golang-golang-x-mod-dev"
        )
    build = tmp_path_factory.mktemp("notecheck")
    binary = build / "notecheck"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(build / "cache"),
        "GOFLAGS": "",
    }
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    def run(**request: Any) -> dict[str, Any]:
        answer = subprocess.run(  # noqa: S603 - our own binary
            [str(binary)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
        )
        if answer.returncode != 0:
            raise GoRefused(answer.stderr.strip())
        result: dict[str, Any] = json.loads(answer.stdout)
        return result

    return run


def log_signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",))),
        min_size=1,
        max_size=4,
    )
)
def test_go_verifies_our_signed_notes(notecheck: GoCheck, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    key = log_signer()
    answer = notecheck(cmd="verify", vkeys=[key.verifier.vkey], note=note_sign(text, [key]))
    assert answer["text"] == text
    assert answer["verified"] == [f"{ORIGIN}+{key.key_hash:08x}"]


def test_go_verifies_our_checkpoint_and_refuses_a_tampered_one(notecheck: GoCheck) -> None:
    key = log_signer()
    body = checkpoint_format(ORIGIN, 1234, ROOT, ["extension line"])
    note = note_sign(body, [key])
    answer = notecheck(cmd="checkpoint", vkeys=[key.verifier.vkey], note=note)
    assert answer == {
        "origin": ORIGIN,
        "size": 1234,
        "root": base64.b64encode(ROOT).decode(),
        "extensions": ["extension line"],
    }
    for tampered in [note.replace("\n1234\n", "\n1235\n"), note.replace(ORIGIN, "x" + ORIGIN, 1)]:
        with pytest.raises(GoRefused, match="invalid signature"):
            notecheck(cmd="checkpoint", vkeys=[key.verifier.vkey], note=tampered)
    with pytest.raises(GoRefused, match="no verifiable signatures"):
        notecheck(cmd="checkpoint", vkeys=[log_signer().verifier.vkey], note=note)


def test_go_tlog_reads_our_checkpoint_format(notecheck: GoCheck) -> None:
    # tlog.FormatTree / ParseTree speak only the go.sum database's origin: with that origin,
    # Go's checkpoint text and ours are the same bytes.
    origin = "go.sum database tree"
    for size in [0, 1, 2**40 + 7]:
        expected = notecheck(cmd="format-tree", size=size, root=base64.b64encode(ROOT).decode())
        assert checkpoint_format(origin, size, ROOT) == expected["text"]
        key = NoteSigner("sum.golang.org", Ed25519PrivateKey.generate())
        note = note_sign(expected["text"], [key])
        assert notecheck(cmd="checkpoint", vkeys=[key.verifier.vkey], note=note)["size"] == size


def test_go_ignores_our_cosignatures_and_keeps_the_log_signature(notecheck: GoCheck) -> None:
    key = log_signer()
    body = checkpoint_format(ORIGIN, 5, ROOT)
    witness = Ed25519PrivateKey.generate()
    cosig = cosignature_sign(
        name="witness.example", private_key=witness, checkpoint_text=body, timestamp=1_700_000_000
    )
    note = note_sign(body, [key], signatures=[cosig])
    answer = notecheck(cmd="verify", vkeys=[key.verifier.vkey], note=note)
    assert answer["unverified"] == [f"witness.example+{cosig.key_hash:08x}"]
    # The cosigner's 0x04 vkey is well formed for Go too, which cannot verify with it: Go
    # 0.7.0 refuses the key type rather than misreading it.
    witness_vkey = note_verifier("witness.example", witness.public_key(), COSIGNATURE_V1).vkey
    with pytest.raises(GoRefused, match="unknown verifier algorithm"):
        notecheck(cmd="verify", vkeys=[witness_vkey], note=note)


def test_we_verify_go_signed_notes(notecheck: GoCheck) -> None:
    text = "consortium.example/log\n9\n" + base64.b64encode(ROOT).decode() + "\n"
    for skey in [PETER_SKEY, notecheck(cmd="generate", name=ORIGIN)["skey"]]:
        note = notecheck(cmd="sign", skey=skey, text=text)["note"]
        signer = skey_parse(skey)
        opened = note_open(note, [signer.verifier])
        assert opened.text == text
        assert checkpoint_parse(opened.text).size == 9
        assert note == note_sign(text, [signer])  # Ed25519 is deterministic
        with pytest.raises(NoteError):
            note_open(note.replace("\n9\n", "\n8\n"), [signer.verifier])


def test_keys_round_trip_between_go_and_us(notecheck: GoCheck) -> None:
    go_keys = notecheck(cmd="generate", name="witness.example/w1")
    signer = skey_parse(go_keys["skey"])
    assert signer.skey == go_keys["skey"]
    assert signer.verifier.vkey == go_keys["vkey"]
    assert vkey_parse(go_keys["vkey"]) == signer.verifier

    ours = NoteSigner("partner.example/k1", Ed25519PrivateKey.generate())
    answer = notecheck(cmd="keys", skey=ours.skey, vkey=ours.verifier.vkey)
    assert answer == {"name": "partner.example/k1", "hash": f"{ours.key_hash:08x}"}
    other = NoteSigner("partner.example/k1", Ed25519PrivateKey.generate())
    with pytest.raises(GoRefused):
        notecheck(cmd="keys", skey=ours.skey, vkey=other.verifier.vkey)
