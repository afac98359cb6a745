"""Writes to the log and the access log. Both are append-only."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit.actors import CHECKPOINT_SIGNER, Actor
from audit.models import AccessEvent, AccessPeriod, Checkpoint, Cosignature, LogEvent, LogHead
from audit.selectors import access_period_event_fields, log_size
from audit.signals import log_appended
from audit.tree import tree_extend, tree_root
from consortium.bulk import rows_insert
from consortium.errors import InvalidCosignature, UnknownCheckpoint, WrongCosignerName
from consortium_client.accesslog import access_period_digest
from consortium_client.leaves import ACCESS_PERIOD_SEALED, leaf_encode
from consortium_client.notes import (
    COSIGNATURE_V1,
    NoteError,
    NoteSigner,
    checkpoint_format,
    checkpoint_parse,
    cosignature_verify,
    note_sign,
    note_verifier,
    signature_parse,
    skey_parse,
)
from partners.models import SigningKey


@dataclass(frozen=True)
class EventDraft:
    """An event before it has an index: what log_append turns into a leaf."""

    event_type: str
    fields: dict[str, Any]
    hash_list_id: int | None = None
    partner_id: int | None = None


# A log row, in the order of LogEvent's fields (the order LogEvent.from_db expects).
LOG_EVENT_COLUMNS = ("index", "event_type", "time", "hash_list_id", "partner_id", "leaf")


def leaf_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log_append(*, drafts: Sequence[EventDraft]) -> list[LogEvent]:
    """Append `drafts` to the log with the next dense indexes and return the stored events.

    Must run inside the caller's transaction, so that the events commit or vanish with the
    work they record. Index assignment is serialised by one UPDATE ... RETURNING on the
    single LogHead row: the row lock it takes is held until the transaction ends, so a
    second writer waits, then reads the size the first one committed. Writers therefore
    commit in index order and the committed indexes are always a prefix 0..size-1 with no
    gap. A reader paging by index can never pass a hole that a slow writer fills later.
    (PostgreSQL makes a commit visible before it releases that transaction's row locks.)
    A rolled-back writer also rolls back its increment, so no index is ever lost.

    Lock order, for every write that appends to the log (the one place it is written down):
    1. rows the write changes, each table's rows in primary-key order (entries being revoked,
       the partner being suspended, the signing key being revoked), locked FOR NO KEY UPDATE
       and never together with joined rows (`select_for_update(of=("self",), no_key=True)`);
    2. the log head, here, always last, held to commit.
    Inserts take KEY SHARE locks on the rows their foreign keys name (list, partner, keys),
    which conflict only with FOR UPDATE and key changes: so nothing takes FOR UPDATE on a
    parent row, and no writer waits for a row lock while holding the log head.
    """
    if not drafts:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("log_append must run inside a transaction")
    table = LogHead._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET size = size + %s WHERE id = 1 RETURNING size",  # noqa: S608
            [len(drafts)],
        )
        row = cursor.fetchone()
        if row is None:
            # A database emptied by flush has no head row: create it, then take the lock.
            cursor.execute(
                f"INSERT INTO {table} (id, size) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"  # noqa: S608
            )
            cursor.execute(
                f"UPDATE {table} SET size = size + %s WHERE id = 1 RETURNING size",  # noqa: S608
                [len(drafts)],
            )
            row = cursor.fetchone()
    size = row[0]
    first = size - len(drafts)
    now = timezone.now()
    time_text = leaf_time(now)
    rows = [
        (
            first + offset,
            draft.event_type,
            now,
            draft.hash_list_id,
            draft.partner_id,
            leaf_encode(
                index=first + offset,
                event_type=draft.event_type,
                time=time_text,
                # Fresh per event, so a leaf's hash reveals nothing of a leaf one may not read.
                nonce=secrets.token_hex(16),
                fields=draft.fields,
            ),
        )
        for offset, draft in enumerate(drafts)
    ]
    rows_insert(LogEvent, LOG_EVENT_COLUMNS, rows)
    # The Merkle tree grows in this transaction, under the log head lock taken above: the
    # tiles of every committed size are committed with it, and no two writers extend them
    # at once. Hashes exactly the leaf bytes stored.
    tree_extend(old_size=first, leaves=[row[5] for row in rows])
    log_appended.send(sender=LogEvent, size=size)
    # The stored events, as a query would return them (cheaper than LogEvent(**fields)).
    return [LogEvent.from_db(connection.alias, LOG_EVENT_COLUMNS, row) for row in rows]


def access_event_record(
    *,
    actor: Actor,
    action: str,
    status: int,
    target: str = "",
    records: int = 0,
    detail: dict[str, Any] | None = None,
) -> AccessEvent:
    """Record one access event. Call it inside the transaction of the work it records."""
    return AccessEvent.objects.create(
        partner=actor.partner,
        key_prefix=actor.key_prefix,
        user=actor.user,
        actor=actor.label,
        action=action,
        target=target[:255],
        records=records,
        status=status,
        client_ip=actor.client_ip,
        detail=detail or {},
    )


# The log key and checkpoints

_log_signers: dict[tuple[str, str], NoteSigner] = {}
_log_signers_lock = threading.Lock()


def log_signer() -> NoteSigner:
    """The log's note signer, named LOG_ORIGIN, from LOG_KEY_FILE (made on first use).

    The file holds Go's `PRIVATE+KEY+<name>+<hash>+<key>` form, readable by Go's
    sumdb/note. A file whose key is named otherwise than LOG_ORIGIN is refused: every
    checkpoint would name a key its verifiers do not know.
    """
    path, origin = Path(settings.LOG_KEY_FILE), settings.LOG_ORIGIN
    slot = (str(path), origin)
    with _log_signers_lock:
        signer = _log_signers.get(slot)
        if signer is None:
            try:
                signer = skey_parse(_log_key_text(path, origin).strip())
            except NoteError as error:
                raise ImproperlyConfigured(f"LOG_KEY_FILE {path}: {error}") from error
            if signer.name != origin:
                raise ImproperlyConfigured(
                    f"LOG_KEY_FILE {path} holds the key of {signer.name!r}, "
                    f"not of LOG_ORIGIN {origin!r}"
                )
            _log_signers[slot] = signer
    return signer


def _log_key_text(path: Path, origin: str) -> str:
    """The key file's text, creating the file with a new key if there is none.

    The new key is written whole to a private temporary file (O_EXCL, mode 0600) and then
    hard-linked to its name, which fails if the name exists: two processes starting at once
    never see a half-written key, and exactly one key wins; the loser reads the winner's.
    """
    if path.exists():
        return path.read_text(encoding="ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    skey = NoteSigner(origin, Ed25519PrivateKey.generate()).skey
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(skey + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_text(encoding="ascii")
    finally:
        temporary.unlink(missing_ok=True)
    return skey + "\n"


def log_vkey() -> str:
    """The log's verifier key in the C2SP vkey text form."""
    return log_signer().verifier.vkey


