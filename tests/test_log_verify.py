"""Tamper detection: `log_verify` passes a clean log, and reports a row changed, deleted or
inserted by the database owner (append-only triggers disabled, as an owner could) in each
table the log commits to; a partner's own client, verifying through HTTP, fails too."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import secrets
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit.actors import ACCESS_PERIOD_SEALER, Actor
from audit.log_verify import log_verify
from audit.models import AccessEvent, AccessPeriod, Checkpoint, LogEvent
from audit.services import (
    EventDraft,
    access_event_record,
    access_period_seal,
    checkpoint_sign,
    log_append,
)
from consortium_client import leaves, merkle
from consortium_client.accesslog import AccessLogError, access_period_verify
from consortium_client.commitments import commitment_of, salt_new
from consortium_client.dsse import SUBMISSION_V1_PAYLOAD_TYPE, envelope_sign
from consortium_client.verify import (
    VerificationError,
    verify_checkpoint,
    verify_entry,
    verify_envelope,
    verify_inclusion,
)
from hashes.models import Entry, HashList, Revocation, Submission
from hashes.services import entry_erase, revocation_by_administrator
from tests.conftest import PartnerClient, pdq

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class World:
    """A log with every kind of event and row log_verify checks."""

    alice: PartnerClient
    bob: PartnerClient
    alice_entries: list[int]
    bob_entries: list[int]
    revoked_by_alice: int
    revoked_by_admin: int
    erased: int
    legacy: list[int]
    period: AccessPeriod


def _submit(partner: PartnerClient, entries: list[dict[str, Any]]) -> list[int]:
    response = partner.submit("ncii", entries)
    assert response.status_code == 201, response.content
    return [entry["log_index"] for entry in json.loads(response.content)["entries"]]


def _legacy_submission(partner: PartnerClient, hash_list: HashList, values: list[str]) -> list[int]:
    """Entries as a version 1 submission left them after the leaves v2 migration: an envelope
    that signs the values themselves, server-chosen salts, leaves naming its SHA-256."""
    payload = json.dumps(
        {
            "list": hash_list.name,
            "entries": [{"algorithm": "md5", "value": v, "labels": ["old"]} for v in values],
            "timestamp": "2026-01-01T00:00:00Z",
            "nonce": secrets.token_hex(8),
        }
    ).encode()
    envelope = envelope_sign(SUBMISSION_V1_PAYLOAD_TYPE, payload, partner.private_key)
    digest = hashlib.sha256(envelope).hexdigest()
    salts = [salt_new() for _ in values]
    with transaction.atomic():
        submission = Submission.objects.create(
            partner=partner.partner,
            api_key=partner.partner.api_keys.first(),
            signing_key=partner.signing_key,
            hash_list=hash_list,
            envelope=envelope,
            envelope_sha256=digest,
            payload_version=1,
            entry_count=len(values),
            nonce=secrets.token_hex(8),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
        )
        events = log_append(
            drafts=[
                EventDraft(
                    leaves.ENTRY_ADDED,
                    {
                        "list": hash_list.name,
                        "algorithm": "md5",
                        "commitment": commitment_of("md5", value, salt),
                        "labels": ["old"],
                        "partner": partner.partner.name,
                        "key": partner.signing_key.key_id,
                        "envelope": digest,
                        "submission": submission.pk,
                    },
                    hash_list_id=hash_list.pk,
                    partner_id=partner.partner.pk,
                )
                for value, salt in zip(values, salts, strict=True)
            ]
        )
        Entry.objects.bulk_create(
            Entry(
                id=event.index,
                hash_list=hash_list,
                algorithm="md5",
                value=value,
                salt=salt,
                commitment=commitment_of("md5", value, salt),
                labels=["old"],
                partner=partner.partner,
                submission=submission,
            )
            for event, value, salt in zip(events, values, salts, strict=True)
        )
    return [event.index for event in events]


def _cosign(partner: PartnerClient) -> None:
    from consortium_client.notes import cosignature_sign

    note = partner.get("/api/v1/log/checkpoint").content.decode()
    body = note[: note.rindex("\n\n") + 1]
    line = cosignature_sign(
        name=partner.partner.name,
        private_key=partner.private_key,
        checkpoint_text=body,
        timestamp=1_800_000_000,
    ).line
    assert partner.post_text("/api/v1/log/cosignatures", (note + line).encode()).status_code == 201


@pytest.fixture
def world(alice: PartnerClient, bob: PartnerClient, shared_list: HashList) -> World:
    alice_entries = _submit(
        alice,
        [
            {"algorithm": "pdq", "value": pdq(), "labels": ["ncii", "adult"], "quality": 90},
            {"algorithm": "pdq", "value": pdq()},
            {"algorithm": "md5", "value": secrets.token_hex(16), "labels": ["b", "a"]},
            {"algorithm": "md5", "value": secrets.token_hex(16)},
        ],
    )
    checkpoint_sign()
    bob_entries = _submit(bob, [{"algorithm": "md5", "value": secrets.token_hex(16)}] * 1)
    bob_entries += _submit(bob, [{"algorithm": "pdq", "value": pdq()}])
    assert alice.revoke([alice_entries[1]], "duplicate").status_code == 201
    admin = get_user_model().objects.create_superuser("root", "root@example.org", None)
    revocation_by_administrator(
        actor=Actor.for_user(admin),
        entries=[Entry.objects.get(pk=bob_entries[0])],
        reason="court order 42",
    )
    entry_erase(actor=Actor.command("tests"), entry_id=alice_entries[3], reason="victim's request")
    legacy = _legacy_submission(alice, shared_list, [secrets.token_hex(16) for _ in range(3)])
    entry_erase(actor=Actor.command("tests"), entry_id=legacy[2], reason="court order")
    _legacy_submission(alice, shared_list, [secrets.token_hex(16)])
    checkpoint_sign()
    _cosign(bob)
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    checkpoint_sign()
    return World(
        alice,
        bob,
        alice_entries,
        bob_entries,
        revoked_by_alice=alice_entries[1],
        revoked_by_admin=bob_entries[0],
        erased=alice_entries[3],
        legacy=legacy,
        period=period,
    )


def _verify_output() -> str:
    out = io.StringIO()
    call_command("log_verify", "--no-progress", stdout=out)
    return out.getvalue()


def _divergence() -> str:
    """The line log_verify reports, asserting that it fails with a non-zero exit status."""
    with pytest.raises(CommandError) as failure:
        call_command("log_verify", "--no-progress", stdout=io.StringIO())
    assert failure.value.returncode != 0
    line = str(failure.value)
    assert "\n" not in line
    return line


@contextmanager
def _as_database_owner(*tables: str) -> Iterator[Any]:
    """A cursor with the tables' append-only triggers disabled, as their owner could."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        try:
            yield cursor
        finally:
            for table in tables:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def _leaf_of(partner: PartnerClient, index: int) -> bytes:
    """The leaf as a partner downloads it from `GET /api/v1/log/entries`."""
    response = partner.get("/api/v1/log/entries", start=index, end=index + 1)
    (entry,) = json.loads(response.content)["entries"]
    return json.dumps(entry["leaf"], sort_keys=True, separators=(",", ":")).encode()


