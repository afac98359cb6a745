"""gunicorn's configuration, read from the directory it starts in (this project's)."""

import os
import sys


def on_starting(server: object) -> None:
    """Read the settings once in the master, before any worker starts.

    A missing SECRET_KEY or ALLOWED_HOSTS then stops gunicorn with one line; when workers
    fail at boot instead, gunicorn may log a traceback of its own while stopping them.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "consortium.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        _ = settings.SECRET_KEY
    except ImproperlyConfigured as exc:
        sys.exit(f"consortium: {exc}")