def checkpoint_sign(*, actor: Actor = CHECKPOINT_SIGNER) -> Checkpoint:
    """Sign a checkpoint of the log at its committed size, unless one of that size exists.

    Never two roots for one size: the size is unique, so of two concurrent signers one
    stores its note and the other gets that one back (the root of a size is a function of
    the committed leaves anyway; the check below would catch tiles that disagree).
    """
    size = log_size()
    existing = Checkpoint.objects.filter(size=size).first()
    if existing is not None:
        return existing
    root = tree_root(size=size)
    text = checkpoint_format(settings.LOG_ORIGIN, size, root)
    note = note_sign(text, [log_signer()])
    with transaction.atomic():
        checkpoint, created = Checkpoint.objects.get_or_create(
            size=size, defaults={"root": root, "note": note}
        )
        if created:
            access_event_record(
                actor=actor, action="log.checkpoint.sign", status=201, target=f"size:{size}"
            )
            _witnesses_push_soon(size)
    if bytes(checkpoint.root) != root:
        raise RuntimeError(f"two roots for tree size {size}: the tiles were changed")
    return checkpoint


def _witnesses_push_soon(size: int) -> None:
    """Queue the push of the new checkpoint to the outside witnesses, once it commits.

    Robust like checkpoint_soon: a broker that cannot be reached is logged and skipped, never
    failing the signer; the next checkpoint's push catches the witnesses up."""
    if not settings.LOG_WITNESSES:
        return
    from audit.tasks import witness_push_task

    transaction.on_commit(lambda: witness_push_task.delay(size), robust=True)


def checkpoint_soon() -> None:
    """Queue a checkpoint signing for when the current transaction commits.

    Call it in any write that appends to the log (submission, revocation, erasure). The
    task is queued on commit, so it signs a size that includes the write; a broker that
    cannot be reached is logged and skipped (robust), never turning a committed write into
    an error: the beat schedule signs the same size within CHECKPOINT_INTERVAL.
    """
    from audit.tasks import checkpoint_sign_task

    transaction.on_commit(checkpoint_sign_task.delay, robust=True)


