"""Offline verification: checkpoints, proofs, entries, envelopes, revocations, trusted state."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium_client.commitments import salt_new
from consortium_client.dsse import SUBMISSION_V1_PAYLOAD_TYPE, envelope_sign
from consortium_client.notes import NoteSigner, checkpoint_format, note_sign
from consortium_client.strictjson import strict_json_dumps
from consortium_client.verify import (
    VerificationError,
    consistency_proof_parse,
    inclusion_proof_parse,
    trusted_advance,
    trusted_state_dumps,
    trusted_state_load,
    trusted_state_loads,
    trusted_state_new,
    trusted_state_save,
    verify_checkpoint,
    verify_consistency,
    verify_entry,
    verify_envelope,
    verify_inclusion,
    verify_revocation,
)
from tests.client.samplelog import ORIGIN, TIME, SampleLog, Witness, leaf_v2, pdq

FLIPS = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module")
def log() -> SampleLog:
    log = SampleLog()
    log.other()
    log.submit([pdq(), pdq(), pdq()])
    log.other("partner_suspended")
    log.revoke(1)
    log.submit([pdq()], labels=["csam", "verified"])
    return log


def _flip(data: bytes, position: int, bit: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


# Checkpoints


def test_checkpoint_verifies_with_the_log_key(log: SampleLog) -> None:
    checkpoint = verify_checkpoint(log.checkpoint(), log.vkey)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, len(log.leaves))
    assert checkpoint.root == log.root(len(log.leaves))
    assert checkpoint.cosigners == ()


def test_checkpoint_by_another_key_is_refused(log: SampleLog) -> None:
    impostor = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    note = note_sign(checkpoint_format(ORIGIN, 3, log.root(3)), [impostor])
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_checkpoint(note, log.vkey)


def test_checkpoint_of_another_origin_is_refused(log: SampleLog) -> None:
    note = note_sign(checkpoint_format("other.example/log", 3, log.root(3)), [log.signer])
    with pytest.raises(VerificationError, match=r"origin is 'other.example/log'"):
        verify_checkpoint(note, log.vkey)
    assert verify_checkpoint(note, log.vkey, "other.example/log").size == 3


def test_a_cosigner_key_is_not_a_log_key(log: SampleLog) -> None:
    with pytest.raises(VerificationError, match="must be an Ed25519"):
        verify_checkpoint(log.checkpoint(), Witness("w").vkey)


@FLIPS
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_flipping_any_bit_of_a_checkpoint_fails(log: SampleLog, position: int, bit: int) -> None:
    note = log.checkpoint().encode()
    with pytest.raises(VerificationError):
        verify_checkpoint(_flip(note, position, bit), log.vkey)


def test_checkpoint_quorum_counts_verified_witnesses(log: SampleLog) -> None:
    alice, bob, carol = Witness("alice"), Witness("bob"), Witness("carol")
    note = log.checkpoint(witnesses=(alice, bob, Witness("stranger")))
    vkeys = [alice.vkey, bob.vkey, carol.vkey]
    checkpoint = verify_checkpoint(note, log.vkey, witnesses=vkeys, quorum=2)
    assert [name for name, _ in checkpoint.cosigners] == ["alice", "bob"]
    with pytest.raises(VerificationError, match="cosigned by 2 of the required witnesses"):
        verify_checkpoint(note, log.vkey, witnesses=vkeys, quorum=3)


def test_a_bad_cosignature_by_a_required_witness_refuses_the_checkpoint(log: SampleLog) -> None:
    alice = Witness("alice")
    other_body = log.checkpoint(size=3)
    # alice's line cosigns another checkpoint: pasted under this one, it must not count.
    line = alice.cosign(other_body).splitlines(keepends=True)[-1]
    with pytest.raises(VerificationError, match="invalid signature for key alice"):
        verify_checkpoint(log.checkpoint() + line, log.vkey, witnesses=[alice.vkey], quorum=1)


def test_a_quorum_larger_than_the_witnesses_is_refused(log: SampleLog) -> None:
    with pytest.raises(VerificationError, match="quorum of 1 needs"):
        verify_checkpoint(log.checkpoint(), log.vkey, quorum=1)


# Proofs


def test_every_leaf_verifies_at_every_size(log: SampleLog) -> None:
    for size in range(1, len(log.leaves) + 1):
        for index in range(size):
            proof = log.inclusion(index, size)
            verify_inclusion(log.leaves[index], index, size, proof, log.root(size))


@FLIPS
@given(
    what=st.sampled_from(["leaf", "proof", "root"]),
    position=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_flipping_any_bit_of_an_inclusion_proof_fails(
    log: SampleLog, what: str, position: int, bit: int
) -> None:
    index, size = 2, len(log.leaves)
    leaf, proof, root = log.leaves[index], log.inclusion(index, size), log.root(size)
    if what == "leaf":
        leaf = _flip(leaf, position, bit)
    elif what == "root":
        root = _flip(root, position, bit)
    else:
        element = position % len(proof)
        proof[element] = _flip(proof[element], position // len(proof), bit)
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


def test_a_leaf_served_at_another_index_is_refused(log: SampleLog) -> None:
    # Even a proof that holds for the position does not make the leaf's own index wrong.
    size = len(log.leaves)
    with pytest.raises(VerificationError, match="names index 2, not 3"):
        verify_inclusion(log.leaves[2], 3, size, log.inclusion(3, size), log.root(size))


def test_a_non_canonical_leaf_is_refused(log: SampleLog) -> None:
    spaced = json.dumps(json.loads(log.leaves[0])).encode()
    with pytest.raises(VerificationError, match="not canonical JSON"):
        verify_inclusion(spaced, 0, 1, [], log.root(1))


@FLIPS
@given(
    sizes=st.tuples(st.integers(1, 7), st.integers(1, 7)).map(sorted),
    position=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_consistency_verifies_and_any_flip_fails(
    log: SampleLog, sizes: list[int], position: int, bit: int
) -> None:
    old, new = sizes
    proof = log.consistency(old, new)
    verify_consistency(old, log.root(old), new, log.root(new), proof)
    targets = [log.root(old), log.root(new), *proof]
    target = position % len(targets)
    targets[target] = _flip(targets[target], position // len(targets), bit)
    old_root, new_root, *flipped = targets
    with pytest.raises(VerificationError):
        verify_consistency(old, old_root, new, new_root, flipped)


# Entries, envelopes and revocations


def test_entry_value_and_salt_open_the_leaf(log: SampleLog) -> None:
    value, salt = log.openings[1]
    assert verify_entry(log.leaves[1], value, salt)["index"] == 1
    assert verify_entry(log.leaves[1], value.upper(), salt)["index"] == 1  # normalised first


def test_entry_with_another_value_or_salt_fails(log: SampleLog) -> None:
    value, salt = log.openings[1]
    with pytest.raises(VerificationError, match="do not match the commitment"):
        verify_entry(log.leaves[1], pdq(), salt)
    with pytest.raises(VerificationError, match="do not match the commitment"):
        verify_entry(log.leaves[1], value, salt_new())
    with pytest.raises(VerificationError, match="salt is 32 lowercase hex"):
        verify_entry(log.leaves[1], value, "zz")
    with pytest.raises(VerificationError, match="type 'signing_key_registered'"):
        verify_entry(log.leaves[0], value, salt)


def test_a_version_1_leaf_is_not_read_as_version_2(log: SampleLog) -> None:
    document = json.loads(log.leaves[1])
    document["v"] = 1
    leaf = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(VerificationError, match="version 1, not 2"):
        verify_entry(leaf, *log.openings[1])


def test_envelope_verifies_against_its_leaf(log: SampleLog) -> None:
    public = log.partner_key.public_key()
    for index in (1, 2, 3, 6):
        signed = verify_envelope(log.leaves[index], log.envelopes[index], public)
        assert signed["commitment"] == json.loads(log.leaves[index])["commitment"]


@FLIPS
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_flipping_any_bit_of_an_envelope_fails(log: SampleLog, position: int, bit: int) -> None:
    envelope = _flip(log.envelopes[1], position, bit)
    with pytest.raises(VerificationError):
        verify_envelope(log.leaves[1], envelope, log.partner_key.public_key())


def test_envelope_with_another_key_fails(log: SampleLog) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(VerificationError, match="not the leaf's key"):
        verify_envelope(log.leaves[1], log.envelopes[1], other)


def test_envelope_of_another_submission_fails(log: SampleLog) -> None:
    with pytest.raises(VerificationError, match="SHA-256"):
        verify_envelope(log.leaves[1], log.envelopes[6], log.partner_key.public_key())


def test_signed_envelope_without_the_leafs_commitment_fails() -> None:
    # The server built a leaf whose envelope hash is right but whose labels were changed.
    log = SampleLog()
    [index] = log.submit([pdq()], labels=["ncii"])
    document = json.loads(log.leaves[index])
    document["labels"] = ["csam"]
    leaf = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(VerificationError, match="no signed entry has the leaf's"):
        verify_envelope(leaf, log.envelopes[index], log.partner_key.public_key())


def test_version_1_submission_envelope_is_refused() -> None:
    log = SampleLog()
    [index] = log.submit([pdq()])
    payload = strict_json_dumps({"list": "ncii", "entries": [], "timestamp": TIME, "nonce": "0"})
    envelope = envelope_sign(SUBMISSION_V1_PAYLOAD_TYPE, payload, log.partner_key)
    document = json.loads(log.leaves[index])
    document["envelope"] = hashlib.sha256(envelope).hexdigest()
    leaf = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(VerificationError, match=r"payload type is .*submission\.v1"):
        verify_envelope(leaf, envelope, log.partner_key.public_key())


def test_revocation_verifies_and_names_its_entry(log: SampleLog) -> None:
    payload = verify_revocation(log.leaves[5], log.envelopes[5], log.partner_key.public_key())
    assert payload["entries"] == [1]


def test_revocation_leaf_naming_another_entry_fails(log: SampleLog) -> None:
    document = json.loads(log.leaves[5])
    document["entry"] = 2
    leaf = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(VerificationError, match="does not name entry 2"):
        verify_revocation(leaf, log.envelopes[5], log.partner_key.public_key())


def test_administrators_revocation_has_no_envelope_to_verify(log: SampleLog) -> None:
    leaf = leaf_v2(9, "entry_revoked", entry=1, key=None, envelope=None, revoked_by="admin:x")
    with pytest.raises(VerificationError, match="names no signed envelope"):
        verify_revocation(leaf, log.envelopes[5], log.partner_key.public_key())


# Trusted state


def test_trusted_state_advances_along_a_consistent_history() -> None:
    log = SampleLog()
    log.submit([pdq(), pdq()])
    state = trusted_advance(trusted_state_new(log.vkey), log.checkpoint(), None)
    assert state.checkpoint is not None
    assert state.checkpoint.size == 2
    log.submit([pdq()])
    log.other()
    state = trusted_advance(state, log.checkpoint(), log.consistency(2))
    assert state.checkpoint is not None
    assert state.checkpoint.size == 4
    # The same checkpoint again is no change.
    assert trusted_advance(state, log.checkpoint(), None).checkpoint == state.checkpoint


def test_trusted_state_refuses_a_rollback() -> None:
    log = SampleLog()
    log.submit([pdq(), pdq(), pdq()])
    state = trusted_advance(trusted_state_new(log.vkey), log.checkpoint(), None)
    with pytest.raises(VerificationError, match=r"^rollback: .* size 2, smaller than .* size 3$"):
        trusted_advance(state, log.checkpoint(size=2), None)


def test_trusted_state_refuses_two_roots_for_one_size() -> None:
    log = SampleLog()
    log.submit([pdq(), pdq()])
    state = trusted_advance(trusted_state_new(log.vkey), log.checkpoint(), None)
    fork = SampleLog(signer=log.signer)
    fork.submit([pdq(), pdq()])
    with pytest.raises(VerificationError, match=r"^fork: two roots for size 2"):
        trusted_advance(state, fork.checkpoint(), None)


def test_trusted_state_refuses_a_larger_tree_that_does_not_extend_it() -> None:
    log = SampleLog()
    log.submit([pdq(), pdq(), pdq()])
    state = trusted_advance(trusted_state_new(log.vkey), log.checkpoint(), None)
    # The same key signs a history that rewrote leaf 1: its own proof does not hold.
    fork = SampleLog(signer=log.signer)
    fork.leaves = [log.leaves[0], log.leaves[2], log.leaves[1], log.leaves[0]]
    with pytest.raises(VerificationError, match=r"^fork: the checkpoint of size 4 does not extend"):
        trusted_advance(state, fork.checkpoint(), fork.consistency(3))
    with pytest.raises(VerificationError, match="no consistency proof from size 3 to 4"):
        trusted_advance(state, fork.checkpoint(), None)


def test_trusted_state_applies_its_witness_quorum() -> None:
    log = SampleLog()
    log.submit([pdq()])
    alice = Witness("alice")
    state = trusted_state_new(log.vkey, witnesses=[alice.vkey], quorum=1)
    with pytest.raises(VerificationError, match="fewer than the quorum of 1"):
        trusted_advance(state, log.checkpoint(), None)
    state = trusted_advance(state, log.checkpoint(witnesses=(alice,)), None)
    assert state.checkpoint is not None
    assert [name for name, _ in state.checkpoint.cosigners] == ["alice"]


def test_trusted_state_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    log = SampleLog()
    log.submit([pdq()])
    alice = Witness("alice")
    state = trusted_state_new(log.vkey, witnesses=[alice.vkey], quorum=1)
    state = trusted_advance(state, log.checkpoint(witnesses=(alice,)), None)
    path = tmp_path / "consortium" / "trusted.json"
    trusted_state_save(path, state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert trusted_state_load(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["trusted.json"]  # no temporary left
    trusted_state_save(path, state)
    assert trusted_state_load(path) == state


def test_trusted_state_file_with_an_edited_root_is_refused() -> None:
    log = SampleLog()
    log.submit([pdq()])
    state = trusted_advance(trusted_state_new(log.vkey), log.checkpoint(), None)
    document = json.loads(trusted_state_dumps(state))
    document["checkpoint"]["root"] = base64.b64encode(bytes(32)).decode()
    with pytest.raises(VerificationError, match="not those of its checkpoint note"):
        trusted_state_loads(json.dumps(document))


def test_proof_files_parse_in_the_servers_shapes() -> None:
    log = SampleLog()
    log.submit([pdq(), pdq(), pdq()])
    index, size, hashes = inclusion_proof_parse(log.inclusion_json(1))
    assert (index, size, hashes) == (1, 3, log.inclusion(1))
    old, new, hashes = consistency_proof_parse(log.consistency_json(1))
    assert (old, new, hashes) == (1, 3, log.consistency(1))
    with pytest.raises(VerificationError, match="not canonical base64"):
        inclusion_proof_parse('{"index": 0, "size": 1, "hashes": ["AB=="]}')
    with pytest.raises(VerificationError, match="'size' must be a non-negative integer"):
        inclusion_proof_parse('{"index": 0, "size": true, "hashes": []}')


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.tuples(st.integers(1, 40), st.integers(1, 40)).map(sorted))
def test_trusted_state_follows_any_growing_log(sizes: list[int]) -> None:
    log = SampleLog()
    for _ in range(sizes[1]):
        log.other()
    state = trusted_advance(trusted_state_new(log.vkey), log.checkpoint(sizes[0]), None)
    state = trusted_advance(state, log.checkpoint(sizes[1]), log.consistency(*sizes))
    assert state.checkpoint is not None
    assert state.checkpoint.size == sizes[1]
