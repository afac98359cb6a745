"""Hashing videos locally, with limits fit for untrusted files: md5, sha256 and vPDQ.

vPDQ (Meta's video PDQ, as HMA uses it) is the PDQ hash and quality of one frame a second.
The frames are decoded with PyAV (FFmpeg's libraries, shipped inside its wheel, so a partner
needs no system package) and hashed with pdqhash, the same PDQ as the image path. We do not
call the `vpdq` package itself: it is published as source only and builds against the
system's FFmpeg development packages with CMake, and it decodes a whole file before it
returns, so a file that lies about its length could not be stopped part way. Here every cap
is checked while decoding. The frames are the ones vpdq samples (the first frame at or after
each whole multiple of `seconds_per_frame` from the start), each hashed from an RGB working
frame of at most `WORKING_SIDE` pixels each way, as images are.

Limits, cheapest first; every refusal is a `VideoRejected` with a stable `reason`:
1. the byte size (`max_bytes`), before anything is decoded;
2. the container, sniffed from the file's first bytes (never its name): MP4/MOV/3GP,
   Matroska/WebM, AVI, MPEG transport and program streams, FLV, Ogg, ASF. The demuxer is
   then chosen by us, not probed by FFmpeg, so a playlist or concat file that would make
   FFmpeg open other files or URLs is never read;
3. the frame size (`max_pixels`) as the stream declares it, and again for every frame;
4. the duration: decoding stops with a refusal at the first frame past `max_duration`
   seconds, whatever the container claims; and at most `max_frames` frames are decoded;
5. decoding: a file FFmpeg cannot read, or in which no frame decodes, is refused; so is one
   whose frames stop well before the length its container declares (cut short). A
   container that declares no length (MPEG-TS) cut between packets reads as a shorter video.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import av.error
import numpy as np
import pdqhash

from consortium_client.hashvalues import VPDQ_MAX_FRAMES, VideoFrame, vpdq_value_format
from consortium_client.sniffing import SNIFF_BYTES, video_container

WORKING_SIDE = 1024
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_DURATION = float(VPDQ_MAX_FRAMES)  # seconds: a vpdq value's cap at 1 frame a second
DEFAULT_MAX_PIXELS = 8192 * 4320
DEFAULT_MAX_FRAMES = VPDQ_MAX_FRAMES * 120  # decoded, not sampled: an hour at 120 fps
SECONDS_PER_FRAME = 1.0
# A file whose frames stop before this share of its declared length (less a second) was cut
# short. Not every container declares a length (MPEG-TS does not): one cut between packets
# there reads as a shorter video.
TRUNCATED_SHARE = 0.9


class VideoRejected(ValueError):
    """A file that is not hashed as a video, with a stable `reason` slug: too-large,
    not-a-video, too-long, too-many-frames, too-many-pixels, truncated, corrupt, no-frames."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[VideoRejected], tuple[str, str]]:
        return (type(self), (self.reason, str(self)))


@dataclasses.dataclass(frozen=True)
class VideoHashes:
    """A video's hashes: `values` has md5 and sha256 of the file and `vpdq` (the canonical
    value); `frames` are the sampled frames in time order with their timestamps (seconds),
    which the value drops; `duration` is the time of the last decoded frame."""

    values: dict[str, str]
    frames: tuple[tuple[float, VideoFrame], ...]
    container: str
    width: int
    height: int
    duration: float


