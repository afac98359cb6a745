"""Liveness and readiness: can we reach the database and the broker?"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager"
    from consortium.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises many transport-specific errors
        return f"error: {exc.__class__.__name__}"
    return "ok"


def _checkpoint_age() -> int | None:
    """Seconds since the latest checkpoint was signed (None before the first, or without a
    database). Reported, not judged: a stalled signer is for monitoring to alert on
    (against CHECKPOINT_INTERVAL), not a reason to take the web server out of service."""
    from audit.selectors import checkpoint_latest

    try:
        checkpoint = checkpoint_latest()
    except DatabaseError:
        return None
    if checkpoint is None:
        return None
    return max(0, int((timezone.now() - checkpoint.created_at).total_seconds()))


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    healthy = all(value in ("ok", "eager") for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}
        | {"checkpoint_age": _checkpoint_age()},
        status=200 if healthy else 503,
    )
