"""The log: dense indexes under concurrent writers, append-only on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AccessEvent, LogEvent
from audit.services import EventDraft, log_append
from consortium_client import leaves
from hashes.models import HashList
from tests.conftest import PartnerClient, partner_client, pdq
from tests.factories import HashListFactory


def _in_thread(work: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_feed_reader_sees_every_event_once_in_order_while_writers_submit() -> None:
    writers = [partner_client(f"writer-{n}") for n in range(4)]
    reader = partner_client("reader", scopes=["read"])
    HashListFactory(name="shared", owner=writers[0].partner, visibility=HashList.Visibility.ALL)
    start_size = LogEvent.objects.count()
    batches, batch_size = 6, 25
    errors: list[BaseException] = []

    def write(writer: PartnerClient) -> Callable[[], None]:
        def work() -> None:
            for _ in range(batches):
                entries = [{"algorithm": "pdq", "value": pdq()} for _ in range(batch_size)]
                response = writer.submit("shared", entries)
                assert response.status_code == 201, response.content

        return work

    threads = [_in_thread(write(writer), errors) for writer in writers]
    seen: list[int] = []
    cursor: str | None = None
    while any(thread.is_alive() for thread in threads):
        page = reader.feed(cursor, limit=7)
        seen += [event["index"] for event in page["events"]]
        cursor = page["next"]
    for thread in threads:
        thread.join()
    assert not errors, errors
    events, _ = reader.feed_all(cursor)
    seen += [event["index"] for event in events]

    total = LogEvent.objects.count()
    assert total == start_size + len(writers) * batches * batch_size
    assert seen == list(range(total)), "every event exactly once, in index order"


@pytest.mark.django_db(transaction=True)
def test_a_late_committing_writer_blocks_later_indexes_until_it_commits() -> None:
    """Writer A takes indexes and stalls before committing; writer B must not get past it,
    so no reader can see B's index while A's lower one is still missing."""
    a_has_indexes, release_a = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    draft = EventDraft(leaves.PARTNER_SUSPENDED, {"partner": "x", "by": "test", "reason": ""})

    def slow_writer() -> None:
        with transaction.atomic():
            log_append(drafts=[draft])
            a_has_indexes.set()
            release_a.wait(timeout=10)

    def fast_writer() -> None:
        with transaction.atomic():
            log_append(drafts=[draft])

    slow = _in_thread(slow_writer, errors)
    assert a_has_indexes.wait(timeout=10)
    fast = _in_thread(fast_writer, errors)
    fast.join(timeout=1)
    assert fast.is_alive(), "the second writer waits for the first to commit"
    assert LogEvent.objects.count() == 0, "nothing is visible before the first commit"
    release_a.set()
    slow.join()
    fast.join()
    assert not errors, errors
    assert list(LogEvent.objects.values_list("index", flat=True)) == [0, 1]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_writer_leaves_no_gap() -> None:
    draft = EventDraft(leaves.PARTNER_SUSPENDED, {"partner": "x", "by": "test", "reason": ""})

    def failing_work() -> None:
        with transaction.atomic():
            log_append(drafts=[draft, draft])
            raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        failing_work()
    with transaction.atomic():
        log_append(drafts=[draft])
    assert list(LogEvent.objects.values_list("index", flat=True)) == [0]


@pytest.mark.parametrize("table", ["audit_logevent", "audit_accessevent"])
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {table} SET time = now()", "DELETE FROM {table}"],
)
def test_append_only_tables_refuse_update_and_delete_in_sql(
    alice: PartnerClient, table: str, statement: str
) -> None:
    assert LogEvent.objects.exists()
    assert AccessEvent.objects.exists()
    before = (LogEvent.objects.count(), AccessEvent.objects.count())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute(statement.format(table=table))
    assert (LogEvent.objects.count(), AccessEvent.objects.count()) == before


def test_leaves_are_served_verbatim_in_the_feed(alice: PartnerClient, shared_list) -> None:
    response = alice.submit("ncii", [{"algorithm": "md5", "value": "0" * 32}])
    assert response.status_code == 201
    raw = alice.get("/api/v1/feed").content
    for event in LogEvent.objects.all():
        assert bytes(event.leaf) in raw