def _client_verifies_inclusion(partner: PartnerClient, index: int) -> None:
    """What a partner's client does: the latest checkpoint, verified with the log key, the
    leaf and its inclusion proof in it (VerificationError if any of it fails)."""
    vkey = partner.get("/api/v1/log/key").content.decode()
    checkpoint = verify_checkpoint(partner.get("/api/v1/log/checkpoint").content, vkey)
    response = partner.get("/api/v1/log/proofs/inclusion", index=index, size=checkpoint.size)
    proof = [bytes.fromhex(h) for h in json.loads(response.content)["proof"]]
    verify_inclusion(_leaf_of(partner, index), index, checkpoint.size, proof, checkpoint.root)


def _client_verifies_entry(partner: PartnerClient, entry_id: int) -> None:
    detail = json.loads(partner.get(f"/api/v1/entries/{entry_id}").content)
    verify_entry(_leaf_of(partner, entry_id), detail["value"], detail["salt"])


# A clean log


def test_a_clean_log_passes_with_a_one_line_summary(world: World) -> None:
    out = io.StringIO()
    # With the progress bar asked for: none in a pipe, so the output is the summary alone.
    call_command("log_verify", stdout=out)
    output = out.getvalue()

    assert output.count("\n") == 1
    assert output.startswith("log verified: ")
    report = log_verify()
    assert report.size == LogEvent.objects.count()
    assert report.entries == Entry.objects.count() == 10
    assert (report.submissions, report.revocations, report.erasures) == (5, 2, 2)
    assert (report.periods, report.cosignatures) == (1, 1)
    assert report.checkpoints == Checkpoint.objects.count() == 3
    assert AccessEvent.objects.filter(action="log.verify", status=200).exists()
    for entry_id in world.alice_entries[:3] + world.legacy[:2]:
        _client_verifies_inclusion(world.bob, entry_id)
        _client_verifies_entry(world.bob, entry_id)
    # Labels signed unsorted, or none at all: the leaf holds them as a sorted set.
    for entry_id in world.alice_entries[1:3]:
        submission = Entry.objects.get(pk=entry_id).submission_id
        envelope = world.bob.get(f"/api/v1/submissions/{submission}/envelope").content
        public_key = world.alice.private_key.public_key()
        verify_envelope(_leaf_of(world.bob, entry_id), envelope, public_key)


