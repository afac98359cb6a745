"""The log's read API through HTTP: key, checkpoints, leaves, proofs, tiles, cosignatures, and
what a partner learns of events it may not see (nothing but that they exist)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.db import connection

from audit.models import AccessEvent, Checkpoint, Cosignature, LogEvent
from audit.services import checkpoint_sign
from consortium_client import merkle
from consortium_client.notes import (
    COSIGNATURE_V1,
    cosignature_sign,
    cosignature_verify,
    note_open,
    note_verifier,
    signature_parse,
    vkey_parse,
)
from hashes.models import HashList
from tests.client.test_notes_go import GoCheck, notecheck  # noqa: F401 - a fixture
from tests.conftest import PartnerClient, log_events_append, partner_client, pdq, problem
from tests.factories import HashListFactory

pytestmark = pytest.mark.django_db


def _text(response: Any) -> str:
    assert response.status_code == 200, response.content
    return response.content.decode()


def _json(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    return json.loads(response.content)


def _checkpoint(partner: PartnerClient) -> tuple[str, int, bytes]:
    """The latest checkpoint, verified with the log key: (note, size, root)."""
    vkey = _text(partner.get("/api/v1/log/key")).strip()
    note = _text(partner.get("/api/v1/log/checkpoint"))
    opened = note_open(note, [vkey_parse(vkey)])
    lines = opened.text.splitlines()
    return note, int(lines[1]), merkle_root(lines[2])


def merkle_root(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _leaf_of(partner: PartnerClient, index: int) -> bytes:
    entries = _json(partner.get("/api/v1/log/entries", start=index, end=index + 1))["entries"]
    raw = json.dumps(entries[0]["leaf"], sort_keys=True, separators=(",", ":")).encode()
    assert merkle.leaf_hash(raw).hex() == entries[0]["leaf_hash"]
    return raw


def test_a_partner_verifies_its_entry_cosigns_and_another_partner_sees_the_cosignature(
    alice: PartnerClient, bob: PartnerClient, shared_list: HashList
) -> None:
    first = _json(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(1)}]), 201)
    checkpoint_sign()
    _, old_size, old_root = _checkpoint(alice)
    index = first["entries"][0]["log_index"]

    proof = _json(alice.get("/api/v1/log/proofs/inclusion", index=index, size=old_size))
    leaf = _leaf_of(alice, index)
    merkle.inclusion_verify(
        index,
        old_size,
        merkle.leaf_hash(leaf),
        [bytes.fromhex(p) for p in proof["proof"]],
        old_root,
    )
    by_hash = _json(
        alice.get(
            "/api/v1/log/proofs/inclusion", leaf_hash=merkle.leaf_hash(leaf).hex(), size=old_size
        )
    )
    assert by_hash == proof

    alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(2)}])
    checkpoint_sign()
    note, new_size, new_root = _checkpoint(alice)
    assert new_size > old_size
    consistency = _json(
        alice.get("/api/v1/log/proofs/consistency", **{"from": old_size, "to": new_size})
    )
    merkle.consistency_verify(
        old_size, new_size, old_root, new_root, [bytes.fromhex(p) for p in consistency["proof"]]
    )

    body = note[: note.rindex("\n\n") + 1]
    line = cosignature_sign(
        name="alice", private_key=alice.private_key, checkpoint_text=body, timestamp=1_800_000_000
    ).line
    receipt = alice.post_text("/api/v1/log/cosignatures", (note + line).encode())
    assert _json(receipt, 201) == {"size": new_size, "added": 1}
    again = alice.post_text("/api/v1/log/cosignatures", (body + "\n" + line).encode())
    assert _json(again, 200) == {"size": new_size, "added": 0}

    seen = _text(bob.get("/api/v1/log/checkpoint"))
    assert seen == note + line
    cosigner = note_verifier("alice", alice.private_key.public_key(), COSIGNATURE_V1)
    assert cosignature_verify(cosigner, body, signature_parse(line)) == 1_800_000_000
    assert _text(bob.get("/api/v1/log/tile/checkpoint")) == seen


def test_go_sumdb_note_accepts_a_checkpoint_the_server_signed(
    alice: PartnerClient,
    notecheck: GoCheck,  # noqa: F811
    shared_list: HashList,
) -> None:
    alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(3)}])
    checkpoint = checkpoint_sign()
    note, size, root = _checkpoint(alice)
    body = note[: note.rindex("\n\n") + 1]
    line = cosignature_sign(
        name="alice", private_key=alice.private_key, checkpoint_text=body, timestamp=1
    ).line
    alice.post_text("/api/v1/log/cosignatures", (note + line).encode())
    vkey = _text(alice.get("/api/v1/log/key")).strip()
    served = _text(alice.get("/api/v1/log/checkpoint"))
    answer = notecheck(cmd="checkpoint", vkeys=[vkey], note=served)
    assert (answer["origin"], answer["size"]) == ("consortium.example/log", size)
    assert checkpoint.size == size
    assert bytes(checkpoint.root) == root
    verified = notecheck(cmd="verify", vkeys=[vkey], note=served)
    assert [name.split("+")[0] for name in verified["verified"]] == ["consortium.example/log"]
    assert [name.split("+")[0] for name in verified["unverified"]] == ["alice"]


def test_checkpoint_signing_is_idempotent_per_size_and_only_grows() -> None:
    empty = checkpoint_sign()
    assert (empty.size, bytes(empty.root)) == (0, merkle.EMPTY_ROOT)
    log_events_append(3)
    signed = checkpoint_sign()
    assert checkpoint_sign() == signed
    assert (signed.size, Checkpoint.objects.count()) == (3, 2)
    with pytest.raises(Exception, match="append-only"):
        Checkpoint.objects.filter(pk=signed.pk).update(note="rewritten")


@pytest.mark.django_db(transaction=True)
def test_concurrent_signers_never_store_two_roots_for_one_size() -> None:
    log_events_append(40)
    barrier = threading.Barrier(6)
    results: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def sign() -> None:
        try:
            barrier.wait()
            checkpoint = checkpoint_sign()
            results.append((checkpoint.size, bytes(checkpoint.root)))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert Checkpoint.objects.filter(size=40).count() == 1


@pytest.fixture
def hidden_log(alice: PartnerClient, bob: PartnerClient, shared_list: HashList) -> dict[str, int]:
    """Alice's owner-only list between events both partners see."""
    HashListFactory(name="private", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    shown = _json(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(10)}]), 201)
    hidden = _json(alice.submit("private", [{"algorithm": "pdq", "value": pdq(11)}]), 201)
    alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(12)}])
    checkpoint_sign()
    return {
        "shown": shown["entries"][0]["log_index"],
        "hidden": hidden["entries"][0]["log_index"],
        "size": LogEvent.objects.count(),
    }