@dataclass(frozen=True)
class CosignatureResult:
    checkpoint: Checkpoint
    added: int


COSIGNATURE_MAX_BYTES = 64 * 1024


@transaction.atomic
def cosignatures_add(*, actor: Actor, note: bytes) -> CosignatureResult:
    """Verify and store a partner's cosignatures of a checkpoint this log signed.

    `note` is the checkpoint's signed note with one or more cosignature/v1 lines by the
    calling partner (its name, one of its active signing keys); the log's own signature
    line may stay in it. Every line must verify, or nothing is stored. Idempotent per
    checkpoint and signing key: a key's first cosignature of a checkpoint is the one kept.
    """
    partner, _ = actor.require_partner()
    try:
        text = note.decode("utf-8")
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            raise NoteError("a signed note is its text, a blank line and signature lines")
        body = text[: split + 1]
        checkpoint_parse(body)
        signatures = [signature_parse(line) for line in text[split + 2 : -1].split("\n")]
    except (UnicodeDecodeError, NoteError) as error:
        raise InvalidCosignature(f"not a signed checkpoint: {error}") from error
    checkpoint = Checkpoint.objects.filter(size=checkpoint_parse(body).size).first()
    if checkpoint is None or not checkpoint.note.startswith(body + "\n"):
        raise UnknownCheckpoint("the note's text is not a checkpoint this log signed")
    log_key = log_signer()
    cosigners = {
        verifier.key_hash: (verifier, key)
        for key in SigningKey.objects.filter(partner=partner, revoked_at__isnull=True)
        for verifier in [
            note_verifier(
                partner.name,
                Ed25519PublicKey.from_public_bytes(bytes(key.public_key)),
                COSIGNATURE_V1,
            )
        ]
    }
    accepted = []
    for signature in signatures:
        if (signature.name, signature.key_hash) == (log_key.name, log_key.key_hash):
            continue
        if signature.name != partner.name:
            raise WrongCosignerName(
                f"a cosignature is named {signature.name!r}, not {partner.name!r}"
            )
        found = cosigners.get(signature.key_hash)
        if found is None:
            raise InvalidCosignature("a cosignature is by no active signing key of the partner")
        try:
            timestamp = cosignature_verify(found[0], body, signature)
        except NoteError as error:
            raise InvalidCosignature(str(error)) from error
        accepted.append((found[1], timestamp, signature.line))
    if not accepted:
        raise InvalidCosignature("the note carries no cosignature by the calling partner")
    added = 0
    for signing_key, timestamp, line in accepted:
        _, created = Cosignature.objects.get_or_create(
            checkpoint=checkpoint,
            signing_key=signing_key,
            defaults={"partner": partner, "timestamp": timestamp, "line": line},
        )
        added += created
    access_event_record(
        actor=actor,
        action="log.cosignature.add",
        status=201 if added else 200,
        target=f"size:{checkpoint.size}",
        records=added,
    )
    return CosignatureResult(checkpoint, added)


# Access-log periods: sealing the access events of a closed period into the log.


class AccessPeriodBusy(RuntimeError):
    """Transactions that may hold ids of the period did not end in time: nothing sealed."""


# pg_advisory_xact_lock key that serialises sealers ("access-period" in a bigint).
ACCESS_PERIOD_LOCK = 0x6163_6365_7373_7064
# Transactions of this database holding the lock every INSERT into the access log takes.
ACCESS_LOG_WRITERS_SQL = """
SELECT DISTINCT virtualtransaction FROM pg_locks
WHERE locktype = 'relation' AND mode = 'RowExclusiveLock'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND relation = %s::regclass AND pid IS DISTINCT FROM pg_backend_pid()
"""


