"""The data migration on real version 1 data: a log written before issue 7 (values in its
leaves, version 1 envelopes) is rewritten as version 2 leaves and tiles, as a deployment
upgrading would run it (`hashes/0005_leaves_v2`, `audit/0005_tree_tiles_checkpoints`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.actors import Actor
from audit.tree import tile_read, tree_root
from consortium_client import merkle
from consortium_client.commitments import commitment_check
from consortium_client.dsse import (
    REVOCATION_PAYLOAD_TYPE,
    SUBMISSION_V1_PAYLOAD_TYPE,
    envelope_sign,
)
from consortium_client.keys import key_generate, key_id
from consortium_client.leaves import NONCE_PATTERN
from consortium_client.strictjson import strict_json_dumps
from hashes.models import Entry, Submission
from hashes.services import entry_erase

pytestmark = pytest.mark.django_db(transaction=True)

# The last state before issue 7's migrations: values in leaves, lists a foreign key of events.
BEFORE = [
    ("hashes", "0003_signed_statement_nonce"),
    ("audit", "0003_access_period"),
    ("partners", "0001_initial"),
]
TIME = "2025-06-01T12:00:00.000000Z"


def _leaf_v1(index: int, event_type: str, **fields: Any) -> bytes:
    """A leaf as version 1 wrote it (canonical JSON, no nonce, values in the clear)."""
    document = {"v": 1, "index": index, "type": event_type, "time": TIME, **fields}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@pytest.fixture
def before_issue_7() -> Iterator[Any]:
    """The historical apps at `BEFORE`; the schema is migrated to the latest afterwards,
    whatever the test did, so the tests after it find the database they expect."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    executor.loader.build_graph()
    try:
        yield executor.loader.project_state(BEFORE).apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _v1_log(apps: Any) -> dict[str, Any]:
    """Partners, keys, a list, a version 1 submission of three entries, a revocation and
    key events, written through the historical models as version 1 code wrote them."""
    Partner = apps.get_model("partners", "Partner")
    ApiKey = apps.get_model("partners", "ApiKey")
    SigningKey = apps.get_model("partners", "SigningKey")
    HashList = apps.get_model("hashes", "HashList")
    Submission = apps.get_model("hashes", "Submission")
    Revocation = apps.get_model("hashes", "Revocation")
    Entry = apps.get_model("hashes", "Entry")
    LogEvent = apps.get_model("audit", "LogEvent")
    LogHead = apps.get_model("audit", "LogHead")

    acme = Partner.objects.create(name="acme", display_name="Acme", status="active")
    hotline = Partner.objects.create(name="hotline", display_name="Hotline", status="active")
    api_key = ApiKey.objects.create(
        partner=acme, name="k", prefix="abcd1234", digest="0" * 64, scopes=["submit", "read"]
    )
    private_key = key_generate()
    public = private_key.public_key().public_bytes_raw()
    signing_key = SigningKey.objects.create(
        partner=acme, key_id=key_id(private_key.public_key()), public_key=public
    )
    hash_list = HashList.objects.create(name="ncii", owner=acme, visibility="all")
    leaves: list[bytes] = []

    def append(event_type: str, *, hash_list_id: int | None = None, **fields: Any) -> int:
        index = len(leaves)
        leaves.append(_leaf_v1(index, event_type, **fields))
        LogEvent.objects.create(
            index=index,
            event_type=event_type,
            time=timezone.now(),
            hash_list_id=hash_list_id,
            partner=acme,
            leaf=leaves[-1],
        )
        return index

    for partner in (acme, hotline):
        append("signing_key_registered", partner=partner.name, key=signing_key.key_id, by="admin")
    values = [("pdq", f"{n:064x}") for n in (1, 2)] + [("md5", "d4" * 16)]
    payload = {
        "list": "ncii",
        "entries": [{"algorithm": a, "value": v, "labels": ["ncii"]} for a, v in values],
        "timestamp": TIME,
        "nonce": "00" * 16,
    }
    envelope = envelope_sign(SUBMISSION_V1_PAYLOAD_TYPE, strict_json_dumps(payload), private_key)
    submission = Submission.objects.create(
        partner=acme,
        api_key=api_key,
        signing_key=signing_key,
        hash_list=hash_list,
        envelope=envelope,
        envelope_sha256=hashlib.sha256(envelope).hexdigest(),
        entry_count=len(values),
        nonce="00" * 16,
        payload_sha256=hashlib.sha256(strict_json_dumps(payload)).hexdigest(),
        signed_at=timezone.now(),
    )
    for algorithm, value in values:
        index = append(
            "entry_added",
            hash_list_id=hash_list.pk,
            list="ncii",
            algorithm=algorithm,
            value=value,
            labels=["ncii"],
            partner="acme",
            key=signing_key.key_id,
            envelope=submission.envelope_sha256,
            submission=submission.pk,
        )
        Entry.objects.create(
            id=index,
            hash_list=hash_list,
            algorithm=algorithm,
            value=value,
            labels=["ncii"],
            partner=acme,
            submission=submission,
        )
    revoked = Entry.objects.order_by("id")[1]
    statement = {
        "entries": [revoked.pk],
        "reason": "mistake",
        "timestamp": TIME,
        "nonce": "11" * 16,
    }
    signed = envelope_sign(REVOCATION_PAYLOAD_TYPE, strict_json_dumps(statement), private_key)
    revocation = Revocation.objects.create(
        partner=acme,
        api_key=api_key,
        signing_key=signing_key,
        reason="mistake",
        envelope=signed,
        envelope_sha256=hashlib.sha256(signed).hexdigest(),
        nonce="11" * 16,
        payload_sha256=hashlib.sha256(strict_json_dumps(statement)).hexdigest(),
        signed_at=timezone.now(),
    )
    tombstone = append(
        "entry_revoked",
        hash_list_id=hash_list.pk,
        entry=revoked.pk,
        list="ncii",
        algorithm=revoked.algorithm,
        value=revoked.value,
        partner="acme",
        revoked_by="acme",
        reason="mistake",
        key=signing_key.key_id,
        envelope=revocation.envelope_sha256,
        revocation=revocation.pk,
    )
    Entry.objects.filter(pk=revoked.pk).update(
        status="revoked",
        revocation=revocation,
        revoked_at=timezone.now(),
        revoked_log_index=tombstone,
    )
    append("signing_key_revoked", partner="hotline", key=signing_key.key_id, by="admin", reason="x")
    LogHead.objects.update_or_create(pk=1, defaults={"size": len(leaves)})
    ids = Entry.objects.order_by("id").values_list("id", flat=True)
    return {"values": dict(zip(ids, values, strict=True))}