def test_an_event_on_a_hidden_list_is_withheld_in_entries_and_empty_in_bundles(
    alice: PartnerClient, bob: PartnerClient, hidden_log: dict[str, int]
) -> None:
    size, hidden = hidden_log["size"], hidden_log["hidden"]
    mine = _json(alice.get("/api/v1/log/entries", start=0, end=size))["entries"]
    theirs = _json(bob.get("/api/v1/log/entries", start=0, end=size))["entries"]
    assert theirs[hidden] == {
        "index": hidden,
        "leaf_hash": mine[hidden]["leaf_hash"],
        "withheld": True,
    }
    assert "private" not in json.dumps(theirs)
    assert [e for i, e in enumerate(theirs) if i != hidden] == [
        e for i, e in enumerate(mine) if i != hidden
    ]

    path = f"/api/v1/log/tile/tile/entries/000.p/{size}"
    bundle_bob = merkle.entry_bundle_decode(bob.get(path).content)
    bundle_alice = merkle.entry_bundle_decode(alice.get(path).content)
    assert bundle_bob[hidden] == b""
    assert merkle.leaf_hash(bundle_alice[hidden]).hex() == mine[hidden]["leaf_hash"]
    assert bundle_bob[:hidden] == bundle_alice[:hidden]
    # The hash tiles are the same for everyone: they carry only leaf hashes.
    tile = f"/api/v1/log/tile/tile/0/000.p/{size}"
    assert bob.get(tile).content == alice.get(tile).content
    assert bob.get(tile)["Content-Type"] == "application/octet-stream"
    hashes = bob.get(tile).content
    assert hashes[32 * hidden : 32 * hidden + 32].hex() == mine[hidden]["leaf_hash"]


