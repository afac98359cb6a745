"""Hash algorithms the consortium shares, and the parsing of their values.

Values travel as lowercase hex. Parsing is strict: a value of the wrong length or with a
non-hex character is refused rather than padded or truncated, because a silently altered
hash would match the wrong images or none at all.
"""

from __future__ import annotations

import string
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
    )
}


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
