"""Writes to the log and the access log. Both are append-only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit.actors import Actor
from audit.models import AccessEvent, AccessPeriod, LogEvent, LogHead
from audit.selectors import access_period_event_fields
from consortium.bulk import rows_insert
from consortium_client.accesslog import access_period_digest
from consortium_client.leaves import ACCESS_PERIOD_SEALED, leaf_encode


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
