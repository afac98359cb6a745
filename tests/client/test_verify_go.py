"""The verifier accepts checkpoints signed and proofs made by Go's sumdb/note and sumdb/tlog.

So a log made by code we did not write verifies with ours: our checks are not merely
the mirror image of our own proof generation.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from consortium_client import merkle
from consortium_client.notes import checkpoint_format
from consortium_client.verify import (
    VerificationError,
    trusted_advance,
    trusted_state_new,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from tests.client.samplelog import ORIGIN, SampleLog, pdq
from tests.client.test_merkle_go import ask_go, tlogcheck  # noqa: F401 - fixture
from tests.client.test_notes_go import GoCheck, notecheck  # noqa: F401 - fixture


def _go_log(go_note: GoCheck, size: int) -> tuple[SampleLog, dict[str, str]]:
    log = SampleLog()
    while len(log.leaves) < size:
        log.submit([pdq()])
    return log, go_note(cmd="generate", name=ORIGIN)


def _go_checkpoint(go_note: GoCheck, skey: str, log: SampleLog, size: int) -> str:
    body = checkpoint_format(ORIGIN, size, log.root(size))
    note: str = go_note(cmd="sign", skey=skey, text=body)["note"]
    return note


def _go_proofs(go_tlog: Path, log: SampleLog, checks: list[dict]) -> list[list[bytes]]:
    hashes = [merkle.leaf_hash(leaf) for leaf in log.leaves]
    for check in checks:
        check.setdefault("root", "00" * 32)
        check.setdefault("old_root", "00" * 32)
    answers = ask_go(go_tlog, hashes, checks)["answers"]
    return [[bytes.fromhex(h) for h in answer.get("proof", [])] for answer in answers]


def test_go_signed_checkpoints_verify_and_advance_the_trusted_state(
    notecheck: GoCheck,  # noqa: F811
    tlogcheck: Path,  # noqa: F811
) -> None:
    log, keys = _go_log(notecheck, 40)
    state = trusted_state_new(keys["vkey"])
    state = trusted_advance(state, _go_checkpoint(notecheck, keys["skey"], log, 13), None)
    [proof] = _go_proofs(tlogcheck, log, [{"kind": "consistency", "old_size": 13, "size": 40}])
    state = trusted_advance(state, _go_checkpoint(notecheck, keys["skey"], log, 40), proof)
    assert state.checkpoint is not None
    assert (state.checkpoint.size, state.checkpoint.root) == (40, log.root(40))
    with pytest.raises(VerificationError, match="rollback"):
        trusted_advance(state, _go_checkpoint(notecheck, keys["skey"], log, 39), None)


def test_go_proofs_verify_and_go_signatures_bind_the_checkpoint(
    notecheck: GoCheck,  # noqa: F811
    tlogcheck: Path,  # noqa: F811
) -> None:
    log, keys = _go_log(notecheck, 300)
    checkpoint = verify_checkpoint(_go_checkpoint(notecheck, keys["skey"], log, 300), keys["vkey"])
    indexes = [0, 1, 150, 255, 256, 299]
    checks = [{"kind": "inclusion", "index": i, "size": 300} for i in indexes]
    checks += [{"kind": "consistency", "old_size": m, "size": 300} for m in (1, 7, 256, 299)]
    proofs = _go_proofs(tlogcheck, log, checks)
    for index, proof in zip(indexes, proofs, strict=False):
        verify_inclusion(log.leaves[index], index, 300, proof, checkpoint.root)
    for old, proof in zip((1, 7, 256, 299), proofs[len(indexes) :], strict=True):
        verify_consistency(old, log.root(old), 300, checkpoint.root, proof)

    # A Go-signed note whose size was edited no longer verifies with Go's key.
    note = _go_checkpoint(notecheck, keys["skey"], log, 300).replace("\n300\n", "\n299\n")
    with pytest.raises(VerificationError, match="invalid signature"):
        verify_checkpoint(note, keys["vkey"])
    root = base64.b64encode(checkpoint.root).decode()
    assert root in note
