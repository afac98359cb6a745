"""Every existing entry gets a server-chosen salt and commitment, and every log leaf is
rewritten as version 2 (a nonce per event; entry_added commits to its value instead of
holding it; entry_revoked loses algorithm and value). Allowed once, before the first
checkpoint is signed: no verifier has ever been shown a version 1 leaf's hash.

Existing submissions are version 1 envelopes, which sign the values themselves; they stay
as legacy (payload_version 1) and are redacted if one of their entries is erased.

The leaf encoding and the commitment are frozen here, copied from consortium_client as
they are at version 2, so that this migration never changes meaning when that code does.
On PostgreSQL the log's append-only trigger is disabled for the rewrite and enabled again;
a migration runs in one transaction, so no other session ever sees the log without it.
"""

import hashlib
import json
import secrets

from django.db import migrations
from django.db.migrations.exceptions import IrreversibleError

CHUNK = 5000
LOG_TABLE = "audit_logevent"
TRIGGER = "audit_logevent_append_only"
UPDATE = 'UPDATE audit_logevent SET leaf = %s WHERE "index" = %s'
COMMITMENT_DOMAIN = b"consortium-commitment-v1\x00"


def _commitment(algorithm: str, value: str, salt: str) -> str:
    # Stored values were normalised (lowercase hex of the algorithm's width) on the way in.
    digest = hashlib.sha256(COMMITMENT_DOMAIN)
    digest.update(bytes.fromhex(salt))
    digest.update(algorithm.encode("ascii") + b"\x00" + value.encode("ascii"))
    return digest.hexdigest()


def _leaf(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _entries_salt(Entry) -> dict[int, str]:
    commitments: dict[int, str] = {}
    batch = []
    for entry in Entry.objects.order_by("pk").only("pk", "algorithm", "value").iterator(CHUNK):
        entry.salt = secrets.token_hex(16)
        entry.commitment = _commitment(entry.algorithm, entry.value, entry.salt)
        commitments[entry.pk] = entry.commitment
        batch.append(entry)
        if len(batch) >= CHUNK:
            Entry.objects.bulk_update(batch, ["salt", "commitment"])
            batch = []
    if batch:
        Entry.objects.bulk_update(batch, ["salt", "commitment"])
    return commitments


def _leaf_v2(document: dict, commitments: dict[int, str]) -> bytes:
    if document.get("v") != 1:
        raise ValueError(f"log event {document.get('index')} is not a version 1 leaf")
    document = dict(document, v=2, nonce=secrets.token_hex(16))
    if document["type"] == "entry_added":
        document.pop("value")
        document["commitment"] = commitments[document["index"]]
    elif document["type"] == "entry_revoked":
        document.pop("algorithm", None)
        document.pop("value", None)
    return _leaf(document)


def forwards(apps, schema_editor):
    Entry = apps.get_model("hashes", "Entry")
    Submission = apps.get_model("hashes", "Submission")
    LogEvent = apps.get_model("audit", "LogEvent")
    Submission.objects.update(payload_version=1)
    commitments = _entries_salt(Entry)
    postgresql = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        if postgresql:
            cursor.execute(f"ALTER TABLE {LOG_TABLE} DISABLE TRIGGER {TRIGGER}")
        rows = []
        for index, leaf in (
            LogEvent.objects.order_by("index").values_list("index", "leaf").iterator(CHUNK)
        ):
            rows.append((_leaf_v2(json.loads(bytes(leaf)), commitments), index))
            if len(rows) >= CHUNK:
                cursor.executemany(UPDATE, rows)
                rows = []
        if rows:
            cursor.executemany(UPDATE, rows)
        if postgresql:
            cursor.execute(f"ALTER TABLE {LOG_TABLE} ENABLE TRIGGER {TRIGGER}")


def backwards(apps, schema_editor):
    # Only an empty log goes back (a test database, or a deployment that never wrote):
    # the version 1 leaves held the values, which version 2 never keeps.
    LogEvent = apps.get_model("audit", "LogEvent")
    Entry = apps.get_model("hashes", "Entry")
    if LogEvent.objects.exists() or Entry.objects.exists():
        raise IrreversibleError(
            "version 2 leaves cannot be turned back into version 1 leaves"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("hashes", "0004_entry_commitment_salt_erasure"),
        ("audit", "0002_append_only"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
