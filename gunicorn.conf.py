"""gunicorn settings for a deployment: `gunicorn -c gunicorn.conf.py consortium.wsgi`.

Environment: `BIND` (comma-separated addresses, default 127.0.0.1:8000: put a TLS-terminating
reverse proxy in front and set NUM_PROXIES), `WEB_WORKERS` (default: CPU cores + 1),
`WEB_THREADS` (default 4), `WEB_TIMEOUT` (seconds, default 30).
"""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000").split(",")

# Processes, not threads, carry the load: matching and feed pages are CPU-bound Python, and
# threads of one process share one interpreter lock, so only more processes use more cores.
# Each process holds its own match index (about 100 MiB per million PDQ entries, see
# docs/matching.md), so processes cost memory: one per core, plus one so that a core is
# not idle while a process waits on PostgreSQL or Redis.
# gthread rather than sync: with a few threads per process, a short request (`/me`, a 429)
# is served beside a long match instead of queueing behind it until a process is free, and
# a request blocked on the database does not hold a whole process.
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count() + 1))
threads = int(os.environ.get("WEB_THREADS", 4))

# The largest request (1,000 hashes against 10M entries, or a 10,000-entry submission)
# takes a second or two; a worker silent for this long is stuck and is restarted.
timeout = int(os.environ.get("WEB_TIMEOUT", 30))
graceful_timeout = 30
# Behind a reverse proxy that reuses its connections.
keepalive = 5
# No max_requests: a restarted process reloads its match index from the log, seconds per
# million entries, which would cost more than any slow leak it guards against.

errorlog = "-"
