"""Canonicalising an image before hashing: the box of its content, without plain borders.

The cheapest edits that defeat a perceptual hash add pixels around the picture: a letterbox, a
padded canvas (the picture placed on a larger plain background), a caption bar (a plain band
with a line of text above or below). PDQ sees the whole frame, so 20% of padding moves it as far
as a different image. Trimming those borders on both sides, the submitter's and the matcher's,
before hashing gives the edited copy the same frame as the original again.

python-threatexchange's `unletterbox` trims black rows only. `content_box` trims any
near-uniform colour, and bands that hold some text: from each edge inward, a line (row or
column) is *plain* when nearly all its pixels are within `tolerance` of the border's colour,
*text* when at least `text_share` of them are (a line through a caption's letters); the border
ends after its last plain line, provided no run of text lines in it is longer than `max_text`
of the side (a band of text with no plain line after it is the picture, not a caption).

Invariants (tests/client/test_canonical.py):
- an image placed on a plain canvas, on any sides, gets back its own box within a pixel or two,
  also after JPEG compression;
- a photograph without plain borders is left whole;
- the box keeps at least `min_area` of the image, or the whole image is kept: a mostly plain
  image (a logo, a page of text) is not reduced to a sliver whose hash means nothing.
Pure numpy and Pillow; no Django.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image

# Largest difference in any channel from the border's colour for a pixel to count as border.
# JPEG at quality 30 moves a plain band's pixels by up to about 10 near edges and text; a
# photograph's edge row rarely stays this close to one colour across its whole length.
DEFAULT_TOLERANCE = 24
# Share of a line's pixels within tolerance for the line to be plain: leaves room for JPEG's
# ringing and a few specks, not for any real content.
PLAIN_SHARE = 0.97
# Share for a line through text: captions' letters cover well under half of a line.
TEXT_SHARE = 0.5
# Longest run of text lines inside a border, as a share of the side: two or three lines of a
# caption; a longer run is the picture.
MAX_TEXT = 0.15
# The box must keep this share of the area, or nothing is trimmed.
MIN_AREA = 0.2


class Box(NamedTuple):
    """A crop box in Pillow's order: left and top inclusive, right and bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int


def content_box(
    pixels: npt.NDArray[np.uint8],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    plain_share: float = PLAIN_SHARE,
    text_share: float = TEXT_SHARE,
    max_text: float = MAX_TEXT,
    min_area: float = MIN_AREA,
) -> Box:
    """The box of `pixels` (H x W x C or H x W, uint8) left after trimming plain borders.

    Sides are trimmed top, bottom, left, right, each on what the others left, and again until
    nothing changes (a caption bar outside a padded canvas takes two rounds).
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width = pixels.shape[:2]
    box = Box(0, 0, width, height)
    for _ in range(4):
        left, top, right, bottom = box
        region = pixels[top:bottom, left:right]
        options = (tolerance, plain_share, text_share, max_text)
        top += _border(region, *options)
        bottom -= _border(region[::-1], *options)
        region = pixels[top:bottom, left:right]
        if region.shape[0] == 0:
            break
        columns = region.transpose(1, 0, 2)
        left += _border(columns, *options)
        right -= _border(columns[::-1], *options)
        trimmed = Box(left, top, right, bottom)
        if trimmed == box:
            break
        box = trimmed
    area = max(0, box.right - box.left) * max(0, box.bottom - box.top)
    if area < min_area * width * height:
        return Box(0, 0, width, height)
    return box


def canonical_image(image: Image.Image, **options: float) -> Image.Image:
    """`image` cropped to its `content_box` (the image itself when nothing is trimmed)."""
    box = content_box(np.asarray(image), **options)  # type: ignore[arg-type]
    if box == (0, 0, image.width, image.height):
        return image
    return image.crop(box)


def _border(
    lines: npt.NDArray[np.uint8],
    tolerance: int,
    plain_share: float,
    text_share: float,
    max_text: float,
) -> int:
    """How many of `lines` (from index 0 inward) form a plain border, at most half of them."""
    count = lines.shape[0]
    if count < 4 or lines.shape[1] == 0:
        return 0
    colour = np.median(lines[0], axis=0)
    longest_text = max(1, int(max_text * count))
    last_plain = 0
    run = 0
    # Most images have no border: their first line already fails, so lines are compared in
    # growing chunks rather than half the image at once.
    start, chunk = 0, 8
    while start < count // 2:
        stop = min(count // 2, start + chunk)
        block = lines[start:stop].astype(np.int16)
        near = (np.abs(block - colour).max(axis=2) <= tolerance).mean(axis=1)
        for index, share in enumerate(near.tolist(), start):
            if share >= plain_share:
                last_plain, run = index, 0
            elif share >= text_share and run < longest_text and index > 0:
                run += 1
            else:
                return last_plain + 1 if index > 0 else 0
        start, chunk = stop, chunk * 2
    return last_plain + 1
