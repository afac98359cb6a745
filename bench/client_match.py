"""Matching against the partner's mirror: against the server's index, and as a process.

What it measures, in one run on the same data:

1. A mirror of ``--entries`` random PDQ entries (SQLite, written as sync leaves it), with
   ``--queries`` planted near-duplicates (0 to 31 bits flipped), and the time to build its
   index snapshot from ``entries``.
2. Per-query latency (median, p99; single queries after a warm-up) of
   - the server's index: ``hashes.match_index.MatchIndexes.search`` holding the same entries
     in one list (index search and value lookup; the server's database read of provenance
     is not counted, which favours the server),
   - ``MirrorMatcher.search`` loaded with tables (serve-match): index search plus the SQLite
     read of each match's details,
   - ``MirrorMatcher.search`` without tables (a fresh process): a scan of the snapshot,
   and that all three answer the same (id, distance) sets.
3. Wall time of ``match`` as a fresh process (interpreter start to exit) for one image and for
   one hash, directly against the mirror and through a running ``serve-match``, and the
   time ``MirrorMatcher.load`` takes in-process.

Usage::

    PYTHONPATH=client DJANGO_SETTINGS_MODULE=consortium.settings \\
        python bench/client_match.py [--entries 1000000] [--queries 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RADIUS = 31


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        run(Path(directory), args.entries, args.queries, args.runs)


def run(directory: Path, entries: int, queries: int, runs: int) -> None:
    from consortium_client.imaging import image_file_hashes
    from consortium_client.mirror_index import MirrorMatcher, snapshot_refresh
    from consortium_client.mirror_store import mirror_connect

    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 256, (entries, 32), dtype=np.uint8)
    query_rows = rng.integers(0, 256, (queries, 32), dtype=np.uint8)
    planted = rng.choice(entries, queries, replace=False)
    for position, row in enumerate(planted):
        flips = rng.choice(256, int(rng.integers(0, RADIUS + 1)), replace=False)
        bits = np.unpackbits(query_rows[position])
        bits[flips] ^= 1
        hashes[row] = np.packbits(bits)
    image = directory / "upload.png"
    _picture().save(image)
    image_pdq = image_file_hashes(image).values["pdq"]
    hashes[0] = np.frombuffer(bytes.fromhex(image_pdq), np.uint8)  # the upload matches entry 0
    values = [row.tobytes().hex() for row in hashes]
    query_values = [row.tobytes().hex() for row in query_rows]

    mirror = directory / "mirror.db"
    started = time.perf_counter()
    _mirror_write(mirror_connect(mirror), values)
    print(f"mirror: {entries:,} PDQ entries written in {time.perf_counter() - started:.1f} s")
    connection = mirror_connect(mirror)
    started = time.perf_counter()
    snapshot_refresh(connection, rebuild=True)
    print(f"snapshot built from entries in {time.perf_counter() - started:.2f} s")
    connection.close()

    started = time.perf_counter()
    scanning = MirrorMatcher.load(mirror, tables=False)
    print(f"MirrorMatcher.load without tables: {(time.perf_counter() - started) * 1e3:.0f} ms")
    started = time.perf_counter()
    warm = MirrorMatcher.load(mirror, tables=True)
    print(f"MirrorMatcher.load with tables:    {(time.perf_counter() - started) * 1e3:.0f} ms")
    server = _server_index(values)

    def server_search(value: str) -> set[tuple[int, int]]:
        [result] = server.search(algorithm="pdq", values=[value], radii={1: RADIUS}, limit=100)
        return {(hit.entry_id, hit.distance) for hit in result.hits}

    def mirror_search(matcher: MirrorMatcher) -> Callable[[str], set[tuple[int, int]]]:
        def search(value: str) -> set[tuple[int, int]]:
            [result] = matcher.search([("pdq", value)], limit=100)
            return {(found.entry, found.distance) for found in result.matches}

        return search

    print(f"\nper-query latency, {queries} single queries, radius {RADIUS}:")
    measured = {}
    for name, search in (
        ("server index (hashes.match_index)", server_search),
        ("mirror, tables (serve-match)", mirror_search(warm)),
        ("mirror, scan (fresh process)", mirror_search(scanning)),
    ):
        latencies, answers = _latencies(search, query_values)
        measured[name] = (latencies, answers)
        print(
            f"  {name:36} median {statistics.median(latencies) * 1e3:7.3f} ms"
            f"  p99 {_p99(latencies) * 1e3:7.3f} ms"
        )
    reference = measured["server index (hashes.match_index)"]
    server_median = statistics.median(reference[0])
    for name, (_, answers) in measured.items():
        assert answers == reference[1], f"{name} answers differ from the server's index"
    warm_median = statistics.median(measured["mirror, tables (serve-match)"][0])
    print(f"  mirror (tables) / server: {warm_median / server_median:.2f}x; answers identical")

    print(f"\n'match' as a fresh process, median of {runs} (wall time, start to exit):")
    environment = {**os.environ, "CONSORTIUM_MIRROR": str(mirror)}
    socket_path = directory / "match.sock"
    for label, extra in (
        ("one image, direct", [str(image)]),
        ("one hash, direct", ["--hash", f"pdq:{image_pdq}"]),
    ):
        print(f"  {label:28} {_process_seconds(mirror, extra, environment, runs) * 1e3:6.0f} ms")
    serving = subprocess.Popen(  # noqa: S603 (our own interpreter)
        _command(mirror, ["serve-match", "--socket", str(socket_path)]),
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        started = time.perf_counter()
        assert serving.stderr is not None
        serving.stderr.readline()
        print(f"  (serve-match ready after {time.perf_counter() - started:.2f} s)")
        for label, extra in (
            ("one image, via serve-match", [str(image), "--server", str(socket_path)]),
            (
                "one hash, via serve-match",
                ["--hash", f"pdq:{image_pdq}", "--server", str(socket_path)],
            ),
        ):
            print(
                f"  {label:28} {_process_seconds(mirror, extra, environment, runs) * 1e3:6.0f} ms"
            )
    finally:
        serving.terminate()
        serving.wait(10)
    print(f"  {'python -c pass':28} {_seconds([sys.executable, '-c', 'pass'], runs) * 1e3:6.0f} ms")


def _mirror_write(connection, values: list[str]) -> None:  # type: ignore[no-untyped-def]
    from consortium_client.commitments import commitment_of

    connection.execute("BEGIN IMMEDIATE")
    salt = secrets.token_hex(16)
    connection.executemany(
        "INSERT INTO entries (id, list, algorithm, value, salt, commitment, labels, partner, "
        "key, envelope, submission, quality, status) "
        "VALUES (?, 'ncii', 'pdq', ?, ?, ?, '[\"bench\"]', 'hotline', 'k', ?, 1, 100, 'active')",
        (
            # One salt for all: the bench measures matching, not commitments.
            (position, value, salt, commitment_of("pdq", value, salt), "ab" * 32)
            for position, value in enumerate(values)
        ),
    )
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('cursor', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [str(len(values) - 1)],
    )
    connection.execute("COMMIT")
    connection.close()


def _server_index(values: list[str]):  # type: ignore[no-untyped-def]
    """The server's per-process index holding `values` in list 1, as its load leaves it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "consortium.settings")
    import django

    django.setup()
    from hashes.match_index import MatchIndexes

    indexes = MatchIndexes()
    packed = np.frombuffer(bytes.fromhex("".join(values)), np.uint8).reshape(len(values), 32)
    indexes._index(1, "pdq").add(np.arange(len(values), dtype=np.int64), packed)
    indexes.loaded = True
    return indexes


