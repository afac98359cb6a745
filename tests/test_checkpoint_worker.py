"""A real Celery worker and beat sign checkpoints: after a submission commits (the task is
queued on commit) and on the beat schedule (events appended with no task queued)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from audit.models import AccessEvent, Checkpoint
from audit.selectors import log_size
from audit.services import log_vkey
from consortium_client.notes import note_open, vkey_parse
from hashes.models import HashList
from tests.conftest import PartnerClient, log_events_append, pdq

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CELERY = Path(sys.executable).parent / "celery"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_env(settings: Any) -> dict[str, str]:
    """The environment of a worker that sees this test's database, broker and log key."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "LOG_KEY_FILE": str(settings.LOG_KEY_FILE),
        "CHECKPOINT_INTERVAL": "1",
        "PYTHONPATH": f"{ROOT / 'client'}{os.pathsep}{ROOT}",
    }


def _start(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - the venv's celery, fixed arguments
        [str(CELERY), "-A", "consortium", *arguments, "--loglevel=WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def worker(celery_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    from consortium.celery import app

    app.control.purge()  # tasks queued by earlier tests, for databases that are gone
    process = _start(
        ["worker", "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        celery_env,
    )
    yield process
    _stop(process)


def _signed(size: int, process: subprocess.Popen[bytes], timeout: float = 90) -> Checkpoint:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoint = Checkpoint.objects.filter(size=size).first()
        if checkpoint is not None:
            return checkpoint
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"celery exited: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    pytest.fail(f"no checkpoint of size {size} within {timeout} s")


def test_a_worker_signs_after_a_submission_commits_and_beat_signs_on_schedule(
    alice: PartnerClient,
    shared_list: HashList,
    worker: subprocess.Popen[bytes],
    celery_env: dict[str, str],
    tmp_path: Path,
) -> None:
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(1)}])
    assert response.status_code == 201, response.content
    checkpoint = _signed(log_size(), worker)
    note_open(checkpoint.note, [vkey_parse(log_vkey())])
    signer_events = AccessEvent.objects.filter(actor="system:checkpoint-signer")
    assert signer_events.filter(action="log.checkpoint.sign").exists()

    # No write queues a task here; only the beat schedule can sign this size.
    log_events_append(3)
    beat = _start(["beat", "--schedule", str(tmp_path / "beat-schedule")], celery_env)
    try:
        _signed(log_size(), beat)
    finally:
        _stop(beat)
