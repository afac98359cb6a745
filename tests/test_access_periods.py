"""Access-log periods: sealed digests of the access events, in the log (promise 6).

Sealing waits for every transaction that may still commit an access event of the period,
so the tests here hold writers open in threads with their own connections while a sealer
runs, and check afterwards that each period still holds exactly what it sealed.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections.abc import Callable

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from audit.actors import ACCESS_PERIOD_SEALER, Actor
from audit.models import AccessEvent, AccessPeriod
from audit.selectors import access_period_event_fields, access_periods_in_order, log_leaf
from audit.services import (
    AccessPeriodBusy,
    access_event_record,
    access_ids_settled,
    access_period_seal,
)
from audit.tasks import access_period_seal_task
from consortium_client import leaves
from consortium_client.accesslog import AccessLogError, access_period_verify
from tests.conftest import PartnerClient, partner_client, problem, staff_login
from tests.test_log import _in_thread

WRITER = Actor.command("tests")


def _record(n: int = 1) -> list[int]:
    return [
        access_event_record(actor=WRITER, action="test.write", status=200, target=str(i)).pk
        for i in range(n)
    ]


def _rolled_back(n: int) -> list[int]:
    """Ids handed out to access events whose transaction then rolled back."""
    ids: list[int] = []
    try:
        with transaction.atomic():
            ids += _record(n)
            raise LookupError("the work failed")
    except LookupError:
        return ids


def _sealed_fields(period: AccessPeriod) -> dict:
    leaf = log_leaf(index=period.log_index)
    assert leaf is not None
    return leaves.leaf_decode(leaf)


def _verify(period: AccessPeriod) -> None:
    events = access_period_event_fields(after_id=period.after_id, last_id=period.last_id)
    access_period_verify(events, _sealed_fields(period))


def _assert_periods_chain() -> list[AccessPeriod]:
    """Periods 1..n, each starting where the previous ended, each verifying as stored."""
    periods = list(access_periods_in_order())
    after = 0
    for number, period in enumerate(periods, start=1):
        assert (period.number, period.after_id) == (number, after)
        _verify(period)
        after = period.last_id
    return periods


@pytest.mark.django_db(transaction=True)
def test_a_seal_commits_to_every_access_event_so_far_and_appends_its_leaf() -> None:
    ids = _record(5)

    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)

    assert period is not None
    assert (period.number, period.after_id, period.last_id) == (1, 0, max(ids))
    assert period.count == AccessEvent.objects.filter(id__lte=max(ids)).count()
    sealed = _sealed_fields(period)
    assert sealed["type"] == leaves.ACCESS_PERIOD_SEALED
    assert {k: sealed[k] for k in ("period", "after_id", "last_id", "count", "root")} == {
        "period": 1,
        "after_id": 0,
        "last_id": period.last_id,
        "count": period.count,
        "root": period.root,
    }
    _verify(period)
    # The seal is itself an access event, of the next period.
    seal_event = AccessEvent.objects.get(action="access_period.seal")
    assert seal_event.actor == "system:access_period_seal"
    assert seal_event.id > period.last_id
    assert seal_event.detail["log_index"] == period.log_index


@pytest.mark.django_db(transaction=True)
def test_sealing_again_takes_up_where_the_last_period_ended() -> None:
    _record(2)
    first = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    _record(3)

    second = access_period_seal(actor=ACCESS_PERIOD_SEALER)

    assert first is not None
    assert second is not None
    assert (second.number, second.after_id) == (2, first.last_id)
    # The first seal's access event, then the three writes.
    assert second.count == 4
    _assert_periods_chain()


@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_nothing_to_seal_before_the_first_access_event() -> None:
    assert AccessEvent.objects.count() == 0
    assert access_period_seal(actor=ACCESS_PERIOD_SEALER) is None
    assert not AccessPeriod.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ids_rolled_back_inside_a_period_are_covered_and_not_counted() -> None:
    kept = _record(1)
    assert len(_rolled_back(3)) == 3
    kept += _record(1)

    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)

    assert period is not None
    assert period.last_id == kept[-1]
    assert period.count == 2
    assert period.last_id - period.after_id == 5
    _verify(period)


@pytest.mark.django_db(transaction=True)
def test_sealer_refuses_to_run_inside_a_transaction() -> None:
    with pytest.raises(RuntimeError, match="outside a transaction"), transaction.atomic():
        access_period_seal(actor=ACCESS_PERIOD_SEALER)


def _writer(hold: threading.Event, held: threading.Event, *, commit: bool) -> Callable[[], None]:
    """A write service's transaction: inserts its access event, then stays open."""

    def work() -> None:
        try:
            with transaction.atomic():
                _record(1)
                held.set()
                assert hold.wait(30)
                if not commit:
                    raise LookupError("rolled back on purpose")
        except LookupError:
            pass

    return work