def video_file_hashes(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration: float = DEFAULT_MAX_DURATION,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    seconds_per_frame: float = SECONDS_PER_FRAME,
) -> VideoHashes:
    """Hash the video file at `path`: md5 and sha256 of its bytes, and vPDQ of its frames.

    Raises `VideoRejected` (see the module's limits); nothing is written anywhere."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise VideoRejected("too-large", f"the file is {size} bytes; the limit is {max_bytes}")
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as file:
        head = file.read(SNIFF_BYTES)
        container = video_container(head)
        if container is None:
            raise VideoRejected("not-a-video", "not a video file we hash (by its content)")
        md5.update(head)
        sha256.update(head)
        for block in iter(lambda: file.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    frames, width, height, duration = _vpdq_frames(
        path,
        container=container,
        max_duration=max_duration,
        max_pixels=max_pixels,
        max_frames=max_frames,
        seconds_per_frame=seconds_per_frame,
    )
    return VideoHashes(
        values={
            "md5": md5.hexdigest(),
            "sha256": sha256.hexdigest(),
            "vpdq": vpdq_value_format(frame for _, frame in frames),
        },
        frames=tuple(frames),
        container=container.split(",")[0],
        width=width,
        height=height,
        duration=duration,
    )


def _vpdq_frames(
    path: str | os.PathLike[str],
    *,
    container: str,
    max_duration: float,
    max_pixels: int,
    max_frames: int,
    seconds_per_frame: float,
) -> tuple[list[tuple[float, VideoFrame]], int, int, float]:
    try:
        # The demuxer is the sniffed one: FFmpeg probes nothing, so it never picks a
        # demuxer that opens other files or URLs. No network, no device, no option passed.
        source = av.open(os.fspath(path), format=container, options={"protocol_whitelist": "file"})
    except (av.error.FFmpegError, ValueError) as exc:
        raise VideoRejected("corrupt", f"the video cannot be opened: {_why(exc)}") from exc
    with source:
        if not source.streams.video:
            raise VideoRejected("no-frames", "the file has no video stream")
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        declared = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
        if declared > max_pixels:
            raise VideoRejected(
                "too-many-pixels", f"frames of {declared} pixels; the limit is {max_pixels}"
            )
        sampled: list[tuple[float, VideoFrame]] = []
        width = height = 0
        decoded = 0
        start: float | None = None
        next_time = 0.0
        last = 0.0
        for frame in _decoded(source, stream):
            decoded += 1
            if decoded > max_frames:
                raise VideoRejected(
                    "too-many-frames", f"more than {max_frames} frames; the limit is {max_frames}"
                )
            if frame.width * frame.height > max_pixels:
                raise VideoRejected(
                    "too-many-pixels",
                    f"a frame of {frame.width * frame.height} pixels; the limit is {max_pixels}",
                )
            time = _seconds(frame, stream.time_base)
            if start is None:
                start = time
            elapsed = time - start
            if elapsed > max_duration:
                raise VideoRejected(
                    "too-long", f"the video is longer than {max_duration:g} s, the limit"
                )
            last = max(last, elapsed)
            if elapsed + 1e-6 < next_time:
                continue
            while next_time <= elapsed + 1e-6:
                next_time += seconds_per_frame
            width, height = frame.width, frame.height
            sampled.append((round(elapsed, 3), _frame_pdq(frame)))
        if not sampled:
            raise VideoRejected("no-frames", "no frame of the video could be decoded")
        length = _declared_seconds(source, stream)
        if length is not None and last < length * TRUNCATED_SHARE - 1.0:
            raise VideoRejected(
                "truncated",
                f"the video ends early: frames stop at {last:.1f} s of the {length:.1f} s "
                "its container declares",
            )
        return sampled, width, height, last


def _decoded(
    source: av.container.InputContainer, stream: av.VideoStream
) -> Iterator[av.VideoFrame]:
    try:
        yield from source.decode(stream)
    except av.error.EOFError as exc:
        raise VideoRejected("truncated", f"the video ends early: {_why(exc)}") from exc
    except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
        truncated = "end of file" in str(exc).lower() or "truncat" in str(exc).lower()
        reason = "truncated" if truncated else "corrupt"
        raise VideoRejected(reason, f"the video cannot be decoded: {_why(exc)}") from exc


def _declared_seconds(source: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """How long the video stream says it is (else the container), if it says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if source.duration is not None:
        return source.duration / av.time_base
    return None


def _seconds(frame: av.VideoFrame, time_base: Fraction | None) -> float:
    if frame.pts is not None and time_base is not None:
        return float(frame.pts * time_base)
    if frame.time is not None:
        return float(frame.time)
    raise VideoRejected("corrupt", "a frame of the video has no timestamp")


def _frame_pdq(frame: av.VideoFrame) -> VideoFrame:
    """The PDQ hash and quality of one frame, from RGB at most WORKING_SIDE each way."""
    scale = max(frame.width, frame.height) / WORKING_SIDE
    if scale > 1:
        width = max(1, round(frame.width / scale))
        height = max(1, round(frame.height / scale))
        pixels = frame.to_ndarray(format="rgb24", width=width, height=height)
    else:
        pixels = frame.to_ndarray(format="rgb24")
    vector, quality = pdqhash.compute(np.ascontiguousarray(pixels))
    # The bit order of image PDQ hashes (imaging): most significant first.
    return VideoFrame(np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes().hex(), int(quality))


def _why(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror).lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
