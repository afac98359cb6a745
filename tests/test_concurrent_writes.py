"""Concurrent writers on the same rows: submitters, revokers and administrators never deadlock.

Each thread is a partner's software with its own database connection, talking to the API
through the whole request stack, as partners do at the same time in production.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import OperationalError

from audit.actors import Actor
from audit.models import AccessEvent, LogEvent
from consortium_client.keys import key_generate, public_key_pem
from hashes import views as hashes_views
from hashes.models import Entry, HashList
from partners import services as partner_services
from tests.conftest import PartnerClient, partner_client, pdq, problem
from tests.factories import HashListFactory
from tests.test_log import _in_thread

ADMIN = Actor.command("tests")


def _ids(response) -> list[int]:
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_submitters_and_revokers_never_deadlock() -> None:
    """Submitters of 1-entry batches and revokers of single entries, on the same list and on
    different lists, with a key registration now and then: every write answers 201."""
    owner = partner_client("owner")
    lists = ["one", "two"]
    for name in lists:
        HashListFactory(name=name, owner=owner.partner, visibility=HashList.Visibility.ALL)
    rounds = 200
    statuses: Counter[int] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def record(response) -> None:
        with lock:
            statuses[response.status_code] += 1
        assert response.status_code == 201, response.content

    def submitter(client: PartnerClient, list_name: str) -> Callable[[], None]:
        def work() -> None:
            for _ in range(rounds):
                record(client.submit(list_name, [{"algorithm": "pdq", "value": pdq()}]))

        return work

    def revoker(client: PartnerClient, list_name: str) -> Callable[[], None]:
        # Submits and revokes in turn, so its revocations race the other submitters' adds
        # on the same list (and on the other one).
        def work() -> None:
            for _ in range(rounds):
                added = client.submit(list_name, [{"algorithm": "md5", "value": pdq()[:32]}])
                record(added)
                record(client.revoke(_ids(added), reason="consent withdrawn"))

        return work

    def key_registrar() -> None:
        for _ in range(rounds // 10):
            partner_services.signing_key_register(
                partner=owner.partner,
                public_key=public_key_pem(key_generate().public_key()),
                actor=ADMIN,
            )

    workers = [
        submitter(partner_client("submits-one"), "one"),
        submitter(partner_client("submits-two"), "two"),
        revoker(partner_client("revokes-one"), "one"),
        revoker(partner_client("revokes-two"), "two"),
        revoker(partner_client("revokes-one-too"), "one"),
        key_registrar,
    ]
    threads = [_in_thread(work, errors) for work in workers]
    for thread in threads:
        thread.join()

    assert not errors, errors[:3]
    writes = 2 * rounds + 3 * 2 * rounds
    assert statuses == Counter({201: writes})
    assert Entry.objects.filter(status=Entry.Status.REVOKED).count() == 3 * rounds
    # Every write left its access event, and the log is gap-free.
    assert (
        AccessEvent.objects.filter(
            status=201, action__in=["submission.create", "revocation.create"]
        ).count()
        == writes
    )
    indexes = list(LogEvent.objects.values_list("index", flat=True))
    assert indexes == list(range(len(indexes)))


@pytest.mark.django_db(transaction=True)
def test_revocation_does_not_block_submissions_while_it_waits_for_the_log() -> None:
    """The revocation's row locks are on its entries only: a submission to the same list
    (whose insert checks the list and partner rows) is never made to wait by them."""
    from django.db import connection, transaction

    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    (entry_id,) = _ids(alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}]))
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def revocation_holding_its_locks() -> None:
        from hashes.services.revocations import _entries_lock

        with transaction.atomic():
            _entries_lock(actor=Actor.for_api_key(alice_key, client_ip=None), entry_ids=[entry_id])
            locked.set()
            release.wait(timeout=10)

    alice_key = alice.partner.api_keys.get()
    holder = _in_thread(revocation_holding_its_locks, errors)
    assert locked.wait(timeout=10)
    done = threading.Event()

    def submit() -> None:
        response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])
        assert response.status_code == 201, response.content
        done.set()

    submitter = _in_thread(submit, errors)
    finished_while_locked = done.wait(timeout=5)
    release.set()
    holder.join()
    submitter.join()
    connection.close()
    assert not errors, errors
    assert finished_while_locked, "the submission waited for the revocation's row locks"


def test_an_unexpected_failure_is_a_problem_and_is_audited(alice, shared_list, monkeypatch) -> None:
    def fail(**_: object) -> None:
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(hashes_views.services, "submission_create", fail)

    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])

    assert response.status_code == 500
    assert problem(response) == "internal-error"
    assert b"deadlock" not in response.content, "internal details stay in the server's log"
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.action, event.status, event.partner) == ("submission.create", 500, alice.partner)
    assert event.detail["problem"] == "internal-error"