@pytest.mark.django_db(transaction=True)
def test_the_sealer_waits_for_open_writers_and_late_commits_stay_in_its_period() -> None:
    """Writers hold ids below the sealer's boundary in open transactions: the sealer waits
    until each has committed or rolled back, so their events are inside the period it seals
    (or gone), never committed into it after it is sealed."""
    _record(2)
    release = threading.Event()
    errors: list[BaseException] = []
    writers, helds = [], []
    for commit in (True, False, True):
        held = threading.Event()
        writers.append(_in_thread(_writer(release, held, commit=commit), errors))
        helds.append(held)
    for held in helds:
        assert held.wait(10)
    # A later, quick writer commits before the slow ones: ids commit out of order.
    late_id = _record(1)[0]

    sealed: list[AccessPeriod | None] = []
    sealer = _in_thread(lambda: sealed.append(access_period_seal(actor=WRITER)), errors)
    try:
        time.sleep(0.5)
        assert sealer.is_alive(), "the sealer did not wait for the open writers"
        assert not AccessPeriod.objects.exists()
    finally:
        release.set()
        for thread in [*writers, sealer]:
            thread.join(30)
    assert not errors, errors

    (period,) = sealed
    assert period is not None
    assert period.last_id >= late_id
    committed = set(AccessEvent.objects.filter(id__lte=period.last_id).values_list("id", flat=True))
    # Two writers committed; their events are in the period, and nothing else is.
    assert len(committed) == period.count == 2 + 2 + 1
    _assert_periods_chain()


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_never_ends_makes_the_seal_give_up_and_seal_nothing() -> None:
    release, held = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    writer = _in_thread(_writer(release, held, commit=True), errors)
    assert held.wait(10)
    try:
        with pytest.raises(AccessPeriodBusy, match=r"did not end within 0\.2 s"):
            access_period_seal(actor=ACCESS_PERIOD_SEALER, wait_seconds=0.2)
        assert not AccessPeriod.objects.exists()
    finally:
        release.set()
        writer.join(30)
    assert not errors, errors
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    assert period.count == 1
    _verify(period)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_sealers_never_change_a_sealed_period() -> None:
    """Writers insert access events in transactions of random length (some rolled back),
    and requests are audited in autocommit, while two sealers seal over and over. Every
    period verifies afterwards against the events as stored: none was added to, and every
    access event is in exactly one period or after the last."""
    reader = partner_client("reader", scopes=["read"])
    stop = threading.Event()
    errors: list[BaseException] = []
    rng = random.Random(7)

    def long_writer(seed: int) -> Callable[[], None]:
        pace = random.Random(seed)

        def work() -> None:
            while not stop.is_set():
                try:
                    with transaction.atomic():
                        _record(pace.randint(1, 3))
                        time.sleep(pace.uniform(0, 0.05))
                        if pace.random() < 0.2:
                            raise LookupError("rolled back")
                except LookupError:
                    pass

        return work

    def requests() -> None:
        while not stop.is_set():
            assert reader.get("/api/v1/me").status_code == 200

    def sealer() -> None:
        while not stop.is_set():
            access_period_seal(actor=ACCESS_PERIOD_SEALER)
            time.sleep(rng.uniform(0, 0.05))

    threads = [_in_thread(long_writer(seed), errors) for seed in range(3)]
    threads += [
        _in_thread(requests, errors),
        _in_thread(sealer, errors),
        _in_thread(sealer, errors),
    ]
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    access_period_seal(actor=ACCESS_PERIOD_SEALER)

    periods = _assert_periods_chain()
    assert len(periods) >= 5
    assert (
        sum(period.count for period in periods)
        == AccessEvent.objects.filter(id__lte=periods[-1].last_id).count()
    )


