"""gunicorn settings for a deployment: `gunicorn -c gunicorn.conf.py consortium.wsgi`.

Environment: `BIND` (comma-separated addresses, default 127.0.0.1:8000), `WEB_WORKERS`
(default: 2 x CPU cores + 1), `WEB_TIMEOUT` (seconds, default 30). Put a reverse proxy that
terminates TLS and buffers requests in front (nginx does both), and set NUM_PROXIES.
"""

import multiprocessing
import os
import sys

bind = os.environ.get("BIND", "127.0.0.1:8000").split(",")

# Sync workers: one request at a time per process. Matching and feed pages are CPU-bound
# Python, and threads of one process share one interpreter lock, so in a gthread worker a
# long match slows every request that shares its process, while separate processes are
# shared out by the kernel. bench/flood.py measured it (one partner flooding 1,000-hash
# matches, another's /me p95): sync was as fast or faster in every case, under half the
# gthread figure without rate limits. Sync workers trust the proxy in front to buffer slow
# clients. Two processes per core plus one: much of a request is spent waiting on
# PostgreSQL and Redis (every request writes its access event), and a flooding partner's
# connections queue ahead of everyone else's until a process is free; against 3 processes
# on 2 cores, 5 cut another partner's p95 under a flood from 142-158 ms to 99 ms. Each
# process holds its own match index (about 100 MiB per million PDQ entries,
# docs/matching.md): with a large index and little memory, set WEB_WORKERS lower.
worker_class = "sync"
workers = int(os.environ.get("WEB_WORKERS", 2 * multiprocessing.cpu_count() + 1))

# The largest request (1,000 hashes against 10M entries, or a 10,000-entry submission)
# takes a second or two; a worker silent for this long is stuck and is restarted.
timeout = int(os.environ.get("WEB_TIMEOUT", 30))
graceful_timeout = 30
# No max_requests: a restarted process reloads its match index from the log, seconds per
# million entries, which would cost more than any slow leak it guards against.

errorlog = "-"


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