def access_ids_settled(*, wait_seconds: float) -> int:
    """The largest access-event id B such that every id <= B is committed or rolled back
    for good: nothing can still commit at or below B. 0 if no id was handed out yet.

    Ids come from a sequence when a row is inserted, but writers insert access events inside
    long transactions (a submission of 10,000 entries), so they commit out of order: the
    committed maximum says nothing about a smaller id still in flight. So, on PostgreSQL:
    1. read B, the last value the sequence handed out (with CACHE 1, the only setting under
       which the sequence's last value is an upper bound of every id handed out);
    2. list the transactions that hold ROW EXCLUSIVE on the access-event table. Every INSERT
       (and COPY) takes that lock before its defaults call nextval and keeps it to the end
       of its transaction, so a transaction that got an id <= B before step 1 and has not
       ended is on this list;
    3. wait (polling, with a deadline) until each listed transaction is gone from pg_locks.
       PostgreSQL makes a commit visible to new snapshots before it releases the
       transaction's locks, so once the lock is gone, its rows are visible or gone forever.
    Writers pay nothing: no lock of theirs is taken, they are only watched. The wait is
    bounded by the longest transaction already running at step 2, never by later ones.
    Waiting for transaction ids instead (`pg_current_snapshot`, `pg_xact_status`) would
    miss an INSERT whose nextval ran before its transaction had an id (an autocommit read's
    access event), and `pg_xact_status` says committed a moment before the commit is
    visible; the lock closes both windows.

    On SQLite (the quick start) one transaction writes at a time and an AUTOINCREMENT id is
    above every committed id when it is handed out, so committed ids are a prefix: B is the
    committed maximum.
    """
    if connection.vendor != "postgresql":
        return AccessEvent.objects.aggregate(last=Max("id"))["last"] or 0
    table = AccessEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        (sequence,) = cursor.fetchone()
        cursor.execute(
            "SELECT seqcache, pg_sequence_last_value(seqrelid) FROM pg_sequence "
            "WHERE seqrelid = %s::regclass",
            [sequence],
        )
        cache, last_value = cursor.fetchone()
        if cache != 1:
            raise RuntimeError(f"{sequence} caches {cache} values: sealing needs CACHE 1")
        cursor.execute(ACCESS_LOG_WRITERS_SQL, [table])
        in_flight = [row[0] for row in cursor.fetchall()]
        deadline = time.monotonic() + wait_seconds
        while in_flight:
            if time.monotonic() > deadline:
                raise AccessPeriodBusy(
                    f"{len(in_flight)} transactions writing access events did not end "
                    f"within {wait_seconds:g} s (virtual transaction ids {in_flight[:5]})"
                )
            time.sleep(0.02)
            cursor.execute(
                ACCESS_LOG_WRITERS_SQL + " AND virtualtransaction = ANY(%s)", [table, in_flight]
            )
            in_flight = [row[0] for row in cursor.fetchall()]
    return last_value or 0


def access_period_seal(*, actor: Actor, wait_seconds: float = 60.0) -> AccessPeriod | None:
    """Seal the access events after the last sealed period, up to the newest settled id
    (`access_ids_settled`), and append their digest to the log as an
    `access_period_sealed` event, in one transaction with the period row. None when no id
    was handed out since the last period.

    Invariants: periods are numbered 1, 2, ... and each starts where the previous one
    ended, so every access event belongs to exactly one sealed period or to the open one;
    and no event can commit into a period after it is sealed. Sealers are serialised by an
    advisory lock, taken before the previous period is read. The seal's own access event
    gets an id above the period's range: it belongs to the next period.

    Must run outside any transaction: it waits for other transactions to end.
    """
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "access_period_seal waits for other writers: call it outside a transaction"
        )
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Under REPEATABLE READ the events would be read from a snapshot taken
                # before the wait, missing the very commits it waited for.
                cursor.execute("SHOW transaction_isolation")
                (isolation,) = cursor.fetchone()
                if isolation != "read committed":
                    raise RuntimeError(f"access_period_seal needs READ COMMITTED, not {isolation}")
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ACCESS_PERIOD_LOCK])
        previous = AccessPeriod.objects.order_by("-number").first()
        number, after_id = (previous.number + 1, previous.last_id) if previous else (1, 0)
        # Waited for before the log head is taken: holding it would stall every writer.
        last_id = access_ids_settled(wait_seconds=wait_seconds)
        if last_id <= after_id:
            return None
        count, root = access_period_digest(
            access_period_event_fields(after_id=after_id, last_id=last_id)
        )
        fields = {
            "period": number,
            "after_id": after_id,
            "last_id": last_id,
            "count": count,
            "root": root,
        }
        (event,) = log_append(drafts=[EventDraft(ACCESS_PERIOD_SEALED, fields)])
        period = AccessPeriod.objects.create(
            number=number,
            after_id=after_id,
            last_id=last_id,
            count=count,
            root=root,
            log_index=event.index,
            sealed_at=event.time,
        )
        access_event_record(
            actor=actor,
            action="access_period.seal",
            status=201,
            target=f"period {number}",
            records=count,
            detail={"after_id": after_id, "last_id": last_id, "log_index": event.index},
        )
    return period
