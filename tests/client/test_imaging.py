"""Local image hashing: values that survive re-encoding, and refusals of unsafe input."""

from __future__ import annotations

import io
import pickle
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageDraw, ImageFilter

from consortium_client.hashvalues import ALGORITHMS, hamming_distance, hash_value_parse
from consortium_client.imaging import (
    DEFAULT_MAX_BYTES,
    DIHEDRAL_TRANSFORMS,
    ImageRejected,
    image_file_hashes,
    image_hashes,
)

PDQ_DISTANCE = ALGORITHMS["pdq"].default_distance
# What each of DIHEDRAL_TRANSFORMS after "original" does, in Pillow's words.
PILLOW_TRANSPOSES = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like test image: overlapping blurred shapes on a coloured ground."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 200))
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return image.filter(ImageFilter.GaussianBlur(2))


def encoded(image: Image.Image, image_format: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a `width` x `height` grayscale canvas."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def rejection(data: bytes, **limits: int) -> str:
    with pytest.raises(ImageRejected) as refused:
        image_hashes(data, **limits)
    assert refused.value.message
    return refused.value.reason


@pytest.mark.parametrize(
    "transform",
    [
        lambda image: image.resize((image.width // 2, image.height // 2)),
        lambda image: Image.open(io.BytesIO(encoded(image, "JPEG", quality=30))),
        lambda image: image.convert("L"),
    ],
    ids=["resize-half", "jpeg-q30", "grayscale"],
)
def test_transformed_copy_stays_within_pdq_distance(transform: Any) -> None:
    original = scene(1)
    copy = transform(original)
    distance = hamming_distance(
        image_hashes(encoded(original)).values["pdq"], image_hashes(encoded(copy)).values["pdq"]
    )
    assert distance <= PDQ_DISTANCE


def test_different_image_is_far_in_pdq() -> None:
    first, second = image_hashes(encoded(scene(1))), image_hashes(encoded(scene(2)))
    assert hamming_distance(first.values["pdq"], second.values["pdq"]) > 3 * PDQ_DISTANCE


def test_values_are_lowercase_hex_of_each_algorithm_width() -> None:
    hashes = image_hashes(encoded(scene(3)))
    assert set(hashes.values) == set(ALGORITHMS)
    for algorithm, value in hashes.values.items():
        assert hash_value_parse(algorithm, value) == value
    assert 0 <= hashes.pdq_quality <= 100
    assert hashes.pdq_dihedral is None
    assert (hashes.format, hashes.width, hashes.height) == ("PNG", 640, 480)


def test_values_equal_the_libraries_called_directly() -> None:
    data = encoded(scene(4), "JPEG", quality=90)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    vector, quality = pdqhash.compute(np.asarray(image))
    hashes = image_hashes(data)
    bits = "".join(str(bit) for bit in vector)
    assert hashes.values["pdq"] == f"{int(bits, 2):064x}"
    assert hashes.pdq_quality == quality
    assert hashes.values["phash"] == str(imagehash.phash(image))
    assert hashes.values["dhash"] == str(imagehash.dhash(image))
    assert hashes.values["ahash"] == str(imagehash.average_hash(image))
    assert hashes.values["whash"] == str(imagehash.whash(image))


def test_dihedral_hashes_match_hashing_the_transposed_image() -> None:
    image = scene(5)
    hashes = image_hashes(encoded(image), dihedral=True)
    assert hashes.pdq_dihedral is not None
    assert len(hashes.pdq_dihedral) == len(DIHEDRAL_TRANSFORMS)
    assert hashes.pdq_dihedral[0] == hashes.values["pdq"]
    for name, transposed in zip(DIHEDRAL_TRANSFORMS[1:], PILLOW_TRANSPOSES, strict=True):
        value = image_hashes(encoded(image.transpose(transposed))).values["pdq"]
        position = DIHEDRAL_TRANSFORMS.index(name)
        assert hamming_distance(value, hashes.pdq_dihedral[position]) <= 10, name


def test_file_hashes_equal_bytes_hashes(tmp_path: Path) -> None:
    data = encoded(scene(6), "JPEG", quality=80)
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    assert image_file_hashes(path) == image_hashes(data)


def test_hashing_opens_no_file() -> None:
    data = encoded(scene(7), "WEBP")
    opened: list[tuple[object, ...]] = []
    watching = True

    def audit(event: str, arguments: tuple[object, ...]) -> None:
        if watching and event == "open":
            opened.append(arguments)

    # Audit hooks cannot be removed; this one goes quiet when the test ends.
    sys.addaudithook(audit)
    try:
        image_hashes(data, dihedral=True)
    finally:
        watching = False
    assert opened == []


def test_refuses_more_bytes_than_the_limit() -> None:
    assert rejection(b"\0" * (DEFAULT_MAX_BYTES + 1)) == "too-large"
    assert rejection(encoded(scene(8)), max_bytes=1000) == "too-large"


def test_refuses_a_decompression_bomb_before_decoding() -> None:
    assert rejection(png_declaring(100_000, 100_000)) == "too-many-pixels"
    bomb = encoded(Image.new("L", (3000, 3000)))
    assert len(bomb) < 20_000
    assert rejection(bomb, max_pixels=1_000_000) == "too-many-pixels"


@pytest.mark.parametrize("side", [10_000, 100_000], ids=["pillow-warning", "pillow-error"])
def test_pillow_bomb_check_fails_closed_when_our_limit_is_looser(side: int) -> None:
    assert rejection(png_declaring(side, side), max_pixels=10**12) == "too-many-pixels"


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "BMP"])
def test_refuses_a_truncated_image(image_format: str) -> None:
    data = encoded(scene(9), image_format)
    assert rejection(data[: len(data) // 2]) == "truncated"


@pytest.mark.parametrize(
    "data",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        random.Random(0).randbytes(4096),
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        b"",
    ],
    ids=["svg", "random-bytes", "eps", "empty"],
)
def test_refuses_what_is_not_an_accepted_image(data: bytes) -> None:
    assert rejection(data) == "not-an-image"


def test_refusal_keeps_its_reason_through_pickling() -> None:
    pickled = pickle.dumps(ImageRejected("truncated", "image data ends early"))
    copy = pickle.loads(pickled)  # noqa: S301 - bytes this test just made
    assert (copy.reason, copy.message) == ("truncated", "image data ends early")
    assert str(copy) == "image data ends early"
