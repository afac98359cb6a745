"""Videos: what vPDQ matches, what it costs to hash, and the server's frame index against a
scan of every stored video.

What it measures, in one run
----------------------------
1. **Shares.** ``--originals`` generated videos (``tests/videos.py``: panning textures, a
   moving square, a scene cut every 4 s; ``--seconds`` long, 640x360, ``--fps``, H.264) and,
   for each,
   edited copies: re-encoded (MPEG-4 Part 2 at 300 kbit/s; VP9 at 150 kbit/s; H.264 at 80
   kbit/s), resized (to 320x180 and 960x540), and trimmed (1 s off each end; 3, 5 and 0.5 s
   off the start). For each kind of copy: the smallest query and stored shares over the
   originals, and how many matched under HMA's defaults (frame distance 31, quality 50,
   80% each way). Every pair of different originals (and each copy against every other
   original) is a false-match check.
2. **Hashing time.** Seconds of hashing per second of video (``video_file_hashes``: decode,
   a frame a second to RGB, PDQ), against decoding the same file alone (PyAV, every frame,
   nothing converted) as the baseline, best of ``--rounds``.
3. **Matching.** ``--stored`` synthetic videos of ``--frames`` random frames in one list of
   the server's index (``hashes.match_index.MatchIndexes``, without a database), a query
   near one of them, against the brute-force rule over every stored video
   (``consortium_client.vpdq.video_shares``); same answers asserted.
4. **The mirror's matching.** The same videos in a partner's mirror file
   (``consortium_client.mirror_index.MirrorMatcher``, as ``consortium match`` and
   ``serve-match`` use it): its frame index (the first query also reads every video from the
   file, timed apart) against the scan it replaced (every matchable video read from the file
   and judged frame by frame); same answers asserted.

Usage::

    PYTHONPATH=client:. python bench/video.py [--originals 3] [--seconds 12] [--fps 12]
        [--rounds 3] [--stored 5000] [--frames 30]      # --originals 0: the matching part only
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "consortium.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
django.setup()

from consortium_client.hashvalues import VideoFrame, vpdq_value_format, vpdq_value_parse  # noqa: E402
from consortium_client.mirror_index import MirrorMatcher  # noqa: E402
from consortium_client.video import video_file_hashes  # noqa: E402
from consortium_client.vpdq import video_shares  # noqa: E402
from hashes.match_index import MatchIndexes, VideoRule  # noqa: E402
from tests.client.mirrorrows import MirrorRows  # noqa: E402
from tests.videos import video_transcode, video_write  # noqa: E402

SIZE = (640, 360)
print = functools.partial(print, flush=True)
COPIES: dict[str, dict[str, object]] = {
    "mpeg4 300k": {"codec": "mpeg4", "bit_rate": 300_000},
    "vp9 150k": {"codec": "libvpx-vp9", "bit_rate": 150_000, "container_format": "webm"},
    "h264 80k": {"codec": "libx264", "bit_rate": 80_000},
    "resized 320x180": {"codec": "libx264", "bit_rate": 400_000, "size": (320, 180)},
    "resized 960x540": {"codec": "libx264", "bit_rate": 1_500_000, "size": (960, 540)},
    "trim 1 s each end": {"codec": "libx264", "bit_rate": 800_000, "trim_start": 1, "trim_end": 1},
    "trim 3 s start": {"codec": "libx264", "bit_rate": 800_000, "trim_start": 3},
    "trim 5 s start": {"codec": "libx264", "bit_rate": 800_000, "trim_start": 5},
    # Half a second: every sampled frame falls between two of the original's.
    "trim 0.5 s start": {"codec": "libx264", "bit_rate": 800_000, "trim_start": 0.5},
    "mpeg4 small trim 1 s each end": {
        "codec": "mpeg4", "bit_rate": 200_000, "size": (320, 180), "trim_start": 1, "trim_end": 1,
    },
}  # fmt: skip


def _decode_only(path: Path) -> None:
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in source.decode(stream):
            pass


def shares_and_timing(folder: Path, originals: int, seconds: int, fps: int, rounds: int) -> None:
    made = []
    for seed in range(originals):
        original = video_write(
            folder / f"original-{seed}.mp4", seed=100 + seed, seconds=seconds, fps=fps, size=SIZE
        )
        copies = {}
        for name, spec in COPIES.items():
            options = dict(spec)
            suffix = ".webm" if options.get("container_format") == "webm" else ".mp4"
            copies[name] = video_transcode(
                original, folder / f"copy-{seed}-{name.replace(' ', '-')}{suffix}", **options
            )  # type: ignore[arg-type]
        made.append((original, copies))

    hashed = {}
    hash_times, decode_times = [], []
    for original, copies in made:
        for path in (original, *copies.values()):
            best_hash = best_decode = float("inf")
            for _ in range(rounds):
                start = time.perf_counter()
                _decode_only(path)
                best_decode = min(best_decode, time.perf_counter() - start)
                start = time.perf_counter()
                result = video_file_hashes(path)
                best_hash = min(best_hash, time.perf_counter() - start)
            hashed[path] = result
            length = max(result.duration, 1.0)
            if path == original:
                hash_times.append(best_hash / length)
                decode_times.append(best_decode / length)

    print(f"{originals} originals of {seconds} s at {SIZE[0]}x{SIZE[1]}, {fps} fps, H.264; "
          "HMA's rule: frame distance 31, quality >= 50, 80% of frames each way")  # fmt: skip
    print(f"{'copy':32} {'matched':>8} {'min query share':>16} {'min stored share':>17}")
    for name in COPIES:
        results = [
            video_shares(
                vpdq_value_parse(hashed[copies[name]].values["vpdq"]),
                vpdq_value_parse(hashed[original].values["vpdq"]),
            )
            for original, copies in made
        ]
        matched = sum(result.matches() for result in results)
        print(
            f"{name:32} {matched:>5}/{len(results):<2} "
            f"{min(r.query_share for r in results):>16.2f} "
            f"{min(r.stored_share for r in results):>17.2f}"
        )
    false_matches = 0
    pairs = 0
    top = 0.0
    for i, (original, copies) in enumerate(made):
        for j, (other, _) in enumerate(made):
            if i == j:
                continue
            stored = vpdq_value_parse(hashed[other].values["vpdq"])
            for query_path in (original, *copies.values()):
                result = video_shares(vpdq_value_parse(hashed[query_path].values["vpdq"]), stored)
                pairs += 1
                false_matches += result.matches()
                top = max(top, min(result.query_share, result.stored_share))
    print(f"different videos: {false_matches} false matches in {pairs} pairs "
          f"(largest smaller share {top:.2f})")  # fmt: skip
    hashing, decoding = statistics.median(hash_times), statistics.median(decode_times)
    print(f"hashing: {hashing * 1000:.1f} ms per second of video (median over the originals, "
          f"best of {rounds}); decoding alone {decoding * 1000:.1f} ms: "
          f"{hashing / decoding:.2f}x decoding")  # fmt: skip


def _random_video(frames: int) -> str:
    return vpdq_value_format(VideoFrame(secrets.token_hex(32), 80) for _ in range(frames))


def _near(value: str, bits: int) -> str:
    frames = vpdq_value_parse(value)
    mask = (1 << bits) - 1
    return vpdq_value_format(VideoFrame(f"{int(f.pdq, 16) ^ mask:064x}", f.quality) for f in frames)


def _index_against_scan(
    queries: list[str],
    rounds: int,
    indexed: Callable[[str], list[int]],
    scanned: Callable[[str], list[int]],
) -> tuple[float, float]:
    """Milliseconds a query through the index and through the scan (median over the queries
    of the best of `rounds` each); both must give the same videos."""
    index_times, scan_times = [], []
    for query in queries:
        best_index = best_scan = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            found = indexed(query)
            best_index = min(best_index, time.perf_counter() - start)
            start = time.perf_counter()
            wanted = scanned(query)
            best_scan = min(best_scan, time.perf_counter() - start)
        assert found == wanted
        index_times.append(best_index)
        scan_times.append(best_scan)
    return statistics.median(index_times) * 1000, statistics.median(scan_times) * 1000


def matching(stored: int, frames: int, rounds: int) -> None:
    values = [_random_video(frames) for _ in range(stored)]
    indexes = MatchIndexes()
    indexes.loaded = True
    start = time.perf_counter()
    # Straight into one list's frame index: no database, no log.
    indexes._videos_add(1, list(range(1, stored + 1)), values)
    build = time.perf_counter() - start
    indexes.refresh = lambda: None  # type: ignore[method-assign]
    rule = VideoRule(31, 50, 80, 80)
    parsed = [vpdq_value_parse(value) for value in values]
    queries = [_near(values[i], 12) for i in range(0, stored, max(1, stored // 20))]

    def indexed(query: str) -> list[int]:
        (result,) = indexes.search_videos(values=[query], rules={1: rule}, limit=10)
        return [hit.entry_id for hit in result.hits]

    def scanned(query: str) -> list[int]:
        asked = vpdq_value_parse(query)
        return [
            entry_id
            for entry_id, frames_of in enumerate(parsed, start=1)
            if video_shares(asked, frames_of).matches()
        ]

    index_ms, scan_ms = _index_against_scan(queries, rounds, indexed, scanned)
    print(f"{stored:,} stored videos of {frames} frames ({stored * frames:,} frame rows, "
          f"indexed in {build:.1f} s), {len(queries)} queries of {frames} frames, "
          "same answers:")  # fmt: skip
    print(f"  frame index {index_ms:.2f} ms a query; scan of every video {scan_ms:.1f} ms; "
          f"{scan_ms / index_ms:.0f}x")  # fmt: skip


def mirror_matching(stored: int, frames: int, rounds: int) -> None:
    values = [_random_video(frames) for _ in range(stored)]
    queries = [_near(values[i], 12) for i in range(0, stored, max(1, stored // 20))]
    with tempfile.TemporaryDirectory() as folder:
        rows = MirrorRows(Path(folder) / "mirror.db")
        rows.connection.execute("PRAGMA synchronous = OFF")  # a bench's file, not a mirror's
        for value in values:
            rows.add("vpdq", value)
        print(f"mirror: {stored:,} videos in the file, {len(queries)} queries, same answers:")
        for tables in (True, False):
            _mirror_queries(rows, queries, tables=tables, rounds=rounds)


def _mirror_queries(rows: MirrorRows, queries: list[str], *, tables: bool, rounds: int) -> None:
    matcher = MirrorMatcher.load(rows.path, tables=tables)
    start = time.perf_counter()
    matcher.search([("vpdq", queries[0])])
    first = time.perf_counter() - start

    def indexed(query: str) -> list[int]:
        (result,) = matcher.search([("vpdq", query)], limit=10)
        return [match.entry for match in result.matches]

    def scanned(query: str) -> list[int]:
        asked = vpdq_value_parse(query)
        return [
            entry_id
            for entry_id, value in rows.connection.execute(
                "SELECT id, value FROM entries WHERE algorithm = 'vpdq' "
                "AND status = 'active' ORDER BY id"
            )
            if video_shares(asked, vpdq_value_parse(value)).matches()
        ]

    index_ms, scan_ms = _index_against_scan(queries, rounds, indexed, scanned)
    kind = "with tables (serve-match)" if tables else "without tables (one match process)"
    print(f"  {kind}: first video query {first * 1000:.0f} ms (reads every video); then "
          f"frame index {index_ms:.2f} ms a query, scan of the file {scan_ms:.1f} ms, "
          f"{scan_ms / index_ms:.0f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stored", type=int, default=5_000)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    if args.originals:
        with tempfile.TemporaryDirectory() as folder:
            shares_and_timing(Path(folder), args.originals, args.seconds, args.fps, args.rounds)
    matching(args.stored, args.frames, args.rounds)
    mirror_matching(args.stored, args.frames, args.rounds)


if __name__ == "__main__":
    main()