@pytest.mark.django_db(transaction=True)
def test_periods_never_overlap_even_when_written_directly() -> None:
    _record(3)
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    fields = {"count": 0, "root": "0" * 64, "sealed_at": period.sealed_at, "log_index": 98}

    for overlap in (
        {"number": 1, "after_id": 1, "last_id": 99},  # number reused
        {"number": 3, "after_id": period.after_id, "last_id": 99},  # same start
        {"number": 3, "after_id": 1, "last_id": period.last_id},  # same end
        {"number": 3, "after_id": 0, "last_id": 99},  # a second first period
        {"number": 3, "after_id": 99, "last_id": 99},  # an empty range
        {"number": 3, "after_id": 99, "last_id": 100, "count": 2},  # more than its range
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            AccessPeriod.objects.create(**{**fields, **overlap})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_accessevent SET records = records + 1 WHERE id = %(target)s",
        "UPDATE audit_accessevent SET time = time + interval '1 microsecond' WHERE id = %(target)s",
        'UPDATE audit_accessevent SET detail = \'{"path": "/elsewhere"}\' WHERE id = %(target)s',
        "DELETE FROM audit_accessevent WHERE id = %(target)s",
        "INSERT INTO audit_accessevent (id, time, key_prefix, actor, action, target, records,"
        " status, detail) VALUES (%(gap)s, now(), '', 'command:x', 'forged', '', 0, 200, '{}')",
    ],
    ids=["records", "time", "detail", "deleted", "inserted"],
)
def test_an_access_event_changed_in_sql_after_sealing_fails_verification(tamper: str) -> None:
    """As a database owner could: with the append-only trigger disabled."""
    _record(2)
    (gap,) = _rolled_back(1)  # a hole inside the period
    target = _record(2)[0]
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    _verify(period)

    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE audit_accessevent DISABLE TRIGGER audit_accessevent_append_only"
        )
        try:
            cursor.execute(tamper, {"target": target, "gap": gap})
        finally:
            cursor.execute(
                "ALTER TABLE audit_accessevent ENABLE TRIGGER audit_accessevent_append_only"
            )

    with pytest.raises(AccessLogError):
        _verify(period)


@pytest.mark.django_db(transaction=True)
def test_sealed_periods_refuse_update_and_delete_in_sql() -> None:
    _record(1)
    assert access_period_seal(actor=ACCESS_PERIOD_SEALER) is not None
    for statement in (
        "UPDATE audit_accessperiod SET count = count + 1",
        "DELETE FROM audit_accessperiod",
    ):
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            connection.cursor().execute(statement)


@pytest.mark.django_db(transaction=True)
def test_a_period_is_sealed_up_to_the_last_id_handed_out() -> None:
    ids = _record(3)
    assert access_ids_settled(wait_seconds=1) == ids[-1]


@pytest.mark.django_db(transaction=True)
def test_the_task_and_the_command_seal_a_period() -> None:
    _record(2)
    assert access_period_seal_task.apply().get() == 1
    _record(1)
    out = io.StringIO()
    call_command("access_period_seal", stdout=out)
    assert out.getvalue().startswith("period 2: ids (")
    assert AccessEvent.objects.filter(actor="command:access_period_seal").exists()
    _assert_periods_chain()


@pytest.mark.django_db(transaction=True)
def test_an_exported_period_verifies_against_its_leaf(tmp_path) -> None:
    _record(4)
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    out = io.StringIO()
    call_command("access_period_export", "1", "--leaf", str(tmp_path / "leaf"), stdout=out)

    lines = out.getvalue().splitlines()
    assert len(lines) == period.count
    sealed = leaves.leaf_decode((tmp_path / "leaf").read_bytes())
    access_period_verify([json.loads(line) for line in lines], sealed)
    altered = [json.loads(line) for line in lines]
    altered[0]["status"] = 500
    with pytest.raises(AccessLogError):
        access_period_verify(altered, sealed)
    assert AccessEvent.objects.filter(action="access_period.export", target="period 1").exists()


def _json(response) -> dict:
    assert response.status_code == 200, response.content
    return json.loads(response.content)


@pytest.mark.django_db(transaction=True)
def test_an_auditor_verifies_a_period_through_the_api() -> None:
    alice: PartnerClient = partner_client("alice")
    auditor: PartnerClient = partner_client("auditor", scopes=["audit"])
    for _ in range(3):
        alice.get("/api/v1/me")
    assert access_period_seal(actor=ACCESS_PERIOD_SEALER) is not None
    alice.get("/api/v1/me")
    assert access_period_seal(actor=ACCESS_PERIOD_SEALER) is not None

    listed = _json(auditor.get("/api/v1/audit/periods", limit=1))
    assert [p["number"] for p in listed["periods"]] == [2]
    older = _json(auditor.get("/api/v1/audit/periods", before=listed["next"]))
    assert [p["number"] for p in older["periods"]] == [1]
    assert older["next"] is None

    for number in (1, 2):
        period = _json(auditor.get(f"/api/v1/audit/periods/{number}"))
        events, before = [], None
        while True:
            params = {"after_id": period["after_id"], "last_id": period["last_id"], "limit": 2}
            page = _json(
                auditor.get(
                    "/api/v1/audit/events", **params, **({"before": before} if before else {})
                )
            )
            events += page["events"]
            before = page["next"]
            if before is None:
                break
        leaf = leaves.leaf_decode(log_leaf(index=period["log_index"]))
        assert leaf["root"] == period["root"]
        access_period_verify(sorted(events, key=lambda event: event["id"]), leaf)