def test_an_empty_log_passes() -> None:
    checkpoint_sign()

    assert _verify_output().startswith("log verified: 0 events")


# A row changed by the database owner, one test per table


def test_a_changed_entry_value_is_reported_and_fails_the_clients_check(world: World) -> None:
    entry_id = world.alice_entries[0]
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute("UPDATE hashes_entry SET value = %s WHERE id = %s", [pdq(7), entry_id])

    line = _divergence()

    assert f"hashes_entry id {entry_id}: value and salt do not open" in line
    with pytest.raises(VerificationError, match="do not match the commitment"):
        _client_verifies_entry(world.bob, entry_id)


def test_a_changed_entry_commitment_is_reported(world: World) -> None:
    entry_id = world.alice_entries[2]
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute(
            "UPDATE hashes_entry SET commitment = %s WHERE id = %s", ["0" * 64, entry_id]
        )

    assert f"hashes_entry id {entry_id}: commitment differs from its leaf" in _divergence()


def test_a_changed_submission_envelope_is_reported_and_fails_the_clients_check(
    world: World,
) -> None:
    entry_id = world.alice_entries[0]
    submission = Entry.objects.get(pk=entry_id).submission
    forged = bytes(submission.envelope).replace(b'"keyid":"', b'"keyid":"x', 1)
    with _as_database_owner("hashes_submission") as cursor:
        cursor.execute(
            "UPDATE hashes_submission SET envelope = %s WHERE id = %s", [forged, submission.pk]
        )

    line = _divergence()

    assert f"hashes_submission id {submission.pk}: the stored envelope does not hash" in line
    envelope = world.bob.get(f"/api/v1/submissions/{submission.pk}/envelope").content
    public_key = world.alice.private_key.public_key()
    with pytest.raises(VerificationError, match="SHA-256"):
        verify_envelope(_leaf_of(world.bob, entry_id), envelope, public_key)


def test_a_redacted_legacy_envelope_given_another_digest_is_reported(world: World) -> None:
    """A redacted envelope's bytes are gone; its digest is still compared with the leaves."""
    submission = Entry.objects.get(pk=world.legacy[0]).submission
    assert submission.redacted_at is not None
    with _as_database_owner("hashes_submission") as cursor:
        cursor.execute(
            "UPDATE hashes_submission SET envelope_sha256 = %s WHERE id = %s",
            ["f" * 64, submission.pk],
        )

    assert f"hashes_submission id {submission.pk}: envelope_sha256 differs" in _divergence()


def test_a_changed_revocation_reason_is_reported_and_differs_from_its_tombstone(
    world: World,
) -> None:
    revocation = Entry.objects.get(pk=world.revoked_by_alice).revocation
    assert revocation is not None
    with _as_database_owner("hashes_revocation") as cursor:
        cursor.execute(
            "UPDATE hashes_revocation SET reason = %s WHERE id = %s",
            ["a reason never signed", revocation.pk],
        )

    line = _divergence()

    assert f"hashes_revocation id {revocation.pk}: reason is not the signed reason" in line
    detail = json.loads(world.bob.get(f"/api/v1/entries/{world.revoked_by_alice}").content)
    tombstone = json.loads(_leaf_of(world.bob, detail["revocation"]["log_index"]))
    assert detail["revocation"]["reason"] != tombstone["reason"]


