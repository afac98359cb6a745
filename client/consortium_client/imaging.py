"""Hashing images locally, in memory, with limits fit for untrusted uploads.

A partner hashes its images on its own machine; the server hashes an image sent to the match API
with the same code, so both sides compute the same values. Either way the image is decoded once,
hashed and dropped: nothing is written to disk.

Limits, checked in this order so that the cheap checks run before any decoding:
1. the byte size (`max_bytes`) before Pillow sees the data;
2. the format, from the file's header, against `formats` (the common raster formats only, so
   that Pillow never hands a file to a risky decoder such as Ghostscript for EPS);
3. the declared pixel count (`max_pixels`) before the pixels are decoded, so a small file that
   declares a huge canvas (a decompression bomb) costs nothing. Pillow's own bomb check is made to
   fail closed as well;
4. decoding itself: a truncated or corrupt file is refused, never hashed half-decoded.
Every refusal is an `ImageRejected` with a stable `reason` slug.

Cost is bounded whatever the dimensions. Only the first frame of an animated or multi-page
file is decoded. A JPEG larger than the working size is decoded at 1/2, 1/4 or 1/8 scale
(libjpeg's DCT scaling); other formats cannot decode at reduced size, so the decoded frame (at
most 4 bytes a pixel under the pixel cap) is converted and box-reduced in bands of rows, never
copied whole. The result is one 8-bit RGB working image of at most `WORKING_SIDE` pixels each
way, and every perceptual hash is computed from it: they all shrink each axis to 64 pixels or
fewer anyway (PDQ to 64x64, ImageHash to 32x32 and smaller), so the values stay within a few
bits of hashing at full resolution (measured in tests/client/test_imaging.py). An image that
fits in the working size is hashed as decoded, exactly as the libraries called directly.

Values follow `hashvalues`: lowercase hex, `pdq` 64 characters (the reference bit order: the
first hex digit holds bits 255..252), the 64-bit ImageHash values 16 characters. Pixels are
hashed as stored; EXIF orientation is not applied, matching the reference PDQ tools, and the
optional dihedral PDQ hashes cover rotated and mirrored copies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import imagehash
import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from consortium_client.canonical import canonical_image
from consortium_client.variants import image_variants

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# The most pixels each way the perceptual hashes see: an image that fits is hashed as decoded,
# a longer side is reduced to between half this and this. PDQ and ImageHash then work on at
# most 1 MP (tens of milliseconds, tens of MiB) and stay within a few bits of their values at
# full resolution (tests/client/test_imaging.py measures it; at 512, PDQ drifted further).
# Meta's own PDQ ports downsample to 512 before hashing for the same reason: cost.
WORKING_SIDE = 1024
# Pixels converted to RGB at a time while reducing a large decoded frame: bounds the copies.
_BAND_PIXELS = 1 << 20

# The order pdqhash.compute_dihedral returns its hashes in, named after the Pillow
# `Image.Transpose` operation whose output hashes to that value (ROTATE_90 is anticlockwise).
DIHEDRAL_TRANSFORMS: tuple[str, ...] = (
    "original",
    "rotate-90",
    "rotate-180",
    "rotate-270",
    "flip-top-bottom",
    "flip-left-right",
    "transpose",
    "transverse",
)


class ImageRejected(ValueError):
    """An image that is not hashed, with a stable `reason` slug and a human message.

    Reasons: `too-large` (bytes), `too-many-pixels` (declared canvas, including decompression
    bombs), `not-an-image` (unrecognised or not an accepted format, e.g. SVG or random bytes),
    `truncated`, `corrupt` (any other decoding failure).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Exceptions pickle their args, which hold only the message; keep the reason too.
        return type(self), (self.reason, self.message)


@dataclass(frozen=True)
class ImageHashes:
    """The hashes of one image, by algorithm name, plus what is needed to judge them.

    `pdq_quality` is PDQ's 0-100 quality; hashes of images below ~50 match poorly (flat images).
    `pdq_dihedral` lists the PDQ hashes of the eight `DIHEDRAL_TRANSFORMS`, when asked for.
    `pdq_canonical` is the PDQ hash of the canonical image (`canonical`: plain borders trimmed,
    a tilt turned back), and `pdq_variants` the PDQ hashes of the `variants` of the image
    itself, by name, when asked for.
    """

    values: dict[str, str]
    pdq_quality: int
    pdq_dihedral: list[str] | None
    format: str
    width: int
    height: int
    pdq_canonical: str | None = None
    pdq_variants: dict[str, str] | None = None
    # The dihedral PDQ hashes of the canonical image, when both were asked for.
    pdq_canonical_dihedral: list[str] | None = None


