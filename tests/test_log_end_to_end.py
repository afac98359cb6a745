"""The verifiable log end to end, as partners run it: a real HTTP server, the client
library's HTTP client and the `consortium` command line, verifying what the server serves
(nothing here reads the server's tables to decide whether a proof holds)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from audit.actors import Actor
from audit.services import checkpoint_sign
from consortium_client import cli
from consortium_client.api import ConsortiumApi
from consortium_client.follow import checkpoint_follow, leaf_inclusion_check
from consortium_client.keys import private_key_pem, public_key_pem
from consortium_client.mirror_index import MirrorMatcher
from consortium_client.notes import COSIGNATURE_V1, note_verifier
from consortium_client.payloads import submission_envelope
from consortium_client.verify import (
    trusted_advance,
    trusted_state_new,
    verify_checkpoint,
    verify_consistency_proof,
    verify_entry,
    verify_envelope,
    verify_inclusion_proof,
)
from hashes.models import HashList
from hashes.services import entry_erase
from tests.conftest import PartnerClient, partner_client, pdq
from tests.factories import HashListFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _cli(api: ConsortiumApi, *args: str) -> int:
    return cli.main(["--url", api.base_url, "--api-key", api.api_key, *args])


def _submit(api: ConsortiumApi, partner: PartnerClient, values: list[str]) -> list[int]:
    entries = [{"algorithm": "pdq", "value": v, "labels": ["ncii"]} for v in values]
    result = api.submit(submission_envelope("ncii", entries, partner.private_key))
    return [entry["id"] for entry in result["entries"]]


def _mirror_matches(path: Path, value: str) -> list[int]:
    [result] = MirrorMatcher.load(path).search([("pdq", value)])
    return [found.entry for found in result.matches]


def test_partners_verify_witness_and_survive_an_erasure(
    live_server, tmp_path: Path, capsys
) -> None:
    alice, bob = partner_client("alice"), partner_client("bob")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    a = ConsortiumApi(live_server.url, alice.api_key)
    b = ConsortiumApi(live_server.url, bob.api_key)
    key_file = tmp_path / "alice.pem"
    key_file.write_bytes(private_key_pem(alice.private_key))
    a_state, b_state = str(tmp_path / "alice-state.json"), str(tmp_path / "bob-state.json")

    # Alice trusts the log's key on first use, then submits (payload version 2).
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(a.log_key() + "\n")
    assert _cli(a, "verify", "init", "--state", a_state, "--vkey", str(vkey_file)) == 0
    value = pdq()
    [entry_id] = _submit(a, alice, [value])
    checkpoint_sign()  # no worker runs here: what the task queued on commit would do

    assert _cli(a, "log", "checkpoint", "--state", a_state) == 0
    leaf_file = tmp_path / "leaf.json"
    assert (
        _cli(a, "log", "inclusion", str(entry_id), "--state", a_state, "--out", str(leaf_file)) == 0
    )
    assert _cli(a, "log", "inclusion", str(entry_id), "--state", a_state) == 0
    out = capsys.readouterr().out
    assert f"verified: leaf {entry_id} is in consortium.example/log size" in out
    leaf = leaf_file.read_bytes()

    # The value beside the leaf in the feed opens its commitment; the stored envelope, as
    # served, is the one the leaf hashes and alice's key signed.
    page = a.get("feed")
    [opening] = [item for item in page["values"] if item["index"] == entry_id]
    assert opening == {"index": entry_id, "value": value, "salt": opening["salt"]}
    verify_entry(leaf, opening["value"], opening["salt"])
    submission = json.loads(leaf)["submission"]
    envelope = a.envelope(submission)
    assert hashlib.sha256(envelope).hexdigest() == json.loads(leaf)["envelope"]
    signed = verify_envelope(leaf, envelope, alice.private_key.public_key())
    assert signed["commitment"] == json.loads(leaf)["commitment"]
    # The same through the command line, from files saved as the API serves them.
    (tmp_path / "envelope.json").write_bytes(envelope)
    (tmp_path / "alice.pub.pem").write_bytes(public_key_pem(alice.private_key.public_key()))
    entries_file = tmp_path / "entries.json"
    entries_file.write_bytes(a.get_bytes("log/entries", start=entry_id, end=entry_id + 1))
    assert _cli(a, "verify", "entry", "--leaf", str(entries_file), "--value", value,
                "--salt", opening["salt"]) == 0  # fmt: skip
    assert _cli(a, "verify", "envelope", "--leaf", str(entries_file),
                "--envelope", str(tmp_path / "envelope.json"),
                "--key", str(tmp_path / "alice.pub.pem")) == 0  # fmt: skip
    first = a.checkpoint()
    first_size = verify_checkpoint(first, a.log_key()).size

    # A second submission: the trusted state moves on with a consistency proof.
    [second_id] = _submit(a, alice, [pdq()])
    checkpoint_sign()
    assert _cli(a, "log", "checkpoint", "--state", a_state) == 0
    proof_file = tmp_path / "consistency.json"
    second = a.checkpoint()
    second_size = verify_checkpoint(second, a.log_key()).size
    proof_file.write_bytes(
        a.get_bytes("log/proofs/consistency", **{"from": first_size, "to": second_size})
    )
    (tmp_path / "first.txt").write_text(first)
    (tmp_path / "second.txt").write_text(second)
    assert _cli(a, "verify", "consistency", "--state", a_state,
                "--old", str(tmp_path / "first.txt"), "--new", str(tmp_path / "second.txt"),
                "--proof", str(proof_file)) == 0  # fmt: skip

    # Alice witnesses the checkpoint she verified; Bob sees her cosignature and, with
    # Alice as his witness and a quorum of one, accepts it.
    assert _cli(a, "log", "cosign", "--state", a_state, "--key", str(key_file),
                "--name", "alice") == 0  # fmt: skip
    assert "cosigned size" in capsys.readouterr().out
    witness = note_verifier("alice", alice.private_key.public_key(), COSIGNATURE_V1).vkey
    (tmp_path / "witnesses").write_text(witness + "\n")
    assert _cli(b, "verify", "init", "--state", b_state, "--vkey", str(vkey_file),
                "--witness", str(tmp_path / "witnesses"), "--quorum", "1") == 0  # fmt: skip
    assert _cli(b, "log", "checkpoint", "--state", b_state) == 0
    assert "cosigned by alice" in capsys.readouterr().out
    cosigned = b.checkpoint()
    assert verify_checkpoint(cosigned, b.log_key(), witnesses=[witness], quorum=1).cosigners
    assert _cli(b, "log", "inclusion", str(second_id), "--state", b_state) == 0

    # Bob's verified mirror matches alice's entry, until an administrator erases it. (Its
    # own state file: bob's above asks alice's cosignature of every checkpoint.)
    mirror_file = tmp_path / "mirror.db"
    mirror_state = str(tmp_path / "bob-mirror-state.json")
    capsys.readouterr()
    assert _cli(b, "--mirror", str(mirror_file), "--state", mirror_state, "sync") == 0
    assert _mirror_matches(mirror_file, value) == [entry_id]
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "x")
    entry_erase(actor=Actor.for_user(admin), entry_id=entry_id, reason="a court order")
    checkpoint_sign()

    # Every earlier checkpoint and proof still verifies, and the log only grew.
    vkey = a.log_key()
    state = trusted_advance(trusted_state_new(vkey), first, None)
    old = verify_checkpoint(first, vkey)
    latest = checkpoint_follow(a, state)
    assert latest.checkpoint is not None
    assert latest.checkpoint.size > second_size
    verify_consistency_proof(
        a.consistency_proof(old.size, latest.checkpoint.size), old, latest.checkpoint
    )
    assert leaf_inclusion_check(a, latest, entry_id) == leaf
    verify_inclusion_proof(leaf, a.inclusion_proof(entry_id, old.size), old)
    assert _cli(a, "log", "checkpoint", "--state", a_state) == 0
    assert _cli(a, "log", "inclusion", str(entry_id), "--state", a_state) == 0

    # The feed shows the entry erased; the mirror synced from it no longer matches it, nor
    # does one synced afresh.
    capsys.readouterr()
    page = b.get("feed")
    assert {"index": entry_id, "erased": True} in page["values"]
    assert value not in json.dumps(page)
    assert _cli(b, "--mirror", str(mirror_file), "--state", mirror_state, "sync") == 0
    assert "1 erased" in capsys.readouterr().out
    assert _mirror_matches(mirror_file, value) == []
    fresh = tmp_path / "fresh.db"
    assert _cli(b, "--mirror", str(fresh), "--state", mirror_state, "sync") == 0
    assert _mirror_matches(fresh, value) == []

    # A rolled-back or forged checkpoint file is refused in one line, exit 1.
    capsys.readouterr()
    (tmp_path / "forged.txt").write_text(second.replace("\n\n", "\nextra\n\n", 1))
    for name, refusal in [
        ("first.txt", f"consortium: rollback: the checkpoint is of size {first_size}, smaller"),
        ("forged.txt", "consortium: checkpoint signature: "),
    ]:
        assert _cli(a, "verify", "checkpoint", "--state", a_state, str(tmp_path / name)) == 1
        err = capsys.readouterr().err
        assert err.startswith(refusal)
        assert err.count("\n") == 1