def test_an_administrators_revocation_given_another_author_is_reported(world: World) -> None:
    revocation = Revocation.objects.get(partner__isnull=True)
    other = get_user_model().objects.create_superuser("mallory", "m@example.org", None)
    with _as_database_owner("hashes_revocation") as cursor:
        cursor.execute(
            "UPDATE hashes_revocation SET administrator_id = %s WHERE id = %s",
            [other.pk, revocation.pk],
        )

    assert f"hashes_revocation id {revocation.pk}: author differs" in _divergence()


def test_a_changed_leaf_is_reported_and_fails_the_clients_inclusion_proof(world: World) -> None:
    index = world.alice_entries[0]
    leaf = json.loads(bytes(LogEvent.objects.get(index=index).leaf))
    leaf["commitment"] = commitment_of("pdq", pdq(7), salt_new())
    forged = json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
    with _as_database_owner("audit_logevent") as cursor:
        cursor.execute('UPDATE audit_logevent SET leaf = %s WHERE "index" = %s', [forged, index])

    line = _divergence()

    assert line.startswith(f"divergence: audit_logevent {merkle.Tile(0, 0).path[:10]}")
    assert f"hash {index}:" in line
    with pytest.raises(VerificationError, match="does not lead to the root"):
        _client_verifies_inclusion(world.bob, index)


def test_a_leaf_made_non_canonical_is_reported(world: World) -> None:
    index = world.bob_entries[1]
    leaf = bytes(LogEvent.objects.get(index=index).leaf)
    with _as_database_owner("audit_logevent") as cursor:
        cursor.execute(
            'UPDATE audit_logevent SET leaf = %s WHERE "index" = %s', [leaf + b" ", index]
        )

    assert _divergence() == (
        f"divergence: audit_logevent index {index}: the leaf is not canonical JSON"
    )


def test_an_event_moved_to_another_list_is_reported(world: World) -> None:
    """The feed filters on the row's list column: moving it would show the event to
    partners of another list."""
    index = world.alice_entries[0]
    secret = HashList.objects.create(name="secret", owner=world.bob.partner, visibility="owner")
    with _as_database_owner("audit_logevent") as cursor:
        cursor.execute(
            'UPDATE audit_logevent SET hash_list_id = %s WHERE "index" = %s', [secret.pk, index]
        )

    assert f"audit_logevent index {index}: hash_list_id column" in _divergence()


def test_a_changed_access_event_is_reported_and_fails_the_auditors_check(world: World) -> None:
    period = world.period
    event = AccessEvent.objects.filter(id__gt=period.after_id, id__lte=period.last_id).first()
    assert event is not None
    with _as_database_owner("audit_accessevent") as cursor:
        cursor.execute(
            "UPDATE audit_accessevent SET target = %s WHERE id = %s", ["elsewhere", event.pk]
        )

    line = _divergence()

    assert f"audit_accessevent ids ({period.after_id}, {period.last_id}]" in line
    assert f"digest sealed as period {period.number}" in line
    exported = io.StringIO()
    call_command("access_period_export", str(period.number), stdout=exported)
    sealed = json.loads(_leaf_of(world.bob, period.log_index))
    with pytest.raises(AccessLogError, match="do not hash to the sealed root"):
        access_period_verify(map(json.loads, exported.getvalue().splitlines()), sealed)


def test_a_deleted_access_event_is_reported(world: World) -> None:
    period = world.period
    event = AccessEvent.objects.filter(id__gt=period.after_id, id__lte=period.last_id).last()
    assert event is not None
    with _as_database_owner("audit_accessevent") as cursor:
        cursor.execute("DELETE FROM audit_accessevent WHERE id = %s", [event.pk])

    line = _divergence()

    assert f"audit_accessevent ids ({period.after_id}, {period.last_id}]" in line
    assert f"expected {period.count} events" in line


def test_an_access_event_inserted_into_a_sealed_period_is_reported(world: World) -> None:
    period = world.period
    taken = set(
        AccessEvent.objects.filter(id__gt=period.after_id, id__lte=period.last_id).values_list(
            "id", flat=True
        )
    )
    free = next(i for i in range(period.after_id + 1, period.last_id + 1) if i not in taken)
    template = AccessEvent.objects.filter(id__in=taken).first()
    assert template is not None
    with _as_database_owner("audit_accessevent") as cursor:
        cursor.execute(
            "INSERT INTO audit_accessevent (id, time, key_prefix, actor, action, target, "
            "records, status, detail) VALUES (%s, %s, '', 'command', 'feed.read', '', 0, 200, "
            "'{}')",
            [free, template.time],
        )

    assert f"found {period.count + 1} events" in _divergence()