def image_hashes(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dihedral: bool = False,
    canonical: bool = False,
    variants: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> ImageHashes:
    """Hash the image in `data` with every image algorithm, or raise `ImageRejected`.

    With `canonical`, also the PDQ hash of the canonical image (`canonical.canonical_image`:
    plain borders trimmed, a tilt turned back); with `variants`, the PDQ hashes of
    `variants.VARIANTS` of the image itself (an evader crops or turns the whole picture, and
    a photograph's plain sky or backdrop at an edge is part of it).
    """
    if len(data) > max_bytes:
        raise ImageRejected("too-large", f"image is {len(data)} bytes; the limit is {max_bytes}")
    image = _open(data, max_pixels=max_pixels, formats=formats)
    try:
        width, height = image.size
        working = _working_image(image)
        hashes = _hashes(
            data, working, dihedral=dihedral, image_format=str(image.format), size=(width, height)
        )
        if not (canonical or variants):
            return hashes
        # Before the image is closed: the working image may be the decoded image itself.
        base = canonical_image(working) if canonical else working
        return dataclasses.replace(
            hashes,
            pdq_canonical=pdq_hash(base)[0] if canonical else None,
            pdq_canonical_dihedral=(
                pdq_dihedral_hashes(base)[0] if canonical and dihedral else None
            ),
            pdq_variants=(
                {name: pdq_hash(copy)[0] for name, copy in image_variants(working)}
                if variants
                else None
            ),
        )
    finally:
        image.close()


def working_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> Image.Image:
    """The 8-bit RGB working image every perceptual hash of `data` is computed from.

    Checked and decoded as by `image_hashes`, with the same refusals.
    """
    if len(data) > max_bytes:
        raise ImageRejected("too-large", f"image is {len(data)} bytes; the limit is {max_bytes}")
    image = _open(data, max_pixels=max_pixels, formats=formats)
    try:
        working = _working_image(image)
        # The working image may be the decoded image itself: detach it from the file.
        return working.copy() if working is image else working
    finally:
        image.close()


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    """The PDQ hash (64 hex characters) and quality (0-100) of an RGB image's pixels."""
    vector, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return _bits_hex(vector), int(quality)


def pdq_dihedral_hashes(image: Image.Image) -> tuple[list[str], int]:
    """The PDQ hashes of the eight `DIHEDRAL_TRANSFORMS` of an RGB image, and its quality."""
    vectors, quality = pdqhash.compute_dihedral(np.asarray(image.convert("RGB")))
    return [_bits_hex(vector) for vector in vectors], int(quality)


def image_file_hashes(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dihedral: bool = False,
    canonical: bool = False,
    variants: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> ImageHashes:
    """`image_hashes` of a file, reading at most `max_bytes + 1` bytes of it."""
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    return image_hashes(
        data,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        dihedral=dihedral,
        canonical=canonical,
        variants=variants,
        formats=formats,
    )


def _open(data: bytes, *, max_pixels: int, formats: Sequence[str]) -> Image.Image:
    """The image's header, parsed and checked; no pixel is decoded yet."""
    with _bomb_check_fails_closed():
        try:
            image = Image.open(io.BytesIO(data), formats=list(formats))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise _bomb_error() from error
        except UnidentifiedImageError as error:
            accepted = ", ".join(formats)
            raise ImageRejected(
                "not-an-image", f"not an image in an accepted format ({accepted})"
            ) from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise _decode_error(error) from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageRejected(
            "too-many-pixels",
            f"image is {width}x{height} pixels; the limit is {max_pixels} pixels",
        )
    return image


@contextmanager
def _bomb_check_fails_closed() -> Iterator[None]:
    # The explicit pixel check in `_open` is the defence; the warning filter only makes Pillow's
    # own bomb check (at its global MAX_IMAGE_PIXELS) raise instead of warn if ours is ever
    # looser. The filter is process-wide before Python 3.14, so the safety must not rest on it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _working_image(image: Image.Image) -> Image.Image:
    """The first frame as 8-bit RGB, at most `WORKING_SIDE` pixels each way.

    A side longer than that is box-reduced by the smallest whole factor that brings it within,
    so to more than half the working side. Each axis is reduced on its own, as every hash
    squeezes the image to a square anyway, so a long strip keeps all its rows. Decoding happens
    here, and only of the current frame.
    """
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        # libjpeg picks the smallest scale (1/2, 1/4, 1/8) that keeps both sides at least
        # the requested ones. Asking for twice the working image (Pillow's `reducing_gap` of
        # 2) leaves the last step to the box reduction below: DCT scaling all the way down
        # moved PDQ by 10 bits on a 50 MP JPEG, this by at most 8.
        width, height = image.size
        image.draft(None, (_draft_side(width), _draft_side(height)))
    with _bomb_check_fails_closed():
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise _bomb_error() from error
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
            raise _decode_error(error) from error
    factor = (_reduction(image.width), _reduction(image.height))
    try:
        return _rgb(image) if factor == (1, 1) else _reduced_rgb(image, factor)
    except (OSError, ValueError) as error:
        raise _decode_error(error) from error


def _reduction(side: int) -> int:
    # A box reduction (the mean of whole blocks) stays closest to PDQ's own box filters: with it
    # the hashes differ from full resolution by fewer bits than after a Lanczos resample.
    return -(-side // WORKING_SIDE)


def _draft_side(side: int) -> int:
    return min(side, 2 * -(-side // _reduction(side)))


def _reduced_rgb(image: Image.Image, factor: tuple[int, int]) -> Image.Image:
    """`_rgb(image).reduce(factor)`, converting at most about `_BAND_PIXELS` at a time.

    A box reduction of bands whose height is a multiple of the vertical factor equals the
    reduction of the whole, so the result is the same without a full-size RGB copy (4 bytes a
    pixel in Pillow, 200 MB at 50 MP). Converting before reducing keeps the colours of
    transparent pixels, as converting the whole image does; Pillow's reduce of RGBA would
    premultiply them to black.
    """
    across, down = factor
    width, height = image.size
    reduced = Image.new("RGB", (-(-width // across), -(-height // down)))
    rows = down * max(1, _BAND_PIXELS // (width * down))
    for top in range(0, height, rows):
        band = _rgb(image.crop((0, top, width, min(top + rows, height))))
        reduced.paste(band.reduce(factor) if factor != (1, 1) else band, (0, top // down))
    return reduced


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        # Pillow's conversion clips 16-bit samples at 255, turning most of the image white;
        # the high byte is the 8-bit image a viewer would show.
        high = (np.asarray(image) >> 8).astype(np.uint8)
        return Image.fromarray(high).convert("RGB")
    return image.convert("RGB")


def _bomb_error() -> ImageRejected:
    return ImageRejected("too-many-pixels", "image declares more pixels than can be decoded safely")


def _decode_error(error: BaseException) -> ImageRejected:
    # Pillow signals truncation only in its messages ("image file is truncated",
    # "Truncated File Read"); everything else is a corrupt file.
    if "truncated" in str(error).lower():
        return ImageRejected("truncated", "image data ends before the image does")
    return ImageRejected("corrupt", f"image cannot be decoded: {error}")


def _hashes(
    data: bytes,
    rgb: Image.Image,
    *,
    dihedral: bool,
    image_format: str,
    size: tuple[int, int],
) -> ImageHashes:
    pixels = np.asarray(rgb)
    dihedral_hexes: list[str] | None = None
    if dihedral:
        vectors, quality = pdqhash.compute_dihedral(pixels)
        dihedral_hexes = [_bits_hex(vector) for vector in vectors]
        pdq = dihedral_hexes[0]
    else:
        vector, quality = pdqhash.compute(pixels)
        pdq = _bits_hex(vector)
    # ImageHash converts to grayscale itself; doing it once here gives the same values faster.
    gray = rgb.convert("L")
    values = {
        "pdq": pdq,
        "phash": str(imagehash.phash(gray)),
        "dhash": str(imagehash.dhash(gray)),
        "ahash": str(imagehash.average_hash(gray)),
        "whash": str(imagehash.whash(gray)),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return ImageHashes(
        values=values,
        pdq_quality=int(quality),
        pdq_dihedral=dihedral_hexes,
        format=image_format,
        width=size[0],
        height=size[1],
    )


def _bits_hex(vector: npt.NDArray[np.integer]) -> str:
    """pdqhash's 256 bits (most significant first) as 64 lowercase hex characters."""
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes().hex()
