"""Webhooks delivered by a real Celery worker (with beat's sweep) on Redis to a real HTTP
receiver: signed, verified by an independent implementation, in log order, each message
acknowledged once by its id however often the receiver failed, and nothing lost when the
worker is killed in the middle of a delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from standardwebhooks import Webhook

from audit.models import AccessEvent
from hashes.models import HashList
from tests.conftest import PartnerClient, partner_client, pdq
from tests.factories import HashListFactory
from tests.test_checkpoint_worker import ROOT, _start, _stop
from tests.webhook_receiver import Receiver, webhook_receiver
from webhooks.models import Cursor, Delivery

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def worker_env(settings: Any) -> dict[str, str]:
    """A worker on this test's database and broker, retrying within a second, sweeping
    every second."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "LOG_KEY_FILE": str(settings.LOG_KEY_FILE),
        "PYTHONPATH": f"{ROOT / 'client'}{os.pathsep}{ROOT}",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_RETRY_BASE": "0.2",
        "WEBHOOK_RETRY_MAX": "1",
        "WEBHOOK_MAX_ATTEMPTS": "50",
        "WEBHOOK_SWEEP_INTERVAL": "1",
    }


class Workers:
    def __init__(self, env: dict[str, str], schedule: Path) -> None:
        self.env, self.schedule, self.running = env, schedule, []

    def start(self) -> subprocess.Popen[bytes]:
        process = _start(
            [
                "worker",
                "--beat",
                "--schedule",
                str(self.schedule),
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            self.env,
        )
        self.running.append(process)
        return process


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    from consortium.celery import app

    app.control.purge()  # tasks queued by earlier tests, for databases that are gone
    found = Workers(worker_env, tmp_path / "beat-schedule")
    yield found
    for process in found.running:
        if process.poll() is None:
            _stop(process)


def _subscribe(client: PartnerClient, url: str) -> tuple[int, str]:
    body = {"url": url, "event_types": ["entry.added", "entry.revoked"]}
    response = client.post("/api/v1/webhooks", json.dumps(body).encode())
    assert response.status_code == 201, response.content
    created = json.loads(response.content)
    return created["id"], created["secret"]


def _submit(client: PartnerClient, list_name: str, count: int = 1) -> list[int]:
    entries = [{"algorithm": "pdq", "value": pdq()} for _ in range(count)]
    response = client.submit(list_name, entries)
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def _first_seen(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def test_a_worker_delivers_signed_in_order_once_each_through_failures(
    receiver: Receiver, workers: Workers
) -> None:
    alice, bob = partner_client("alice"), partner_client("bob")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    HashListFactory(name="private", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    subscription_id, secret = _subscribe(bob, receiver.url)
    # The receiver is down for its first four requests, then recovers.
    receiver.answer = lambda n: 500 if n < 4 else 200
    worker = workers.start()

    first = _submit(alice, "ncii")
    hidden = _submit(alice, "private")
    more = _submit(alice, "ncii", 2)
    revoked = alice.revoke([first[0]])
    assert revoked.status_code == 201, revoked.content
    revocation_index = json.loads(revoked.content)["tombstones"][0]["log_index"]
    expected = [f"msg_{subscription_id}_{i}" for i in [*first, *more, revocation_index]]

    receiver.wait_for(lambda r: len(r.acknowledged()) >= len(expected))
    assert worker.poll() is None

    acknowledged = receiver.acknowledged()
    assert [item.message_id for item in acknowledged] == expected
    assert len(receiver.requests) == len(expected) + 4
    verifier = Webhook(secret)
    bodies = [verifier.verify(item.body, item.headers) for item in acknowledged]
    assert [body["data"]["log_index"] for body in bodies] == [*first, *more, revocation_index]
    assert [body["type"] for body in bodies] == ["entry.added"] * 3 + ["entry.revoked"]
    assert all(hidden[0] != body["data"]["log_index"] for body in bodies)
    deliveries = AccessEvent.objects.filter(
        actor="system:webhook-deliverer", partner=bob.partner, action="webhook.deliver"
    )
    # Each attempt's access event commits just after the receiver answered it.
    receiver.wait_for(lambda r: deliveries.count() == len(r.requests))

    # The test message, sent by the worker too.
    response = bob.post(f"/api/v1/webhooks/{subscription_id}/test", b"")
    assert response.status_code == 202, response.content
    message_id = json.loads(response.content)["message_id"]
    receiver.wait_for(lambda r: r.acknowledged()[-1].message_id == message_id)
    assert verifier.verify(receiver.requests[-1].body, receiver.requests[-1].headers)["type"] == (
        "webhook.test"
    )


def test_killing_the_worker_mid_delivery_loses_nothing(
    receiver: Receiver, workers: Workers
) -> None:
    alice = partner_client("alice")
    HashListFactory(name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL)
    subscription_id, secret = _subscribe(alice, receiver.url)
    start = Cursor.objects.get(pk=subscription_id).position
    receiver.stall.set()
    worker = workers.start()

    added = _submit(alice, "ncii", 3)
    assert receiver.arrived.wait(60), "no delivery started"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=20)
    # Released after the worker died: its answer reaches nobody.
    receiver.stall.clear()
    receiver.release.set()

    cursor = Cursor.objects.get(pk=subscription_id)
    assert cursor.position == start
    assert not Delivery.objects.filter(subscription_id=subscription_id, succeeded=True).exists()

    workers.start()
    expected = [f"msg_{subscription_id}_{index}" for index in added]
    receiver.wait_for(
        lambda r: _first_seen([item.message_id for item in r.acknowledged()]) == expected
    )
    ids = [item.message_id for item in receiver.requests]
    # The message in flight when the worker died was sent again, with the same id.
    assert ids.count(expected[0]) >= 2
    assert _first_seen(ids) == expected
    verifier = Webhook(secret)
    for item in receiver.acknowledged()[-3:]:
        verifier.verify(item.body, item.headers)
    receiver.wait_for(lambda r: Cursor.objects.get(pk=subscription_id).position >= added[-1])
