"""Pushing checkpoints to outside witnesses (C2SP tlog-witness add-checkpoint), against a
witness that runs as a real HTTP server (tests/witness.py), and serving their cosignatures.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

from audit.models import AccessEvent, Checkpoint, Cosignature
from audit.services import checkpoint_sign, log_signer, log_vkey
from audit.tasks import witness_push_task
from audit.tree import tree_consistency_proof, tree_root
from audit.witnesses import WitnessUnavailable, witness_parse, witness_push, witnesses_configured
from consortium_client.notes import (
    COSIGNATURE_V1,
    cosignature_sign,
    cosignature_verify,
    note_open,
    note_verifier,
    signature_parse,
    vkey_parse,
)
from tests.conftest import PartnerClient, log_events_append
from tests.witness import Witness

pytestmark = pytest.mark.django_db

ORIGIN = "consortium.example/log"


@pytest.fixture
def witness(settings: Any) -> Iterator[Witness]:
    """A witness trusting this log's key, configured as the server's only witness."""
    settings.LOG_ORIGIN = ORIGIN
    running = Witness("witness.example/w1", {ORIGIN: [vkey_parse(log_vkey())]}).start()
    settings.LOG_WITNESSES = [running.config]
    settings.LOG_WITNESS_ALLOW_LOCAL_HTTP = True
    settings.LOG_WITNESS_TIMEOUT = 5.0
    yield running
    running.stop()


def _checkpoint(events: int) -> Checkpoint:
    log_events_append(events)
    return checkpoint_sign()


def _push(witness: Witness, size: int) -> Any:
    return witness_push(witness=witnesses_configured()[0], size=size)


def _pushes() -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(action="log.witness.push").order_by("id"))


def test_first_push_starts_from_old_zero_and_the_cosignature_is_served_with_the_note(
    witness: Witness, alice: PartnerClient
) -> None:
    checkpoint = _checkpoint(3)

    result = _push(witness, checkpoint.size)

    assert (result.stored, result.answers, result.old) == (True, (200,), 0)
    assert witness.requests == [b"old 0\n\n" + checkpoint.note.encode()]
    note = alice.get("/api/v1/log/checkpoint").content.decode()
    opened = note_open(note, [log_signer().verifier, witness.verifier])
    assert {s.name for s in opened.verified} == {ORIGIN, "witness.example/w1"}
    line = next(s for s in opened.verified if s.name == "witness.example/w1")
    stored = Cosignature.objects.get(witness="witness.example/w1")
    assert stored.line == line.line
    assert cosignature_verify(witness.verifier, opened.text, line) == stored.timestamp
    (event,) = _pushes()
    assert (event.actor, event.status, event.records) == ("system:witness-push", 200, 1)
    assert (event.target, event.detail["size"]) == ("witness:witness.example/w1", checkpoint.size)


def test_following_pushes_carry_a_consistency_proof_from_the_size_last_cosigned(
    witness: Witness,
) -> None:
    first = _checkpoint(3)
    _push(witness, first.size)
    second = _checkpoint(5)

    result = _push(witness, second.size)

    assert (result.stored, result.old) == (True, 3)
    _, _, proof = tree_consistency_proof(old=3, new=8)
    lines = [base64.b64encode(h).decode() for h in proof]
    expected = "old 3\n" + "".join(f"{line}\n" for line in lines) + "\n" + second.note
    assert witness.requests[-1] == expected.encode()
    assert witness.state[ORIGIN] == (8, tree_root(size=8))
    assert Cosignature.objects.filter(witness="witness.example/w1").count() == 2
    # Nothing is sent again for a checkpoint the witness has cosigned, nor an older one.
    assert _push(witness, second.size).answers == ()
    assert _push(witness, first.size).answers == ()
    assert len(witness.requests) == 2


def test_a_witness_that_holds_a_later_size_gets_the_proof_from_it_after_its_409(
    witness: Witness,
) -> None:
    """The witness cosigned size 3 but its answer was lost: the server still believes it
    is at 0, sends old 0, learns 3 from the 409 and sends the proof from 3."""
    checkpoint = _checkpoint(3)
    witness.drop_answer = True
    with pytest.raises(WitnessUnavailable):
        _push(witness, checkpoint.size)
    witness.drop_answer = False
    assert (witness.state[ORIGIN][0], Cosignature.objects.count()) == (3, 0)
    later = _checkpoint(4)

    result = _push(witness, later.size)

    assert (result.answers, result.old, result.stored) == ((409, 200), 3, True)
    assert witness.requests[-2].startswith(b"old 0\n\n")
    assert witness.requests[-1].startswith(b"old 3\n")
    assert [e.status for e in _pushes()] == [502, 200]
    assert _pushes()[-1].detail["old"] == [0, 3]


def test_a_409_naming_a_size_this_log_never_signed_stores_nothing_and_is_not_retried(
    witness: Witness,
) -> None:
    checkpoint = _checkpoint(3)
    witness.state[ORIGIN] = (1000, bytes(32))

    result = _push(witness, checkpoint.size)

    assert (result.answers, result.stored) == ((409,), False)
    assert "never signed" in result.problem
    assert Cosignature.objects.count() == 0
    assert _pushes()[0].detail["error"] == result.problem


def test_a_witness_holding_another_tree_of_a_signed_size_refuses_the_proof(
    witness: Witness,
) -> None:
    """A fork as the witness sees it: it cosigned a size-3 tree with another root."""
    _checkpoint(3)
    witness.state[ORIGIN] = (3, bytes(32))
    later = _checkpoint(2)

    result = _push(witness, later.size)

    assert (result.answers, result.stored) == ((409, 422), False)
    assert "fork" in result.problem
    assert Cosignature.objects.count() == 0


def test_a_cosignature_that_does_not_verify_is_not_stored(
    witness: Witness, alice: PartnerClient
) -> None:
    checkpoint = _checkpoint(3)
    witness.bad_signature = True

    result = _push(witness, checkpoint.size)

    assert (result.answers, result.stored) == ((200,), False)
    assert "does not verify" in result.problem
    assert Cosignature.objects.count() == 0
    assert alice.get("/api/v1/log/checkpoint").content.decode() == checkpoint.note
    (event,) = _pushes()
    assert (event.status, event.records) == (200, 0)


def test_a_cosignature_by_a_key_the_server_was_not_given_is_ignored(
    witness: Witness, settings: Any
) -> None:
    """The configured vkey is another key of the same name: the answer carries no
    cosignature by it, so nothing is stored (the spec: ignore unknown keys)."""
    checkpoint = _checkpoint(3)
    other = Witness("witness.example/w1", {})
    settings.LOG_WITNESSES = [f"{other.verifier.vkey} {witness.url}"]
    other.server.server_close()

    result = _push(witness, checkpoint.size)

    assert (result.answers, result.stored) == ((200,), False)
    assert "no cosignature by the witness's key" in result.problem
    assert Cosignature.objects.count() == 0


@pytest.mark.parametrize(
    ("trusted", "status"),
    [({"another.example/log": "log"}, 404), ({ORIGIN: "other key"}, 403)],
)
def test_a_witness_refusal_is_recorded_and_nothing_is_stored(
    witness: Witness, trusted: dict[str, str], status: int
) -> None:
    checkpoint = _checkpoint(3)
    stranger = note_verifier(ORIGIN, witness.private_key.public_key())
    witness.logs = {origin: [stranger] for origin in trusted}

    result = _push(witness, checkpoint.size)

    assert (result.answers, result.stored) == ((status,), False)
    assert Cosignature.objects.count() == 0
    (event,) = _pushes()
    assert (event.status, event.records) == (status, 0)


def test_a_witness_answering_5xx_is_retried_until_it_cosigns(
    witness: Witness, settings: Any
) -> None:
    checkpoint = _checkpoint(3)
    witness.unavailable = 2

    result = witness_push_task.apply(args=(checkpoint.size, "witness.example/w1"))

    assert result.successful()
    assert witness.answers == [503, 503, 200]
    assert [e.status for e in _pushes()] == [503, 503, 200]
    assert Cosignature.objects.filter(witness="witness.example/w1").count() == 1


def test_a_witness_that_is_down_is_retried_and_the_signer_is_unaffected(
    witness: Witness, settings: Any, eager_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.LOG_WITNESSES = [f"{witness.verifier.vkey} http://127.0.0.1:{port}/add-checkpoint"]
    log_events_append(3)

    with django_capture_on_commit_callbacks(execute=True):
        checkpoint = checkpoint_sign()

    assert Checkpoint.objects.filter(size=3).exists()
    assert checkpoint.size == 3
    # The first try and every retry (run at once here: eager tasks do not wait) are events.
    retries = witness_push_task.max_retries
    assert [e.status for e in _pushes()] == [502] * (retries + 1)
    assert "ConnectionRefusedError" in _pushes()[0].detail["error"]
    assert Cosignature.objects.count() == 0


def test_a_new_checkpoint_is_pushed_to_every_witness_once_it_commits(
    witness: Witness, settings: Any, eager_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    second = Witness("witness.example/w2", {ORIGIN: [vkey_parse(log_vkey())]}).start()
    try:
        settings.LOG_WITNESSES = [witness.config, second.config]
        log_events_append(3)
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            checkpoint_sign()
        # Signing again at the same size creates nothing and queues nothing.
        with django_capture_on_commit_callbacks(execute=True) as again:
            checkpoint_sign()
    finally:
        second.stop()

    assert (len(callbacks), len(again)) == (1, 0)
    assert (len(witness.requests), len(second.requests)) == (1, 1)
    cosigners = set(Cosignature.objects.values_list("witness", flat=True))
    assert cosigners == {"witness.example/w1", "witness.example/w2"}


def test_witness_cosignatures_come_before_partner_cosignatures_in_the_note(
    witness: Witness, alice: PartnerClient
) -> None:
    checkpoint = _checkpoint(3)
    text = checkpoint.note[: checkpoint.note.index("\n\n") + 1]
    line = cosignature_sign(
        name="alice", private_key=alice.private_key, checkpoint_text=text, timestamp=1
    ).line
    alice.post_text("/api/v1/log/cosignatures", (checkpoint.note + line).encode())
    _push(witness, checkpoint.size)

    note = alice.get("/api/v1/log/checkpoint").content.decode()
    names = [signature_parse(s).name for s in note.split("\n\n", 1)[1].splitlines()]
    assert names == [ORIGIN, "witness.example/w1", "alice"]


@pytest.mark.parametrize(
    ("item", "allow_local_http"),
    [
        ("{vkey}", False),
        ("{vkey} http://witness.example/add-checkpoint", True),
        ("{vkey} http://127.0.0.1:9/add-checkpoint", False),
        ("{vkey} https://user:pw@witness.example/add-checkpoint", False),
        ("{log_vkey} https://witness.example/add-checkpoint", False),
        ("witness+0000+AAAA https://witness.example/add-checkpoint", False),
    ],
)
def test_witness_configuration_refuses_what_is_not_a_cosigner_key_and_an_https_url(
    item: str, allow_local_http: bool
) -> None:
    public_key = Ed25519PrivateKey.generate().public_key()
    vkey = note_verifier("w", public_key, COSIGNATURE_V1).vkey
    text = item.format(vkey=vkey, log_vkey=note_verifier("w", public_key).vkey)
    with pytest.raises(ImproperlyConfigured):
        witness_parse(text, allow_local_http=allow_local_http)


def test_witness_configuration_accepts_https_and_local_http_when_allowed() -> None:
    vkey = note_verifier("w", Ed25519PrivateKey.generate().public_key(), COSIGNATURE_V1).vkey
    assert witness_parse(f"{vkey} https://w.example/add-checkpoint").name == "w"
    local = witness_parse(f"{vkey} http://localhost:8080/a", allow_local_http=True)
    assert local.url == "http://localhost:8080/a"
