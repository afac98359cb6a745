"""Writes to the log and the access log. Both are append-only."""

from __future__ import annotations

import os
import secrets
import threading
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
from django.utils import timezone

from audit.actors import Actor
from audit.models import AccessEvent, Checkpoint, Cosignature, LogEvent, LogHead
from audit.tree import tree_extend, tree_root
from consortium.bulk import rows_insert
from consortium.errors import InvalidCosignature, UnknownCheckpoint, WrongCosignerName
from consortium_client.leaves import leaf_encode
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


CHECKPOINT_SIGNER = Actor.system("checkpoint-signer")


def checkpoint_sign(*, actor: Actor = CHECKPOINT_SIGNER) -> Checkpoint:
    """Sign a checkpoint of the log at its committed size, unless one of that size exists.

    Never two roots for one size: the size is unique, so of two concurrent signers one
    stores its note and the other gets that one back (the root of a size is a function of
    the committed leaves anyway; the check below would catch tiles that disagree).
    """
    size = log_committed_size()
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
    if bytes(checkpoint.root) != root:
        raise RuntimeError(f"two roots for tree size {size}: the tiles were changed")
    return checkpoint


def log_committed_size() -> int:
    return LogHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0


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