def test_access_events_after_the_last_period_are_not_sealed_yet(world: World) -> None:
    access_event_record(actor=Actor.command("tests"), action="feed.read", status=200)

    assert _verify_output().startswith("log verified: ")


def test_a_changed_tile_is_reported_and_fails_the_clients_inclusion_proof(world: World) -> None:
    index = world.alice_entries[0]
    with _as_database_owner("audit_logtile") as cursor:
        cursor.execute(
            "UPDATE audit_logtile SET hashes = overlay(hashes placing %s from %s) "
            "WHERE level = 0 AND index = 0",
            [bytes(32), index * 32 + 1],
        )

    line = _divergence()

    assert line.startswith(f"divergence: audit_logtile tile/0/000 hash {index}: ")
    with pytest.raises(VerificationError, match="does not lead to the root"):
        _client_verifies_inclusion(world.bob, index ^ 1)


def test_a_truncated_tile_is_reported(world: World) -> None:
    with _as_database_owner("audit_logtile") as cursor:
        cursor.execute(
            "UPDATE audit_logtile SET hashes = substring(hashes from 1 for 64) "
            "WHERE level = 0 AND index = 0"
        )

    assert _divergence() == (
        "divergence: audit_logtile tile/0/000 hash 2: the tile is truncated: "
        "expected at least 3 hashes, found 2"
    )


def test_an_extra_tile_is_reported(world: World) -> None:
    with _as_database_owner("audit_logtile") as cursor:
        cursor.execute(
            "INSERT INTO audit_logtile (level, index, hashes) VALUES (1, 0, %s)", [bytes(32)]
        )

    assert _divergence() == (
        f"divergence: audit_logtile tile/1/000: a stored tile beyond the tree of size "
        f"{LogEvent.objects.count()}"
    )


def test_a_changed_checkpoint_root_is_reported(world: World) -> None:
    checkpoint = Checkpoint.objects.order_by("size").first()
    assert checkpoint is not None
    with _as_database_owner("audit_checkpoint") as cursor:
        cursor.execute(
            "UPDATE audit_checkpoint SET root = %s WHERE id = %s", [bytes(32), checkpoint.pk]
        )

    line = _divergence()

    assert f"audit_checkpoint size {checkpoint.size}: root column and signed note differ" in line


def test_a_changed_checkpoint_note_is_reported_and_fails_the_clients_check(world: World) -> None:
    checkpoint = Checkpoint.objects.order_by("-size").first()
    assert checkpoint is not None
    forged = checkpoint.note.replace(f"\n{checkpoint.size}\n", f"\n{checkpoint.size + 1}\n", 1)
    with _as_database_owner("audit_checkpoint") as cursor:
        cursor.execute(
            "UPDATE audit_checkpoint SET note = %s WHERE id = %s", [forged, checkpoint.pk]
        )

    line = _divergence()

    assert f"audit_checkpoint size {checkpoint.size}: the note does not verify" in line
    vkey = world.bob.get("/api/v1/log/key").content.decode()
    with pytest.raises(VerificationError, match="signature"):
        verify_checkpoint(world.bob.get("/api/v1/log/checkpoint").content, vkey)


def test_events_removed_from_the_end_of_the_log_are_reported(world: World) -> None:
    """Truncating the log and its head: the checkpoints signed before still name the size."""
    size = LogEvent.objects.count()
    with _as_database_owner("audit_logevent", "audit_logtile") as cursor:
        cursor.execute('DELETE FROM audit_logevent WHERE "index" >= %s', [size - 2])
        cursor.execute("UPDATE audit_loghead SET size = %s", [size - 2])
        cursor.execute("DELETE FROM audit_logtile")
    call_command("log_tiles_rebuild", verbosity=0)

    line = _divergence()

    beyond = Checkpoint.objects.filter(size__gt=size - 2).order_by("size").first()
    assert beyond is not None
    assert f"a checkpoint of size {beyond.size} was signed, " in line
    assert line.endswith(f"the log holds {size - 2} events")


