"""Hash algorithms the consortium shares, and the parsing of their values.

Values travel as lowercase hex. Parsing is strict: a value of the wrong length or with a
non-hex character is refused rather than padded or truncated, because a silently altered
hash would match the wrong images or none at all.

A `vpdq` value (a video) is a set of frames, each a PDQ hash and its quality, written as
one canonical text (`vpdq_value_format`, docs/formats.md): frames `<64 hex pdq><2 hex
quality>` joined by commas, sorted by hash, each hash once. Timestamps and frame order are
not kept: the matching rule (shares of frames matched each way) does not use them.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass

_HEX_DIGITS = frozenset(string.hexdigits)


class HashValueError(ValueError):
    """A hash value or algorithm name that cannot be accepted."""


@dataclass(frozen=True)
class Algorithm:
    name: str
    bits: int
    perceptual: bool
    # Default Hamming radius for matching; 0 for exact (cryptographic) hashes.
    default_distance: int

    # True for a set of per-frame hashes (vpdq): `bits` is then one frame's width.
    frames: bool = False

    @property
    def hex_length(self) -> int:
        return self.bits // 4


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        # Defaults from bench/robustness.py's real photographs (docs/matching.md): each is the
        # loosest distance with no match between different images there, less a bit of margin
        # for pHash. dHash has none only among images of PDQ quality >= 50 (PDQ_QUALITY_FLOOR);
        # aHash and wHash give different photographs the very same hash, so they match exact
        # values only. A list's own distance for an algorithm overrides these.
        Algorithm("pdq", 256, perceptual=True, default_distance=31),
        Algorithm("phash", 64, perceptual=True, default_distance=4),
        Algorithm("dhash", 64, perceptual=True, default_distance=3),
        Algorithm("ahash", 64, perceptual=True, default_distance=0),
        Algorithm("whash", 64, perceptual=True, default_distance=0),
        Algorithm("md5", 128, perceptual=False, default_distance=0),
        Algorithm("sha256", 256, perceptual=False, default_distance=0),
        # A video's frames: the distance is between two frames' PDQ hashes (HMA's default).
        Algorithm("vpdq", 256, perceptual=True, default_distance=31, frames=True),
    )
}
# Algorithms of one hash per value, which the Hamming and exact indexes hold as such.
SINGLE_ALGORITHMS: tuple[str, ...] = tuple(name for name, a in ALGORITHMS.items() if not a.frames)

# A vpdq value's cap: one hour at a frame a second, less the frames that repeat. A frame is
# 67 characters with its comma, so a value is at most about 241 KB.
VPDQ_MAX_FRAMES = 3600
VPDQ_FRAME_LENGTH = 66
VPDQ_MAX_LENGTH = VPDQ_MAX_FRAMES * (VPDQ_FRAME_LENGTH + 1) - 1


def algorithm_get(name: object) -> Algorithm:
    """Return the algorithm called `name`, or raise `HashValueError` naming the known ones."""
    if not isinstance(name, str) or name not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise HashValueError(f"unknown algorithm {name!r}; known algorithms: {known}")
    return ALGORITHMS[name]


def hash_value_parse(algorithm: str, value: object) -> str:
    """Return `value` as lowercase hex of exactly the algorithm's width.

    Uppercase hex is accepted and normalised; anything else (wrong length, non-hex,
    whitespace, a `0x` prefix) is refused.
    """
    spec = algorithm_get(algorithm)
    if spec.frames:
        return vpdq_value_format(vpdq_value_parse(value))
    if not isinstance(value, str):
        raise HashValueError(f"{algorithm} value must be a hex string")
    if len(value) != spec.hex_length:
        raise HashValueError(
            f"{algorithm} value must be {spec.hex_length} hex characters, got {len(value)}"
        )
    if not _HEX_DIGITS.issuperset(value):
        raise HashValueError(f"{algorithm} value contains a character that is not hex")
    return value.lower()


def hamming_distance(a: str, b: str) -> int:
    """Hamming distance between two hex values of the same width."""
    if len(a) != len(b):
        raise HashValueError("values of different widths cannot be compared")
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True, order=True)
class VideoFrame:
    """One sampled frame of a video as vpdq keeps it: its PDQ hash (64 lowercase hex) and
    the PDQ quality of the frame (0-100; frames below a list's floor are not compared)."""

    pdq: str
    quality: int


def vpdq_value_parse(value: object) -> tuple[VideoFrame, ...]:
    """The frames of a vpdq value, refusing anything but its canonical form: 1 to
    `VPDQ_MAX_FRAMES` frames of 66 hex characters (uppercase is normalised) joined by single
    commas, sorted by PDQ hash with no hash twice, each quality 0-100.

    Strict rather than forgiving because the value is committed to and compared as text:
    two spellings of one video would be two entries, and a frame silently dropped or
    reordered would change what the partner signed."""
    if not isinstance(value, str):
        raise HashValueError("vpdq value must be a string of comma-separated frames")
    if not value:
        raise HashValueError("vpdq value has no frames")
    if len(value) > VPDQ_MAX_LENGTH:
        raise HashValueError(f"vpdq value is longer than {VPDQ_MAX_FRAMES} frames")
    items = value.split(",")
    if len(items) > VPDQ_MAX_FRAMES:
        raise HashValueError(f"vpdq value has more than {VPDQ_MAX_FRAMES} frames")
    frames: list[VideoFrame] = []
    for position, item in enumerate(items):
        if len(item) != VPDQ_FRAME_LENGTH or not _HEX_DIGITS.issuperset(item):
            raise HashValueError(
                f"vpdq frame {position} must be {VPDQ_FRAME_LENGTH} hex characters "
                "(64 of PDQ hash, 2 of quality)"
            )
        item = item.lower()
        quality = int(item[64:], 16)
        if quality > 100:
            raise HashValueError(f"vpdq frame {position} has quality {quality}; at most 100")
        frame = VideoFrame(item[:64], quality)
        if frames and frame.pdq <= frames[-1].pdq:
            raise HashValueError(
                f"vpdq frame {position} is out of order or repeats a hash; frames are sorted "
                "by hash, each hash once"
            )
        frames.append(frame)
    return tuple(frames)


def vpdq_value_format(frames: Iterable[VideoFrame]) -> str:
    """The canonical vpdq value of `frames` (any order, repeats allowed): each PDQ hash once,
    with the highest quality it was seen at, sorted by hash. Refuses an empty set, one over
    the cap, and a malformed frame."""
    best: dict[str, int] = {}
    for frame in frames:
        pdq = hash_value_parse("pdq", frame.pdq)
        if not isinstance(frame.quality, int) or not 0 <= frame.quality <= 100:
            raise HashValueError("a vpdq frame's quality is an integer from 0 to 100")
        best[pdq] = max(best.get(pdq, 0), frame.quality)
    if not best:
        raise HashValueError("vpdq value has no frames")
    if len(best) > VPDQ_MAX_FRAMES:
        raise HashValueError(
            f"the video has {len(best)} distinct frames; a vpdq value holds at most "
            f"{VPDQ_MAX_FRAMES}"
        )
    return ",".join(f"{pdq}{quality:02x}" for pdq, quality in sorted(best.items()))