@pytest.mark.django_db
def test_an_unknown_period_is_a_problem() -> None:
    auditor = partner_client("auditor", scopes=["audit"])
    for number in ("1", "9" * 30):
        response = auditor.get(f"/api/v1/audit/periods/{number}")
        assert response.status_code == 404
        assert problem(response) == "unknown-access-period"


@pytest.mark.django_db(transaction=True)
def test_sealed_periods_are_shown_read_only_in_admin(client) -> None:
    from django.contrib.auth.models import User

    _record(1)
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    staff_login(client, User.objects.create_superuser("admin", "admin@example.org", None))

    listing = client.get("/admin/audit/accessperiod/")
    detail = client.get(f"/admin/audit/accessperiod/{period.number}/change/")

    assert listing.status_code == 200
    assert period.root in detail.content.decode()
    assert client.get("/admin/audit/accessperiod/add/").status_code == 403


def test_beat_seals_a_period_every_access_period_seconds(settings) -> None:
    from consortium.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["access-period-seal"]
    assert entry["task"] in app.tasks
    assert entry["schedule"] == settings.ACCESS_PERIOD_SECONDS == 3600


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/audit/events", {"after_id": "1.5"}),
        ("/api/v1/audit/events", {"last_id": "-1"}),
        ("/api/v1/audit/periods", {"before": "1e3"}),
        ("/api/v1/audit/periods", {"limit": "0"}),
    ],
)
def test_malformed_period_parameters_are_refused(path: str, params: dict) -> None:
    auditor = partner_client("auditor", scopes=["audit"])
    response = auditor.get(path, **params)
    assert response.status_code == 400
    assert problem(response) == "malformed-request"


@pytest.mark.django_db(transaction=True)
def test_the_cli_verifies_a_period_exported_or_paged_from_the_api(tmp_path, capsys) -> None:
    from consortium_client import cli

    auditor: PartnerClient = partner_client("auditor", scopes=["audit", "read"])
    _record(3)
    period = access_period_seal(actor=ACCESS_PERIOD_SEALER)
    assert period is not None
    exported = io.StringIO()
    call_command("access_period_export", "1", "--leaf", str(tmp_path / "leaf"), stdout=exported)
    (tmp_path / "events.jsonl").write_text(exported.getvalue())
    # The leaf as saved from GET /api/v1/log/entries, and the events as API pages.
    entries = auditor.get("/api/v1/log/entries", start=period.log_index, end=period.log_index + 1)
    (tmp_path / "entries.json").write_bytes(entries.content)
    params = {"after_id": period.after_id, "last_id": period.last_id, "limit": 2}
    pages, before = [], None
    while True:
        page = auditor.get(
            "/api/v1/audit/events", **params, **({"before": before} if before else {})
        )
        pages.append(page.content + b"\n")
        before = json.loads(page.content)["next"]
        if before is None:
            break
    assert len(pages) > 1
    (tmp_path / "pages.jsonl").write_bytes(b"".join(pages))
    capsys.readouterr()

    for leaf, events in [("leaf", "events.jsonl"), ("entries.json", "pages.jsonl")]:
        code = cli.main(["verify", "access-period", "--leaf", str(tmp_path / leaf),
                         "--events", str(tmp_path / events)])  # fmt: skip
        assert (code, capsys.readouterr().out) == (
            0,
            f"verified: the {period.count} access events of period 1 are those sealed in leaf "
            f"{period.log_index}\n",
        )
    altered = exported.getvalue().replace('"status":200', '"status":500', 1)
    (tmp_path / "altered.jsonl").write_text(altered)
    code = cli.main(["verify", "access-period", "--leaf", str(tmp_path / "leaf"),
                     "--events", str(tmp_path / "altered.jsonl")])  # fmt: skip
    assert (code, capsys.readouterr().err) == (
        1,
        "consortium: period 1: the events do not hash to the sealed root\n",
    )
