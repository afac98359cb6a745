from __future__ import annotations

import json

from django.test import Client, override_settings


def test_healthz_reports_database_and_the_real_broker(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "checkpoint_age": None,
    }


def test_healthz_reports_the_age_of_the_latest_checkpoint(db: None) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import Checkpoint

    signed = timezone.now() - timedelta(seconds=90)
    Checkpoint.objects.create(size=0, root=b"\0" * 32, note="n", created_at=signed)
    Checkpoint.objects.create(size=1, root=b"\0" * 32, note="n", created_at=signed)
    age = json.loads(Client().get("/healthz").content)["checkpoint_age"]
    assert 90 <= age <= 120


@override_settings(CELERY_TASK_ALWAYS_EAGER=False)
def test_healthz_is_unavailable_when_the_broker_is_down(db: None, monkeypatch) -> None:
    from consortium.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["status"] == "unavailable"
    assert body["broker"].startswith("error")


def test_unknown_api_path_is_a_problem(db: None) -> None:
    response = Client().get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["type"] == "urn:consortium:problem:not-found"


def test_schema_and_docs_are_public(db: None) -> None:
    schema = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    assert "/api/v1/submissions" in document["paths"]
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert Client().get("/api/v1/docs/").status_code == 200


def test_a_body_over_the_cap_is_a_413_problem(alice, shared_list, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = alice.post("/api/v1/submissions", b"{" + b" " * 2000 + b"}")
    assert response.status_code == 413
    assert json.loads(response.content)["type"] == "urn:consortium:problem:request-too-large"
