"""Variants of an original that a submitter hashes beside it, so that edited copies still match.

PDQ survives resizing and re-encoding but not a 5% crop or a 3 degree rotation: each moves the
hash as far as a different picture. The submitter holds the original, so its client can hash a
few edits of it too (crops from the centre, the sides and the corners, small rotations) and
submit them as extra PDQ values of the same entry. A copy cropped or turned by a similar amount
then lands near one of them. They are ordinary PDQ hashes of the submitter's own image: they
reveal no more than the entry's own hash, and they end with their entry.

Each variant costs one PDQ value (32 bytes) in the index and a little more chance of a false
match; bench/robustness.py measures both. Pure Pillow; no Django.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

Transform = Callable[[Image.Image], Image.Image]


def cropped(left: float, top: float, right: float, bottom: float) -> Transform:
    """Remove the given shares of the width or height from each side."""

    def crop(image: Image.Image) -> Image.Image:
        width, height = image.size
        return image.crop(
            (
                round(width * left),
                round(height * top),
                width - round(width * right),
                height - round(height * bottom),
            )
        )

    return crop


def turned(degrees: float, *, expand: bool = False) -> Transform:
    def rotate(image: Image.Image) -> Image.Image:
        # Black corners come in, as in most editors: without expansion the frame keeps its
        # size and loses the picture's corners; with it the frame grows to hold them all.
        return image.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=expand)

    return rotate


# The most variants one entry may carry: room to grow past `VARIANTS` without letting one
# entry weigh in the index like hundreds.
MAX_VARIANTS = 32

# Name -> transform, in a fixed order: the order variants are hashed and submitted in. Chosen
# by bench/robustness.py --select (docs/matching.md): greedily, by the recall each adds to the
# canonical and dihedral hashes on half of the harness's originals, checked on the other half;
# past these the recall stops growing. A name always means the same edit: a new edit gets a new
# name, and a name no longer chosen moves to `RETIRED_VARIANTS`.
VARIANTS: dict[str, Transform] = {
    "crop-centre-5": cropped(0.05, 0.05, 0.05, 0.05),
    "crop-centre-3": cropped(0.03, 0.03, 0.03, 0.03),
    "crop-left-10": cropped(0.1, 0, 0, 0),
    "crop-centre-8": cropped(0.08, 0.08, 0.08, 0.08),
    "crop-centre-10": cropped(0.1, 0.1, 0.1, 0.1),
    "crop-bottom-left-5": cropped(0.05, 0, 0, 0.05),
    "rotate-4.5": turned(4.5),
    "crop-top-10": cropped(0, 0.1, 0, 0),
    "crop-right-10": cropped(0, 0, 0.1, 0),
    "rotate-minus-3": turned(-3),
    "rotate-3-expand": turned(3, expand=True),
    "rotate-minus-4.5-expand": turned(-4.5, expand=True),
    "rotate-1.5": turned(1.5),
    "rotate-minus-6": turned(-6),
    "crop-top-right-5": cropped(0, 0.05, 0.05, 0),
    "rotate-1.5-expand": turned(1.5, expand=True),
    "rotate-6-expand": turned(6, expand=True),
    "rotate-3": turned(3),
}

# Names of variants an earlier client hashed and no longer does: still accepted from a
# submitter (an older client) and kept by entries that carry them, never hashed. Until this
# version every variant was an edit of the canonical image (borders trimmed), since then of the
# image itself: the two differ only for an image whose edges are plain, and either is an
# ordinary PDQ hash of the submitter's image.
RETIRED_VARIANTS: tuple[str, ...] = (
    "crop-bottom-10",
    "crop-top-left-10",
    "crop-top-right-10",
    "crop-bottom-left-10",
    "crop-bottom-right-10",
    "crop-top-left-5",
    "crop-bottom-right-5",
    "rotate-6",
    "rotate-minus-3-expand",
)


def image_variants(
    image: Image.Image, names: tuple[str, ...] | None = None
) -> list[tuple[str, Image.Image]]:
    """The named variants of `image` (all of `VARIANTS` by default), in `VARIANTS` order."""
    chosen = VARIANTS if names is None else {name: VARIANTS[name] for name in names}
    return [(name, transform(image)) for name, transform in chosen.items()]


# The name under which a submitter stores the PDQ hash of its image without plain borders
# (`consortium_client.canonical`), beside the variants, when it differs from the entry's own.
CANONICAL = "canonical"
# Every name an entry's variant may have.
VARIANT_NAMES: tuple[str, ...] = (CANONICAL, *VARIANTS, *RETIRED_VARIANTS)


def submitted_variants(
    pdq: str, canonical: str | None, variants: dict[str, str] | None
) -> dict[str, str]:
    """The variants a submitter sends with a pdq entry of value `pdq`: the canonical hash
    (unless it is the entry's own) and each variant, none equal to the entry's value."""
    found: dict[str, str] = {}
    if canonical is not None and canonical != pdq:
        found[CANONICAL] = canonical
    for name, value in (variants or {}).items():
        if value != pdq:
            found[name] = value
    return found
