"""The vPDQ matching rule, as HMA applies it: two videos match when enough of each one's
frames have a near frame in the other.

Frames under the quality floor are dropped from both sides first (a black or flat frame's PDQ
hash says little). Then `query_share` is the fraction of the query's frames within
`frame_distance` bits of some frame of the stored video, and `stored_share` the fraction of
the stored video's frames within that distance of some query frame; a match needs both at or
above their thresholds. A share is of distinct frame hashes: the value keeps each hash once.

Pure (numpy only): the server's matcher counts the same shares from its index's frame hits,
and the tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from consortium_client.hashvalues import VPDQ_MAX_FRAMES, VideoFrame

# HMA's defaults: python-threatexchange's vPDQ signal type matches frames within 31 bits,
# ignores frames of quality under 50, and needs 80% of frames matched each way.
FRAME_DISTANCE = 31
QUALITY_FLOOR = 50
QUERY_SHARE = 80  # percent
STORED_SHARE = 80  # percent
# A video's frame as a row of a frame index (the server's per list, a mirror's): entry id x
# FRAME_SLOTS + the frame's place in the value, so that a row names its video and frame.
FRAME_SLOTS = 4096
assert VPDQ_MAX_FRAMES <= FRAME_SLOTS  # noqa: S101 - a frame's place must fit in its slot


def frame_rows(entry_id: int, frames: int) -> list[int]:
    """The frame-index rows of a video entry with `frames` frames, in the value's order."""
    first = entry_id * FRAME_SLOTS
    return list(range(first, first + frames))


@dataclass(frozen=True)
class VideoShares:
    """Matched frames over compared frames, each way. `compared` 0 means no frame of that
    side reached the quality floor: such a video matches nothing."""

    query_matched: int
    query_compared: int
    stored_matched: int
    stored_compared: int

    @property
    def query_share(self) -> float:
        return self.query_matched / self.query_compared if self.query_compared else 0.0

    @property
    def stored_share(self) -> float:
        return self.stored_matched / self.stored_compared if self.stored_compared else 0.0

    @property
    def distance(self) -> int:
        """100 less the weaker share in whole percent (rounded down): 0 when every frame
        matched both ways, 100 when none did. A caller thresholds it like a hash distance."""
        weaker = min(
            self.query_matched * self.stored_compared, self.stored_matched * self.query_compared
        )
        product = self.query_compared * self.stored_compared
        if not product:
            return 100
        return 100 - (100 * weaker) // product

    def matches(self, *, query_share: int = QUERY_SHARE, stored_share: int = STORED_SHARE) -> bool:
        """Both shares at or above their thresholds (percent), compared exactly."""
        return (
            self.query_compared > 0
            and self.stored_compared > 0
            and 100 * self.query_matched >= query_share * self.query_compared
            and 100 * self.stored_matched >= stored_share * self.stored_compared
        )


def frames_pack(frames: Sequence[VideoFrame]) -> np.ndarray:
    """The frames' PDQ hashes as an (n, 32) uint8 array."""
    if not frames:
        return np.zeros((0, 32), np.uint8)
    return np.frombuffer(bytes.fromhex("".join(f.pdq for f in frames)), np.uint8).reshape(-1, 32)


def video_shares(
    query: Sequence[VideoFrame],
    stored: Sequence[VideoFrame],
    *,
    frame_distance: int = FRAME_DISTANCE,
    quality_floor: int = QUALITY_FLOOR,
) -> VideoShares:
    """The shares of `query` and `stored` frames matched each way (brute force: every pair)."""
    q = [f for f in query if f.quality >= quality_floor]
    s = [f for f in stored if f.quality >= quality_floor]
    if not q or not s:
        return VideoShares(0, len(q), 0, len(s))
    qa = frames_pack(q).view(np.uint64)
    sa = frames_pack(s).view(np.uint64)
    distances = np.bitwise_count(qa[:, None, :] ^ sa[None, :, :]).sum(axis=2)
    near = distances <= frame_distance
    return VideoShares(int(near.any(axis=1).sum()), len(q), int(near.any(axis=0).sum()), len(s))
