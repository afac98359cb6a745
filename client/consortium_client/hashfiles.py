"""Hashing image and video files in bulk: directories walked, files hashed in parallel,
refusals kept.

`consortium hash` and `consortium submit --images` are thin wrappers around `files_hash`.
Every file gives one result, in the order the files were named (a directory's files in
sorted order), either its hashes (`FileHashed`) or why it was not hashed (`FileRefused`):
a file that cannot be read, is not an image or video in an accepted format, or is corrupt
is reported and skipped, never fatal to the others. Whether a file is a video is decided by
its first bytes (`video.video_container`), never its name: a video gets md5, sha256 and
vpdq (`consortium_client.video`), an image the image algorithms. Files are decoded in worker
processes (one per core by default), each read, hashed and dropped.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from consortium_client.hashvalues import ALGORITHMS
from consortium_client.sniffing import SNIFF_BYTES, video_container

# Image algorithms first, in the order the hashes file and the server list them.
ALGORITHM_NAMES: tuple[str, ...] = tuple(ALGORITHMS)


@dataclass(frozen=True)
class FileHashed:
    """A file's hashes, by algorithm (only those asked for), and for an image PDQ's 0-100
    quality (None for a video: each of its frames has its own, inside the vpdq value)."""

    path: str
    values: dict[str, str]
    pdq_quality: int | None
    # The PDQ variants to submit with the pdq entry (variants.submitted_variants), if asked.
    pdq_variants: dict[str, str] | None = None


@dataclass(frozen=True)
class FileRefused:
    """A file that was not hashed: `reason` is an `ImageRejected` or `VideoRejected` slug,
    or `unreadable`."""

    path: str
    reason: str
    message: str


def files_walk(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The files `paths` name: a file as given, a directory's files recursively in sorted
    order. Hidden files and directories (a leading dot) inside a directory are skipped, as
    operating systems' thumbnail caches and metadata are never the images meant; a path
    that does not exist is kept, to be reported when hashed."""
    found: list[str] = []
    for given in paths:
        path = os.fspath(given)
        if not os.path.isdir(path):
            found.append(path)
            continue
        for root, directories, files in os.walk(path):
            directories[:] = sorted(d for d in directories if not d.startswith("."))
            found += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
    return found


def file_hash(
    path: str, algorithms: Sequence[str] | None = None, variants: bool = False
) -> FileHashed | FileRefused:
    """One file's hashes, or why it has none; with `variants`, also the PDQ variants a
    submitter sends (the canonical image's hash and `variants.VARIANTS` of it). Runs in a
    worker process: picklable in and out."""
    wanted = ALGORITHM_NAMES if algorithms is None else algorithms
    try:
        with open(path, "rb") as file:
            head = file.read(SNIFF_BYTES)
    except OSError as exc:
        return FileRefused(path, "unreadable", f"cannot read: {exc.strerror or exc}")
    if video_container(head) is not None:
        return _video_hash(path, wanted)
    # Imported here so that the library imports without the imaging extras installed.
    from consortium_client.imaging import ImageRejected, image_file_hashes
    from consortium_client.variants import submitted_variants

    try:
        hashed = image_file_hashes(path, canonical=variants, variants=variants)
    except ImageRejected as exc:
        return FileRefused(path, exc.reason, exc.message)
    except OSError as exc:
        return FileRefused(path, "unreadable", f"cannot read: {exc.strerror or exc}")
    values = {n: hashed.values[n] for n in ALGORITHM_NAMES if n in wanted and n in hashed.values}
    found = None
    if variants and "pdq" in values:
        found = submitted_variants(values["pdq"], hashed.pdq_canonical, hashed.pdq_variants)
    return FileHashed(path, values, hashed.pdq_quality, found)


def _video_hash(path: str, wanted: Sequence[str]) -> FileHashed | FileRefused:
    try:
        from consortium_client.video import VideoRejected, video_file_hashes
    except ImportError:
        return FileRefused(
            path, "no-video-support", "a video: install consortium-client[video] to hash it"
        )
    try:
        hashed = video_file_hashes(path)
    except VideoRejected as exc:
        return FileRefused(path, exc.reason, str(exc))
    except OSError as exc:
        return FileRefused(path, "unreadable", f"cannot read: {exc.strerror or exc}")
    values = {n: hashed.values[n] for n in ALGORITHM_NAMES if n in wanted and n in hashed.values}
    return FileHashed(path, values, None)


def _hash_batch(
    paths: Sequence[str], algorithms: Sequence[str] | None, variants: bool = False
) -> list[FileHashed | FileRefused]:
    return [file_hash(path, algorithms, variants) for path in paths]


def files_hash(
    paths: Sequence[str],
    *,
    algorithms: Sequence[str] | None = None,
    jobs: int | None = None,
    variants: bool = False,
) -> Iterator[FileHashed | FileRefused]:
    """Hash `paths` (files, as `files_walk` lists them) in order, in `jobs` worker processes
    (default: one per core; 1 hashes in this process); `variants` as `file_hash`."""
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(paths) < 2:
        for path in paths:
            yield file_hash(path, algorithms, variants)
        return
    # forkserver, not fork: the caller may have threads (a server, a progress bar), and a
    # forked child inherits their locks in whatever state they were.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    # Small batches: fewer round trips than one file a task, yet results stream in order.
    size = max(1, min(16, len(paths) // (jobs * 4)))
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method)) as pool:
        for results in pool.map(
            _hash_batch, batches, [algorithms] * len(batches), [variants] * len(batches)
        ):
            yield from results