# Rows deleted and inserted


def test_a_deleted_entry_is_reported(world: World) -> None:
    entry_id = world.bob_entries[1]
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute("DELETE FROM hashes_entry WHERE id = %s", [entry_id])

    assert _divergence() == (
        f"divergence: hashes_entry id {entry_id}: the entry_added leaf at this index has no row"
    )


def test_an_inserted_entry_is_reported(world: World) -> None:
    """An entry whose id is the index of another kind of event: no leaf commits to it."""
    index = LogEvent.objects.filter(event_type="entry_revoked").order_by("index").first().index
    model = Entry.objects.get(pk=world.bob_entries[1])
    value, salt = secrets.token_hex(16), salt_new()
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute(
            "INSERT INTO hashes_entry (id, hash_list_id, algorithm, value, salt, commitment, "
            "labels, note, partner_id, submission_id, status, created_at, erasure_reason) "
            "VALUES (%s, %s, 'md5', %s, %s, %s, '[]', '', %s, %s, 'active', now(), '')",
            [
                index,
                model.hash_list_id,
                value,
                salt,
                commitment_of("md5", value, salt),
                model.partner_id,
                model.submission_id,
            ],
        )

    assert _divergence() == (
        f"divergence: hashes_entry id {index}: no entry_added leaf at log index {index}"
    )


def test_an_erased_value_put_back_is_reported(world: World) -> None:
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute(
            "UPDATE hashes_entry SET value = %s, salt = %s WHERE id = %s",
            [secrets.token_hex(16), salt_new(), world.erased],
        )

    assert f"hashes_entry id {world.erased}: an erased entry still holds a value" in _divergence()


def test_a_revocation_undone_is_reported(world: World) -> None:
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute(
            "UPDATE hashes_entry SET status = 'active', revocation_id = NULL, "
            "revoked_log_index = NULL, revoked_at = NULL WHERE id = %s",
            [world.revoked_by_admin],
        )

    assert f"hashes_entry id {world.revoked_by_admin}: no entry has revoked_log_index" in (
        _divergence()
    )


# Memory


def _filler(count: int) -> None:
    """`count` events straight into the log, in large transactions."""
    for start in range(0, count, 5000):
        with transaction.atomic():
            log_append(
                drafts=[
                    EventDraft(leaves.PARTNER_SUSPENDED, {"n": secrets.token_hex(16)})
                    for _ in range(min(5000, count - start))
                ]
            )


def _peak_bytes() -> tuple[int, int]:
    tracemalloc.start()
    try:
        report = log_verify(chunk=500)
        return report.size, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_log() -> None:
    _filler(2000)
    checkpoint_sign()
    small_size, small = _peak_bytes()
    _filler(18000)
    checkpoint_sign()
    large_size, large = _peak_bytes()

    assert (small_size, large_size) == (2000, 20000)
    # Ten times the events, about the same peak: chunks, one tile per level, O(log n) hashes.
    assert large < small * 1.3 + 64 * 1024, (small, large)


@pytest.fixture
def witness(settings: Any) -> Iterator[Any]:
    """An outside witness over real HTTP, configured as the server's only witness."""
    from audit.services import log_vkey
    from consortium_client.notes import vkey_parse
    from tests.witness import Witness

    running = Witness("witness.example/w1", {settings.LOG_ORIGIN: [vkey_parse(log_vkey())]})
    running.start()
    settings.LOG_WITNESSES = [running.config]
    settings.LOG_WITNESS_ALLOW_LOCAL_HTTP = True
    yield running
    running.stop()


def _witness_cosigns(world: World) -> None:
    from audit.witnesses import witness_push, witnesses_configured

    checkpoint = checkpoint_sign()
    assert witness_push(witness=witnesses_configured()[0], size=checkpoint.size).stored


def test_witness_cosignatures_are_checked_with_the_configured_keys(
    world: World, witness: Any, settings: Any
) -> None:
    _witness_cosigns(world)
    checked = _verify_output()

    # A witness dropped from the configuration: its key is unknown here, so its
    # cosignature is counted apart rather than reported as tampering.
    settings.LOG_WITNESSES = []
    unchecked = _verify_output()

    assert "1 more by witnesses no longer configured" not in checked
    assert "1 more by witnesses no longer configured" in unchecked


