"""The auditors' pages at ten million access events over 90 days, in one run.

What it measures
----------------
The access log is filled with ``--events`` events (default 10,000,000) spread over the
last ``--days`` days (90), of ``--partners`` partners (50, a few of them much busier than
the rest), a fifth of them refusals, by ``INSERT ... SELECT generate_series`` in SQL (no
ORM), its indexes rebuilt after the fill as a restore would; then VACUUM ANALYZE.

1. The roll-up (audit.services.access_rollup, what the beat task runs): the first one, over
   the whole log; then ``--tail`` more events are written (what arrives between two
   roll-ups on a busy day), which the overview counts directly.
2. The overview page over the whole 90 days (Django test client, as a staff auditor):
   median and best of ``--rounds`` renders, against the baseline of the same numbers
   counted directly over the access events (a GROUP BY scan: what the page would cost with
   no summary table), in the same run. Goal: under 300 ms.
3. The access-event browser: one page of 100 events for each filter (partner, key, action,
   status, target, a time range in the middle of the log, and a combination), median ms.
4. Exports: ``--export`` events (1,000,000; a time range that holds them) streamed as CSV
   through the export view, rows/s, against ``COPY (SELECT the same columns) TO STDOUT``
   read by psycopg, in the same run; and the peak RSS of a separate process that streams
   the JSON-lines export, against the same process before it starts.

Which database: ``<name>_bench`` of ``DATABASE_URL``, dropped and created, dropped at the
end unless ``--keep`` (``--reuse`` skips the fill on a kept one).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/consortium SECRET_KEY=x \\
    ALLOWED_HOSTS=testserver .venv/bin/python bench/audit_pages.py [--events 10000000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_feed import bench_database, database_reset, django_start

FILL_SQL = """
INSERT INTO audit_accessevent
    (time, partner_id, key_prefix, actor, action, target, records, status, client_ip, detail)
SELECT %(start)s::timestamptz + (g - 1)::bigint * %(step)s::bigint * interval '1 microsecond',
       (%(ids)s::bigint[])[1 + k], 'key' || lpad(k::text, 9, '0'),
       'partner:' || (%(names)s::text[])[1 + k],
       (ARRAY['feed.read', 'match', 'entry.read', 'log.checkpoint.read', 'audit.read'])[1 + g %% 5],
       'feed?after=' || (g %% 100000), (g %% 37) * (1 + g %% 3),
       (ARRAY[200, 200, 200, 200, 401, 200, 200, 403, 404, 429])[1 + (g * 7) %% 10],
       '10.0.0.1', '{"method": "GET", "path": "/api/v1/feed"}'::jsonb
FROM generate_series(%(first)s, %(last)s) g,
     -- Partners 0..4 are busy (half the traffic); the others share the rest.
     LATERAL (SELECT CASE WHEN g %% 2 = 0 THEN g %% 5
                          ELSE 5 + (g / 2) %% (%(partners)s - 5) END AS k) chosen
"""

EXPORT_COLUMNS_SQL = """
SELECT e.id, e.time, p.name, e.key_prefix, u.username, e.actor, e.action, e.target,
       e.records, e.status, e.client_ip, e.detail
