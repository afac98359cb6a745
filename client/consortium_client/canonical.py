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
# Tilts undone (degrees): a turn of under half a degree moves PDQ by a few bits only, and one of
# more than 20 leaves corners too large to tell from a picture's own dark or plain corners.
MIN_TILT = 0.5
MAX_TILT = 20.0
# Corners of one kind must agree on their angle within this many degrees (JPEG's blocks move a
# 10-pixel leg of a 2.5 degree triangle by a pixel or two).
TILT_AGREEMENT = 1.5
# The most a frame may have been scaled more one way than the other after its turn, and the
# least that is taken for a squeeze rather than for noise in the corners' angles.
MAX_ASPECT = 2.5
MIN_SQUEEZE = 1.3
# A frame is taken as expanded when this share of each of its edges is fill. Expanded, nearly
# all of each edge is (trimming the borders cuts the picture's tips, a pixel of which covers
# tens of pixels of an edge at a small angle: 84% at 1.2 degrees); turned within its frame,
# about half, whatever the angle.
EXPANDED_SHARE = 0.7
# Pixels left out at each edge of a turned-back picture, blended with the fill.
TILT_INSET = 2
# The most, as a share of each side, that trimming may have cut from an expanded tilted copy
# for the turn to be undone on the whole frame: the picture's tips touch every edge, and the
# trim cuts them (6 pixels of 744 at 15 degrees). Turned back from the trimmed frame, the
# picture came out 2-3% short each way, up to 38 bits from the original (14 from the whole
# frame); a caption bar or a padded canvas is far thicker and stays trimmed.
TIP_TRIM = 0.02


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
    """`image` cropped to its `content_box`, then turned back if it is a tilted copy
    (`tilt_found`): the image itself when nothing applies."""
    box = content_box(np.asarray(image), **options)  # type: ignore[arg-type]
    trimmed = image.crop(box) if box != (0, 0, image.width, image.height) else image
    tilt = tilt_found(np.asarray(trimmed))
    if tilt is None:
        return trimmed
    if tilt.expanded and _tips_only(box, image.size):
        return tilt_undone(image, tilt)
    return tilt_undone(trimmed, tilt)


def _tips_only(box: Box, size: tuple[int, int]) -> bool:
    """Whether trimming `box` out of a frame of `size` cut no more than a turned picture's
    tips from each edge (TIP_TRIM)."""
    width, height = size
    cuts = (box.left / width, box.top / height, 1 - box.right / width, 1 - box.bottom / height)
    return max(cuts) <= TIP_TRIM


class Tilt(NamedTuple):
    """A picture turned by `degrees` (anticlockwise, as `Image.rotate`) on a plain fill:
    `expanded` when the frame grew to hold the whole picture (its corners touch every edge),
    else turned within its own frame (its corners cut off). `aspect` is how much more the
    frame was scaled vertically than horizontally after the turn (1 when it was not, 2 when
    its width was halved, as the working image halves a long side)."""

    degrees: float
    expanded: bool
    aspect: float = 1.0