def test_a_changed_witness_cosignature_is_reported(world: World, witness: Any) -> None:
    _witness_cosigns(world)
    with _as_database_owner("audit_cosignature") as cursor:
        cursor.execute("UPDATE audit_cosignature SET timestamp = timestamp + 1 WHERE witness <> ''")

    line = _divergence()

    assert "audit_cosignature" in line
    assert "timestamp column" in line


# Variants: rows of their own, checked against the entry's leaf like its value


def _entry_with_variants(alice: PartnerClient) -> tuple[int, dict[str, Any]]:
    variants = {"canonical": pdq(), "crop-centre-5": pdq(), "rotate-3": pdq()}
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(), "variants": variants}])
    assert response.status_code == 201, response.content
    entry_id = json.loads(response.content)["entries"][0]["id"]
    checkpoint_sign()
    return entry_id, variants


def test_an_entrys_variants_pass_and_the_client_verifies_them(
    alice: PartnerClient, bob: PartnerClient, shared_list: HashList
) -> None:
    entry_id, _ = _entry_with_variants(alice)
    assert _verify_output().startswith("log verified: ")
    detail = json.loads(bob.get(f"/api/v1/entries/{entry_id}").content)
    leaf = _leaf_of(bob, entry_id)
    verify_entry(leaf, detail["value"], detail["salt"], detail["variants"])
    with pytest.raises(VerificationError, match="variants"):
        verify_entry(leaf, detail["value"], detail["salt"])
    submission = Entry.objects.get(pk=entry_id).submission_id
    envelope = bob.get(f"/api/v1/submissions/{submission}/envelope").content
    verify_envelope(leaf, envelope, alice.private_key.public_key())

    entry_erase(actor=Actor(label="command"), entry_id=entry_id, reason="a court order")
    checkpoint_sign()
    assert _verify_output().startswith("log verified: ")


def test_a_changed_variant_value_is_reported_and_fails_the_clients_check(
    alice: PartnerClient, bob: PartnerClient, shared_list: HashList
) -> None:
    entry_id, _ = _entry_with_variants(alice)
    with _as_database_owner("hashes_entryvariant") as cursor:
        cursor.execute(
            "UPDATE hashes_entryvariant SET value = %s WHERE entry_id = %s AND position = 1",
            [pdq(7), entry_id],
        )

    assert (
        f"hashes_entryvariant entry {entry_id}: variant 1: value and salt do not open"
        in _divergence()
    )
    detail = json.loads(bob.get(f"/api/v1/entries/{entry_id}").content)
    with pytest.raises(VerificationError, match="variant 1"):
        verify_entry(_leaf_of(bob, entry_id), detail["value"], detail["salt"], detail["variants"])


def test_a_deleted_or_added_variant_is_reported(
    alice: PartnerClient, shared_list: HashList
) -> None:
    entry_id, _ = _entry_with_variants(alice)
    with _as_database_owner("hashes_entryvariant") as cursor:
        cursor.execute(
            "DELETE FROM hashes_entryvariant WHERE entry_id = %s AND position = 2", [entry_id]
        )
    assert f"hashes_entryvariant entry {entry_id}: the rows are not the leaf's" in _divergence()


def test_a_run_stopped_early_closes_every_cursor_it_opened(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cursor's generator left to the garbage collector closes its cursor in the middle of
    # whatever query runs next on the connection, which psycopg cannot interleave: a test run
    # hung once that way. A run stopped by a divergence must close its streams itself.
    from audit import log_verify as module

    streams: list[Any] = []
    opened = module._Stream.__init__

    def recorded(self: Any, rows: Any) -> None:
        streams.append(self)
        opened(self, rows)

    monkeypatch.setattr(module._Stream, "__init__", recorded)
    with _as_database_owner("hashes_entry") as cursor:
        cursor.execute(
            "UPDATE hashes_entry SET value = %s WHERE id = %s", [pdq(7), world.alice_entries[0]]
        )

    with pytest.raises(module.Divergence):
        log_verify(chunk=1)

    # Read one row at a time and stopped at the first entry, several streams had rows left.
    generators = [stream._rows for stream in streams if inspect.isgenerator(stream._rows)]
    assert sum(stream.head is not None for stream in streams) >= 3
    assert {inspect.getgeneratorstate(rows) for rows in generators} == {inspect.GEN_CLOSED}