FROM audit_accessevent e
LEFT JOIN partners_partner p ON p.id = e.partner_id
LEFT JOIN auth_user u ON u.id = e.user_id
WHERE e.time >= %s AND e.time < %s ORDER BY e.id DESC
"""


def fill(args: argparse.Namespace) -> None:
    from django.db import connection

    from audit.actors import Actor
    from partners import services

    admin = Actor.command("bench")
    partners = [
        services.partner_onboard(
            name=f"partner-{number:03d}",
            display_name=f"Partner {number}",
            kind="platform",
            actor=admin,
        )
        for number in range(args.partners)
    ]
    ids, names = [p.pk for p in partners], [p.name for p in partners]
    start = datetime.now(UTC) - timedelta(days=args.days)
    step = args.days * 86400 * 1_000_000 // args.events
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_accessevent' "
            "AND indexname NOT LIKE '%%pkey'"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        began = time.perf_counter()
        chunk = 1_000_000
        for first in range(1, args.events + 1, chunk):
            last = min(args.events, first + chunk - 1)
            cursor.execute(
                FILL_SQL,
                {
                    "start": start,
                    "first": first,
                    "last": last,
                    "step": step,
                    "partners": args.partners,
                    "ids": ids,
                    "names": names,
                },
            )
            print(f"  filled {last:,} events ({time.perf_counter() - began:.0f} s)", flush=True)
        for _, definition in indexes:
            cursor.execute(definition)
        print(f"  indexes rebuilt ({time.perf_counter() - began:.0f} s)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def timed(action: Any, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return times


def ms(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms"


def staff_client() -> Any:
    from django.contrib.auth.models import Permission, User
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user, _ = User.objects.get_or_create(username="bench-auditor", defaults={"is_staff": True})
    user.user_permissions.add(Permission.objects.get(codename="view_audit_pages"))
    # A session as the admin's login leaves it after a password and a TOTP code.
    device, _ = TOTPDevice.objects.get_or_create(
        user=user, name="authenticator", defaults={"confirmed": True}
    )
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def export_child(args: argparse.Namespace) -> None:
    """In its own process: stream the JSON-lines export; print rows and RSS figures."""
    client = staff_client()
    since, until = args.child
    client.get("/audit/log")  # warm: templates, connection, first queries
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    response = client.get("/audit/events/export.jsonl", {"since": since, "until": until})
    rows = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{rows} {seconds} {before} {after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--tail", type=int, default=5_000)
    parser.add_argument("--export", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--pages-only", action="store_true", help="no exports (with --reuse)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL to a PostgreSQL URL; the benchmark uses <name>_bench")
    db = bench_database(os.environ["DATABASE_URL"])
    if args.child:
        django_start(db)
        export_child(args)
        return
    if not args.reuse:
        database_reset(db)
    django_start(db)
    from django.db import connection

    from audit.models import AccessEvent
    from audit.services import access_rollup

    try:
        if not args.reuse:
            print(f"filling {args.events:,} access events over {args.days} days", flush=True)
            fill(args)
        total = AccessEvent.objects.count()
        began = time.perf_counter()
        mark = access_rollup(wait_seconds=5)
        print(f"roll-up of {total:,} events: {time.perf_counter() - began:.1f} s (to id {mark:,})")
        newest = AccessEvent.objects.order_by("-id").values_list("time", flat=True).first()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO audit_accessevent (time, partner_id, key_prefix, actor, action, "
                "target, records, status, detail) SELECT %s, (SELECT min(id) FROM "
                "partners_partner), 'key', 'partner:x', 'match', '', 1, 200, '{}' "
                "FROM generate_series(1, %s)",
                [newest, args.tail],
            )
        print(f"{args.tail:,} events written after the roll-up (counted directly)")

        client = staff_client()
        end = datetime.now(UTC).date()
        start = end - timedelta(days=args.days - 1)
        query = {"start": start.isoformat(), "end": end.isoformat()}
        first = client.get("/audit/", query)
        assert first.status_code == 200, (first.status_code, first.get("Location"))
        overview = timed(lambda: client.get("/audit/", query), args.rounds)
        print(f"overview page, {args.days} days, every partner: {ms(overview)}")
        partner_query = {**query}
        from audit.selectors import access_daily_counts

        def direct() -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT (time AT TIME ZONE 'UTC')::date, partner_id, count(*), sum(records), "
                    "count(*) FILTER (WHERE status >= 400) FROM audit_accessevent "
                    "WHERE time >= %s GROUP BY 1, 2",
                    [datetime.combine(start - timedelta(days=args.days), datetime.min.time(), UTC)],
                )
                cursor.fetchall()

        baseline = timed(direct, 2)
        print(
            f"  baseline, the same counts by a scan of the access events: {ms(baseline)} "
            f"(the page is {statistics.median(baseline) / statistics.median(overview):.0f}x faster)"
        )
        counts = timed(lambda: access_daily_counts(first_day=start, last_day=end), args.rounds)
        print(f"  of which the counts' query: {ms(counts)}")
        del partner_query

        middle = datetime.now(UTC) - timedelta(days=args.days // 2)
        filters = {
            "no filter": {},
            "partner": {"partner": "partner-007"},
            "key": {"key": "key000000012"},
            "action": {"action": "entry.read"},
            "status": {"status": "404"},
            "target": {"target": "feed?after=4242"},
            "time range (2 h, mid-log)": {
                "since": middle.isoformat(),
                "until": (middle + timedelta(hours=2)).isoformat(),
            },
            "partner + status + 1 day, mid-log": {
                "partner": "partner-020",
                "status": "403",
                "since": middle.isoformat(),
                "until": (middle + timedelta(days=1)).isoformat(),
            },
        }
        for name, params in filters.items():
            response = client.get("/audit/events", params)
            assert response.status_code == 200, (name, response.status_code)
            found = len(re.findall(rb'href="/audit/events/[0-9]+"', response.content))
            times = timed(lambda params=params: client.get("/audit/events", params), args.rounds)
            print(f"browser page, {name}: {ms(times)} ({found} events)")

        if args.pages_only:
            return
        seconds = args.days * 86400 * args.export / args.events
        until = datetime.now(UTC) - timedelta(days=args.days // 3)
        since = until - timedelta(seconds=seconds)
        export_query = {"since": since.isoformat(), "until": until.isoformat()}
        for round_number in range(2):
            began = time.perf_counter()
            response = client.get("/audit/events/export.csv", export_query)
            rows = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
            export_seconds = time.perf_counter() - began
            import psycopg

            began = time.perf_counter()
            copied = 0
            with psycopg.connect(db.libpq_url) as raw, psycopg.ClientCursor(raw) as cursor:
                statement = cursor.mogrify(EXPORT_COLUMNS_SQL, [since, until])
                with cursor.copy(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)") as copy:
                    for block in copy:
                        copied += bytes(block).count(b"\n")
            copy_seconds = time.perf_counter() - began
            print(
                f"export CSV, round {round_number + 1}: {rows:,} rows in {export_seconds:.1f} s "
                f"= {rows / export_seconds:,.0f} rows/s; raw COPY of the same rows "
                f"({copied:,}): {copied / copy_seconds:,.0f} rows/s "
                f"(the export runs at {copy_seconds / export_seconds:.2f} of COPY's rate)"
            )
        for round_number in range(2):
            child = subprocess.run(  # noqa: S603 - this script, with its own arguments
                [sys.executable, __file__, "--child", since.isoformat(), until.isoformat()],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "DATABASE_URL": db.django_url},
            )
            rows_text, seconds_text, before, after = child.stdout.split()[-4:]
            print(
                f"export JSON lines in its own process, round {round_number + 1}: "
                f"{int(rows_text):,} rows, {int(rows_text) / float(seconds_text):,.0f} rows/s; "
                f"peak RSS {int(before) // 1024} MiB before, {int(after) // 1024} MiB after "
                f"(+{(int(after) - int(before)) // 1024} MiB)"
            )
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            database_reset(db, create=False)


if __name__ == "__main__":
    main()