def tilt_found(
    pixels: npt.NDArray[np.uint8],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    max_degrees: float = MAX_TILT,
    agreement: float = TILT_AGREEMENT,
) -> Tilt | None:
    """The tilt of a picture turned by a few degrees, from the four plain triangles the turn
    leaves in the corners of its frame; None when the corners are not such triangles.

    A picture turned by t degrees leaves, in each corner, a right triangle of fill colour
    whose legs along the frame's edges are in the ratio tan(t), the long leg horizontal in the
    top-left and bottom-right corners when the turn is anticlockwise, vertical when it is
    clockwise. Scaling the frame by a different factor each way after the turn (the working
    image halves a long side) makes the ratio a*tan(t) in those corners and tan(t)/a in the
    others: both come back from the two. Every corner must hold fill of one colour; at least
    two must hold a filled triangle whose hypotenuse fits a line (not where the picture is as
    dark as the fill), and those must agree on the sense and, per kind, on the angle within
    `agreement` degrees. A photograph's own dark or plain corners (a vignette, a sky, a round
    picture on black) rarely meet all of that.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width = pixels.shape[:2]
    if height < 16 or width < 16:
        return None
    corners = pixels[[0, 0, -1, -1], [0, -1, -1, 0]].astype(np.int16)
    colour = np.median(corners, axis=0)
    if np.abs(corners - colour).max() > tolerance:
        return None
    fill = np.abs(pixels.astype(np.int16) - colour).max(axis=2) <= tolerance
    # Each corner seen from the corner outward (top-left, top-right, bottom-right,
    # bottom-left) with the legs of its triangle along the horizontal and vertical edges.
    views = (fill, fill[:, ::-1], fill[::-1, ::-1], fill[::-1, :])
    ratios: dict[bool, list[float]] = {True: [], False: []}
    senses = set()
    for corner, view in enumerate(views):
        along, down = _run(view[0]), _run(view[:, 0])
        # Every corner holds some fill: a picture that reaches a corner is not turned.
        if min(along, down) < 3:
            return None
        # Where the picture is as dark (or as plain) as the fill near the corner, the
        # triangle is not filled a third of the way along each leg, or no line fits its
        # hypotenuse: the corner abstains.
        if not view[down // 3, along // 3]:
            continue
        level = along > down
        ratio = _hypotenuse_ratio(view if level else view.T, max(along, down), min(along, down))
        if ratio is not None:
            ratios[level].append(ratio)
            # Anticlockwise: long leg horizontal in the top-left and bottom-right corners.
            senses.add(level == (corner in (0, 2)))
    found = [r for kind in ratios.values() for r in kind]
    if len(found) < 2 or len(senses) != 1:
        return None
    for kind in ratios.values():
        if kind and np.degrees(np.arctan(max(kind)) - np.arctan(min(kind))) > agreement:
            return None
    level_ratio = float(np.mean(ratios[True])) if ratios[True] else None
    upright_ratio = float(np.mean(ratios[False])) if ratios[False] else None
    tangent, aspect = float(np.mean(found)), 1.0
    if level_ratio is not None and upright_ratio is not None:
        squeeze = float(np.sqrt(level_ratio / upright_ratio))
        # At a small angle a pixel of a leg moves the ratio by a tenth or more: a squeeze
        # under MIN_SQUEEZE is noise (and PDQ, which squeezes every image to a square, would
        # not notice it anyway).
        if max(squeeze, 1 / squeeze) >= MIN_SQUEEZE:
            tangent, aspect = float(np.sqrt(level_ratio * upright_ratio)), squeeze
    degrees = float(np.degrees(np.arctan(tangent)))
    if not MIN_TILT <= degrees <= max_degrees or not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
        return None
    # Expanded, the picture's corners touch the frame's edges: each edge is nearly all fill.
    edges = (fill[0], fill[-1], fill[:, 0], fill[:, -1])
    expanded = all(edge.mean() >= EXPANDED_SHARE for edge in edges)
    return Tilt(degrees if senses.pop() else -degrees, expanded, aspect)


def tilt_undone(image: Image.Image, tilt: Tilt) -> Image.Image:
    """`image` turned back by its `tilt`, cropped to the picture: the whole picture when the
    frame had been expanded, else the largest centred box of it the turn kept. The result
    has square pixels again (PDQ squeezes every image to a square: its shape does not count)."""
    if abs(tilt.aspect - 1) > 0.01:
        image = image.resize(
            (image.width, max(1, round(image.height / tilt.aspect))), Image.Resampling.BILINEAR
        )
    width, height = image.size
    radians = np.radians(abs(tilt.degrees))
    cos, sin = float(np.cos(radians)), float(np.sin(radians))
    if tilt.expanded:
        # The frame holds the turned picture exactly: w cos + h sin = W, w sin + h cos = H.
        det = cos * cos - sin * sin
        keep_w = (width * cos - height * sin) / det
        keep_h = (height * cos - width * sin) / det
        back = image.rotate(-tilt.degrees, resample=Image.Resampling.BICUBIC, expand=True)
    else:
        # The turned frame holds a centred box of the frame's shape scaled by `scale`.
        scale = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
        keep_w, keep_h = width * scale, height * scale
        back = image.rotate(-tilt.degrees, resample=Image.Resampling.BICUBIC)
    # A couple of pixels in from the edges, which the two resamplings blended with the fill.
    keep_w, keep_h = max(1.0, keep_w - 2 * TILT_INSET), max(1.0, keep_h - 2 * TILT_INSET)
    left = (back.width - keep_w) / 2
    top = (back.height - keep_h) / 2
    return back.crop((round(left), round(top), round(left + keep_w), round(top + keep_h)))


def _hypotenuse_ratio(view: npt.NDArray[np.bool_], long: int, short: int) -> float | None:
    """The tangent of the angle between the long leg of the fill triangle in the corner [0, 0] of
    `view` (the long leg along axis 1) and its hypotenuse, fitted to the triangle's depth in
    every column rather than read from its two legs alone: a dark stretch of the picture at a
    tip would move a leg by pixels, and the short leg of a 3 degree triangle is a few dozen."""
    stop = int(long * 0.8)
    start = int(long * 0.1)
    if stop - start < 8:
        return None
    limit = min(view.shape[0], 2 * short + 8)
    block = ~view[:limit, start:stop]
    depth = np.where(block.any(axis=0), block.argmax(axis=0), limit).astype(np.float64)
    columns = np.arange(start, stop, dtype=np.float64)
    keep = np.ones(columns.size, dtype=bool)
    for _ in range(3):
        if keep.sum() < 0.5 * columns.size:
            return None
        slope, intercept = np.polyfit(columns[keep], depth[keep], 1)
        keep = np.abs(depth - (slope * columns + intercept)) <= 2
    if keep.sum() < 0.5 * columns.size or slope >= 0:
        return None
    return float(-slope)


def _run(line: npt.NDArray[np.bool_]) -> int:
    """How many of `line`'s first elements are fill, until three in a row are not (a speck of
    noise in the fill does not end it)."""
    other = ~line
    if other.size < 3:
        return int(line.size)
    ends = other[:-2] & other[1:-1] & other[2:]
    found = np.flatnonzero(ends)
    return int(found[0]) if found.size else int(line.size)


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