def _latencies(
    search: Callable[[str], set[tuple[int, int]]], queries: list[str]
) -> tuple[list[float], list[set[tuple[int, int]]]]:
    for value in queries[:20]:
        search(value)
    latencies, answers = [], []
    for value in queries:
        started = time.perf_counter()
        answers.append(search(value))
        latencies.append(time.perf_counter() - started)
    return latencies, answers


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _command(mirror: Path, arguments: list[str]) -> list[str]:
    """`python -m consortium_client ...` once the command line has the match commands; until
    then the same click commands, run with the mirror as their configuration."""
    probe = subprocess.run(
        [sys.executable, "-m", "consortium_client", "match", "--help"],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "consortium_client", *arguments]
    code = (
        "import sys; from pathlib import Path; "
        "from consortium_client.config import Config; "
        "from consortium_client import cli_match; "
        f"mirror = Path({str(mirror)!r}); "
        "command = {'match': cli_match.match_command, "
        "'serve-match': cli_match.serve_match_command}[sys.argv[1]]; "
        "command.main(sys.argv[2:], obj=Config('', None, None, mirror, mirror, 30))"
    )
    return [sys.executable, "-c", code, *arguments]


def _process_seconds(
    mirror: Path, arguments: list[str], environment: dict[str, str], runs: int
) -> float:
    command = _command(mirror, ["match", "--json", *arguments])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env=environment, check=False)  # noqa: S603
        times.append(time.perf_counter() - started)
        if done.returncode != 1 or not json.loads(done.stdout.splitlines()[0])["matches"]:
            raise SystemExit(f"match did not find the upload: {done.stderr.decode()}")
    return statistics.median(times)


def _seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True)  # noqa: S603
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _picture():  # type: ignore[no-untyped-def]
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(11)
    gradient = np.linspace(0, 255, 512, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(gradient, (512, 1)),
            np.tile(gradient, (512, 1)).T,
            np.full((512, 512), 90, np.uint8),
        ],
        axis=-1,
    )
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, 470, 2))
        w, h = (int(v) for v in rng.integers(20, 90, 2))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


if __name__ == "__main__":
    main()