def test_version_1_data_migrates_to_version_2_leaves_and_tiles(before_issue_7: Any) -> None:
    written = _v1_log(before_issue_7)
    MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    from audit.models import LogEvent

    leaves = [
        bytes(leaf) for leaf in LogEvent.objects.order_by("index").values_list("leaf", flat=True)
    ]
    assert len(leaves) == 7
    for index, leaf in enumerate(leaves):
        document = json.loads(leaf)
        # Canonical version 2 with a fresh nonce, and no hash value left anywhere in it.
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert canonical.encode() == leaf
        assert (document["v"], document["index"]) == (2, index)
        assert NONCE_PATTERN.fullmatch(document["nonce"])
        assert "value" not in document
        for _, value in written["values"].values():
            assert value.encode() not in leaf
    # Each entry's salt and value open its leaf's commitment.
    for entry in Entry.objects.order_by("id"):
        document = json.loads(leaves[entry.pk])
        assert document["type"] == "entry_added"
        assert (entry.algorithm, entry.value) == written["values"][entry.pk]
        commitment_check(entry.algorithm, entry.value, entry.salt, document["commitment"])
        assert entry.commitment == document["commitment"]
    revoked = json.loads(leaves[5])
    assert revoked["type"] == "entry_revoked"
    assert "algorithm" not in revoked
    # The tiles are the tree of the rewritten leaves.
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    assert tree_root(size=len(leaves)) == merkle.root(hashes)
    assert tile_read(level=0, index=0, width=len(leaves)) == b"".join(hashes)
    # The legacy submission stays version 1; erasing one of its entries redacts it.
    submission = Submission.objects.get()
    assert submission.payload_version == 1
    assert hashlib.sha256(bytes(submission.envelope)).hexdigest() == submission.envelope_sha256
    entry_id = min(written["values"])
    result = entry_erase(actor=Actor.command("tests"), entry_id=entry_id, reason="court order")
    assert result.redacted_submission == submission.pk
    submission.refresh_from_db()
    assert bytes(submission.envelope) == b""
    assert submission.redacted_at is not None
    assert Entry.objects.get(pk=entry_id).value is None
