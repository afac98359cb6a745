"""Local image hashing: values that survive re-encoding, and refusals of unsafe input."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pdqhash
import pytest
from PIL import (
    GifImagePlugin,
    Image,
    ImageDraw,
    ImageFilter,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from consortium_client.hashvalues import (
    ALGORITHMS,
    SINGLE_ALGORITHMS,
    hamming_distance,
    hash_value_parse,
)
from consortium_client.imaging import (
    DEFAULT_MAX_BYTES,
    DIHEDRAL_TRANSFORMS,
    WORKING_SIDE,
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
    assert set(hashes.values) == set(SINGLE_ALGORITHMS)  # every algorithm but a video's
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


# --- Cost bounded whatever the dimensions ---------------------------------------------------


def textured(seed: int, size: tuple[int, int], ground: str = "noise") -> Image.Image:
    """A photo-like image at any size: a smooth or gradient ground, shapes, text, grain."""
    rng = random.Random(seed)
    generator = np.random.default_rng(seed)
    width, height = size
    if ground == "gradient":
        across = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        down = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        layers = [across + 0 * down, down + 0 * across, (across + down) / 2]
        image = Image.fromarray(np.stack(layers, axis=-1).astype(np.uint8))
    else:
        cells = generator.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(cells).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(50):
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x, y, x + rng.randrange(2, width // 3), y + rng.randrange(2, height // 3))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    for _ in range(25):
        spot = (rng.randrange(width), rng.randrange(height))
        draw.text(spot, f"hash {rng.randrange(1000)}", fill=(0, 0, 0), font_size=height // 25)
    pixels = np.asarray(image, dtype=np.int16)
    grain = generator.integers(-16, 17, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def text_page(seed: int, size: tuple[int, int]) -> Image.Image:
    """Sharp black lines of text on white: edges at every scale."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    line = size[1] // 30
    for top in range(line, size[1] - line, line * 3 // 2):
        words = " ".join(f"w{rng.randrange(10 ** rng.randrange(1, 6))}" for _ in range(60))
        draw.text((rng.randrange(line * 2), top), words, fill="black", font_size=line)
    return image


def full_resolution_hashes(data: bytes) -> tuple[dict[str, str], list[str]]:
    """The perceptual hashes of the whole decoded image, as the libraries compute them."""
    rgb = Image.open(io.BytesIO(data)).convert("RGB")
    vectors, _ = pdqhash.compute_dihedral(np.asarray(rgb))
    dihedral = [np.packbits(vector.astype(np.uint8)).tobytes().hex() for vector in vectors]
    gray = rgb.convert("L")
    values = {
        "pdq": dihedral[0],
        "phash": str(imagehash.phash(gray)),
        "dhash": str(imagehash.dhash(gray)),
        "ahash": str(imagehash.average_hash(gray)),
        "whash": str(imagehash.whash(gray)),
    }
    return values, dihedral


# The most bits each hash may move because it is computed from the working image: PDQ 8 of
# 256, the 64-bit hashes 4 (their default match distance is 10). Sparse text on white is the
# exception for PDQ: at full resolution a one-pixel shift of such a page already moves 4-14
# bits and a half-size copy 12-20, so it may move 24 (still within the match distance, 31).
DRIFT = {"pdq": 8, "phash": 4, "dhash": 4, "ahash": 4, "whash": 4}
TEXT_PDQ_DRIFT = 24


def gradient(seed: int, size: tuple[int, int]) -> Image.Image:
    return textured(seed, size, "gradient")


LARGE_IMAGES = [
    pytest.param(textured, (1600, 1200), "PNG", id="photo-1600x1200-png"),
    pytest.param(textured, (4000, 2000), "JPEG", id="photo-4000x2000-jpeg"),
    pytest.param(textured, (1100, 4400), "PNG", id="photo-tall-1100x4400-png"),
    pytest.param(textured, (6000, 900), "JPEG", id="photo-strip-6000x900-jpeg"),
    pytest.param(gradient, (3000, 2000), "JPEG", id="gradient-3000x2000-jpeg"),
    pytest.param(gradient, (2048, 2048), "PNG", id="gradient-2048x2048-png"),
    pytest.param(text_page, (2500, 1800), "PNG", id="text-2500x1800-png"),
    pytest.param(text_page, (1800, 2500), "JPEG", id="text-1800x2500-jpeg"),
]


@pytest.mark.parametrize(("make", "size", "image_format"), LARGE_IMAGES)
def test_large_images_hash_within_a_few_bits_of_full_resolution(
    make: Any, size: tuple[int, int], image_format: str
) -> None:
    data = encoded(
        make(sum(size), size),
        image_format,
        **{"quality": 90} if image_format == "JPEG" else {"compress_level": 1},
    )
    full, full_dihedral = full_resolution_hashes(data)
    hashes = image_hashes(data, dihedral=True)
    assert hashes.pdq_dihedral is not None
    assert hashes.pdq_quality >= 50  # the server's quality floor: PDQ describes it well
    limits = {**DRIFT, "pdq": TEXT_PDQ_DRIFT} if make is text_page else DRIFT
    drift = {name: hamming_distance(value, hashes.values[name]) for name, value in full.items()}
    assert all(drift[name] <= limit for name, limit in limits.items()), drift
    pairs = zip(full_dihedral, hashes.pdq_dihedral, strict=True)
    dihedral_drift = [hamming_distance(*pair) for pair in pairs]
    assert max(dihedral_drift) <= limits["pdq"], dihedral_drift
    assert (hashes.width, hashes.height) == size
    assert hashes.values["sha256"] == hashlib.sha256(data).hexdigest()


def grey_canvas(size: tuple[int, int]) -> Image.Image:
    """A mostly flat grey image: a few kilobytes as PNG whatever its size (the issue's case)."""
    image = Image.new("L", size, 128)
    draw = ImageDraw.Draw(image)
    for step in range(8):
        left, top = step * size[0] // 20, step * size[1] // 24
        draw.ellipse((left, top, size[0] // 2 + left, size[1] * 2 // 3 + top), fill=step * 30)
    return image


def fifty_megapixel_jpeg() -> bytes:
    size = (8660, 5773)  # 49.99 MP, under the default 50 MP cap
    return encoded(textured(11, (866, 577)).resize(size), "JPEG", quality=90)


@pytest.fixture(scope="module")
def worst_cases() -> dict[str, bytes]:
    return {
        "grey-png-7000x7000": encoded(grey_canvas((7000, 7000)), "PNG"),
        "jpeg-50mp": fifty_megapixel_jpeg(),
        "strip-png-20000x600": encoded(textured(12, (2000, 600)).resize((20000, 600)), "PNG"),
    }


def test_hashes_see_at_most_the_working_size_whatever_the_dimensions(
    worst_cases: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, tuple[int, int]]] = []

    def recording(name: str, function: Any) -> Any:
        def record(image: Any, *args: Any, **kwargs: Any) -> Any:
            size = image.size if isinstance(image, Image.Image) else image.shape[1::-1]
            seen.append((name, size))
            return function(image, *args, **kwargs)

        return record

    for name in ("compute", "compute_dihedral"):
        monkeypatch.setattr(pdqhash, name, recording(name, getattr(pdqhash, name)))
    for name in ("phash", "dhash", "average_hash", "whash"):
        monkeypatch.setattr(imagehash, name, recording(name, getattr(imagehash, name)))
    for label, data in worst_cases.items():
        seen.clear()
        hashes = image_hashes(data, dihedral=label == "jpeg-50mp")
        assert hashes.pdq_quality > 0, label
        assert len(seen) == 5, seen
        assert all(max(size) <= WORKING_SIDE for _, size in seen), (label, seen)
        assert all(min(size) > 256 for _, size in seen), (label, seen)  # not squashed
    seen.clear()
    image_hashes(encoded(scene(13)))
    assert {size for _, size in seen} == {(640, 480)}  # a small image is hashed as it is


# Peak resident memory in KiB above what the process held before hashing: Linux resets the
# high-water mark (VmHWM) to the current size when "5" is written to clear_refs.
_PEAK_PROBE = """
import io, sys
from PIL import Image
from consortium_client.imaging import image_hashes

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))

data = sys.stdin.buffer.read()
warm = io.BytesIO()
Image.new("RGB", (64, 64)).save(warm, "PNG")
image_hashes(warm.getvalue(), dihedral=True)  # the libraries' lazy imports are not hashing
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = status("VmRSS")
image_hashes(data, dihedral=True)
print(status("VmHWM") - before)
"""


# What hashing may hold beyond the decoded frame: the 1 MP working image and pdqhash's float64
# luma arithmetic on it (about 40 MiB); the full-resolution path peaked at 1.7 GB on the
# 7000x7000 PNG.
WORKING_SET_MIB = 48


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak from Linux's /proc")
@pytest.mark.parametrize(
    ("label", "frame_mib"),
    [
        ("grey-png-7000x7000", 47),  # a PNG cannot decode at reduced size: 1 byte a pixel
        ("jpeg-50mp", 48),  # decoded at 1/2 scale; at full size the frame alone is 200 MB
        ("strip-png-20000x600", 46),  # RGB is decoded at 4 bytes a pixel
    ],
)
def test_worst_case_images_hash_within_bounded_memory(
    worst_cases: dict[str, bytes], label: str, frame_mib: int
) -> None:
    """Peak resident memory of hashing, measured in a fresh process (Pillow's pixel buffers
    are outside tracemalloc's view)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    probe = subprocess.run(  # noqa: S603 - this interpreter, a constant script
        [sys.executable, "-c", _PEAK_PROBE],
        input=worst_cases[label],
        capture_output=True,
        check=True,
        env=environment,
    )
    peak_mib = int(probe.stdout) / 1024
    assert peak_mib < frame_mib + WORKING_SET_MIB, f"{label}: {peak_mib:.0f} MiB"


def frames(count: int) -> list[Image.Image]:
    return [scene(20 + index, (480, 360)) for index in range(count)]


@pytest.mark.parametrize(
    ("image_format", "plugin", "options"),
    [
        ("GIF", GifImagePlugin.GifImageFile, {}),
        ("WEBP", WebPImagePlugin.WebPImageFile, {"lossless": True}),
        ("TIFF", TiffImagePlugin.TiffImageFile, {}),
        ("PNG", PngImagePlugin.PngImageFile, {}),  # APNG
    ],
)
def test_only_the_first_frame_of_a_multi_frame_file_is_decoded(
    image_format: str, plugin: Any, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *rest = frames(6)
    data = encoded(first, image_format, save_all=True, append_images=rest, **options)
    sought: list[int] = []
    # Pillow moves between frames with `_seek` (`n_frames`, `seek` or `load` call it).
    seek = plugin._seek

    def record(image: Any, frame: int, *args: Any) -> None:
        sought.append(frame)
        seek(image, frame, *args)

    monkeypatch.setattr(plugin, "_seek", record)
    probe = Image.open(io.BytesIO(data))
    probe.seek(2)
    probe.load()
    assert 2 in sought  # the spy sees a move to another frame
    sought.clear()
    hashes = image_hashes(data)
    assert [frame for frame in sought if frame != 0] == []
    alone = image_hashes(encoded(Image.open(io.BytesIO(data)).convert("RGB"), "PNG"))
    for algorithm in DRIFT:
        assert hashes.values[algorithm] == alone.values[algorithm], algorithm


def test_a_16_bit_image_hashes_like_its_8_bit_rendering() -> None:
    """Pillow would clip 16-bit samples at 255 (an all-white image); hashing keeps the high
    byte, what a viewer shows."""
    eight = scene(14).convert("L")
    sixteen = Image.fromarray(np.asarray(eight).astype(np.uint16) * 257)
    for size in [eight.size, (2400, 1800)]:
        hashes = image_hashes(encoded(sixteen.resize(size), "PNG"))
        reference = image_hashes(encoded(eight.resize(size), "PNG"))
        for algorithm in DRIFT:
            assert hashes.values[algorithm] == reference.values[algorithm], (size, algorithm)


def transparent_palette(image: Image.Image) -> Image.Image:
    palette = image.quantize(64)
    palette.info["transparency"] = 0
    return palette


def coloured_transparency(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = Image.new("L", image.size, 255)
    ImageDraw.Draw(alpha).rectangle((0, 0, image.width // 2, image.height), fill=0)
    rgba.putalpha(alpha)
    return rgba


def cmyk(image: Image.Image) -> Image.Image:
    return image.convert("CMYK")


@pytest.mark.parametrize(
    ("convert", "image_format", "size"),
    [
        pytest.param(cmyk, "JPEG", (2600, 1700), id="cmyk-jpeg"),
        # Large enough each way for libjpeg to decode it at half scale.
        pytest.param(cmyk, "JPEG", (4100, 4100), id="cmyk-jpeg-drafted"),
        pytest.param(transparent_palette, "PNG", (2600, 1700), id="palette-transparency-png"),
        pytest.param(coloured_transparency, "PNG", (2600, 1700), id="rgba-png"),
        pytest.param(lambda image: image.convert("L"), "TIFF", (2600, 1700), id="grey-tiff"),
        pytest.param(lambda image: image.convert("1"), "BMP", (2600, 1700), id="bilevel-bmp"),
    ],
)
def test_other_modes_hash_within_a_few_bits_of_full_resolution(
    convert: Any, image_format: str, size: tuple[int, int]
) -> None:
    """Large images of every mode are reduced after conversion to RGB, so they hash as the
    whole image converted at once would (transparent pixels keep their colour)."""
    data = encoded(convert(textured(15, (size[0] // 2, size[1] // 2)).resize(size)), image_format)
    full, _ = full_resolution_hashes(data)
    hashes = image_hashes(data)
    drift = {name: hamming_distance(value, hashes.values[name]) for name, value in full.items()}
    assert all(drift[name] <= limit for name, limit in DRIFT.items()), drift