def test_an_inclusion_proof_of_a_hidden_event_is_refused_as_a_missing_one(
    alice: PartnerClient, bob: PartnerClient, hidden_log: dict[str, int]
) -> None:
    size, hidden = hidden_log["size"], hidden_log["hidden"]
    leaf_hash = _json(alice.get("/api/v1/log/entries", start=hidden, end=hidden + 1))["entries"][0][
        "leaf_hash"
    ]
    assert alice.get("/api/v1/log/proofs/inclusion", index=hidden, size=size).status_code == 200
    refusals = [
        bob.get("/api/v1/log/proofs/inclusion", index=hidden, size=size),
        bob.get("/api/v1/log/proofs/inclusion", leaf_hash=leaf_hash, size=size),
        bob.get("/api/v1/log/proofs/inclusion", index=size + 5, size=size),
        bob.get("/api/v1/log/proofs/inclusion", leaf_hash="ab" * 32, size=size),
    ]
    bodies = {json.dumps(_json(r, 404), sort_keys=True) for r in refusals}
    assert len(bodies) == 1
    assert problem(refusals[0]) == "unknown-log-event"
    shown = bob.get("/api/v1/log/proofs/inclusion", index=hidden_log["shown"], size=size)
    assert shown.status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "status", "slug"),
    [
        ("entries", {"start": "0"}, 400, "malformed-request"),
        ("entries", {"start": "1", "end": "1"}, 400, "malformed-request"),
        ("entries", {"start": "0", "end": "1001"}, 400, "malformed-request"),
        ("entries", {"start": "-1", "end": "2"}, 400, "malformed-request"),
        ("entries", {"start": "0", "end": "99"}, 404, "unknown-tree-size"),
        ("entries", {"start": "9" * 30, "end": "2"}, 400, "malformed-request"),
        ("proofs/inclusion", {"index": "0"}, 400, "malformed-request"),
        ("proofs/inclusion", {"size": "2"}, 400, "malformed-request"),
        ("proofs/inclusion", {"index": "0", "leaf_hash": "00" * 32, "size": "2"}, 400, None),
        ("proofs/inclusion", {"leaf_hash": "AB" * 32, "size": "2"}, 400, "malformed-request"),
        ("proofs/inclusion", {"index": "0", "size": "0"}, 400, "malformed-request"),
        ("proofs/inclusion", {"index": "0", "size": "99"}, 404, "unknown-tree-size"),
        ("proofs/inclusion", {"index": "1e3", "size": "2"}, 400, "malformed-request"),
        ("proofs/consistency", {"from": "3", "to": "2"}, 400, "malformed-request"),
        ("proofs/consistency", {"from": "0", "to": "99"}, 404, "unknown-tree-size"),
        ("proofs/consistency", {"to": "2"}, 400, "malformed-request"),
        ("tile/tile/0/0", {}, 404, "not-found"),
        ("tile/tile/0/000.p/256", {}, 404, "not-found"),
        ("tile/tile/0/000.p/3", {}, 404, "not-found"),
        ("tile/tile/0/001", {}, 404, "not-found"),
        ("tile/tile/1/000", {}, 404, "not-found"),
        ("tile/tile/entries/000.p/3", {}, 404, "not-found"),
        ("tile/tile/entries/x001/000", {}, 404, "not-found"),
        ("tile/../checkpoint", {}, 404, "not-found"),
    ],
)
def test_bad_or_out_of_range_log_reads_are_problems(
    alice: PartnerClient, path: str, params: dict[str, str], status: int, slug: str | None
) -> None:
    # Two events: alice's signing key, and one more.
    log_events_append(1)
    assert LogEvent.objects.count() == 2
    response = alice.get(f"/api/v1/log/{path}", **params)
    assert response.status_code == status, response.content
    assert problem(response) == (slug or "malformed-request")


