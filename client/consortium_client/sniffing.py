"""Telling a video file from others by its first bytes, without decoding anything (and
without PyAV: the bulk hasher sorts files before it knows whether video support is
installed)."""

from __future__ import annotations

from pathlib import Path

# Enough for every signature below, and for three MPEG-TS packets.
SNIFF_BYTES = 4096
# ISO base media files that hold pictures, not a video: HEIF/HEIC and AVIF (and their
# image sequences), hashed as images or refused as such, never decoded as a video.
_STILL_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)


def video_container(head: bytes) -> str | None:
    """FFmpeg's demuxer name for a file starting with `head`, or None if it is not a video
    container we hash."""
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] not in _STILL_IMAGE_BRANDS:
        return "mov,mp4,m4a,3gp,3g2,mj2"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska,webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if len(head) >= 377 and all(head[i] == 0x47 for i in (0, 188, 376)):
        return "mpegts"
    return None


def is_video(path: Path) -> bool:
    """Whether the file's first bytes are those of a video container we hash."""
    with open(path, "rb") as file:
        return video_container(file.read(SNIFF_BYTES)) is not None
