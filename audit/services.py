"""Writes to the log and the access log. Both are append-only."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.actors import Actor
from audit.models import AccessEvent, LogEvent, LogHead
from consortium.bulk import rows_insert
from consortium_client.leaves import leaf_encode


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