def test_every_log_read_is_an_access_event(alice: PartnerClient) -> None:
    log_events_append(3)
    checkpoint_sign()
    before = AccessEvent.objects.count()
    reads = [
        ("/api/v1/log/key", {}),
        ("/api/v1/log/checkpoint", {}),
        ("/api/v1/log/entries", {"start": 0, "end": 2}),
        ("/api/v1/log/proofs/inclusion", {"index": 1, "size": 4}),
        ("/api/v1/log/proofs/consistency", {"from": 1, "to": 4}),
        ("/api/v1/log/tile/checkpoint", {}),
        ("/api/v1/log/tile/tile/0/000.p/4", {}),
        ("/api/v1/log/tile/tile/entries/000.p/4", {}),
    ]
    for path, params in reads:
        assert alice.get(path, **params).status_code == 200, path
    events = list(AccessEvent.objects.order_by("id")[before:])
    assert [e.detail["path"] for e in events] == [path for path, _ in reads]
    assert {e.partner for e in events} == {alice.partner}
    assert [e.action for e in events][:3] == [
        "log.key.read",
        "log.checkpoint.read",
        "log.entries.read",
    ]


def test_the_key_needs_any_scope_and_the_rest_needs_read() -> None:
    reader = partner_client("matcher", scopes=["match"])
    assert problem(partner_client("reader").get("/api/v1/log/checkpoint")) == "not-found"
    assert reader.get("/api/v1/log/key").status_code == 200
    refused = reader.get("/api/v1/log/entries", start=0, end=1)
    assert problem(refused) == "insufficient-scope"
    assert problem(reader.get("/api/v1/log/tile/tile/0/000.p/1")) == "insufficient-scope"


def _cosigned(partner: PartnerClient, *, name: str | None = None, key: Any = None) -> bytes:
    note = _text(partner.get("/api/v1/log/checkpoint"))
    body = note[: note.rindex("\n\n") + 1]
    line = cosignature_sign(
        name=name or partner.partner.name,
        private_key=key or partner.private_key,
        checkpoint_text=body,
        timestamp=int(time.time()),
    ).line
    return (note + line).encode()


def test_cosignature_refusals_name_the_problem_and_store_nothing(
    alice: PartnerClient, bob: PartnerClient
) -> None:
    from consortium_client.keys import key_generate

    log_events_append(2)
    checkpoint_sign()
    good = _cosigned(alice)
    size = LogEvent.objects.count()
    forged = good.replace(b"\n%d\n" % size, b"\n%d\n" % (size + 1), 1)
    cases = [
        (forged, "unknown-checkpoint"),
        (b"not a note", "invalid-cosignature"),
        (_cosigned(alice, name="bob", key=alice.private_key), "wrong-cosigner-name"),
        (_cosigned(alice, key=key_generate()), "invalid-cosignature"),
        (_cosigned(bob), "wrong-cosigner-name"),
        (good[:-10] + (b"A" if good[-10:-9] != b"A" else b"B") + good[-9:], "invalid-cosignature"),
        (good[: good.rindex(b"\n\xe2\x80\x94 alice")] + b"\n", "invalid-cosignature"),
    ]
    for body, slug in cases:
        response = alice.post_text("/api/v1/log/cosignatures", body)
        assert problem(response) == slug, body
        assert Cosignature.objects.count() == 0
        event = AccessEvent.objects.order_by("-id").first()
        assert event is not None
        assert (event.action, event.detail["problem"]) == ("log.cosignature.add", slug)
    # A revoked signing key no longer cosigns.
    from audit.actors import Actor
    from partners import services as partner_services

    partner_services.signing_key_revoke(signing_key=alice.signing_key, actor=Actor.command("tests"))
    response = alice.post_text("/api/v1/log/cosignatures", good)
    assert problem(response) == "invalid-cosignature"
    assert Cosignature.objects.count() == 0
