"""Image hashing at the worst cases under the caps: seconds and peak memory, before and after.

What it measures
----------------
Images at the limits the server accepts (``IMAGE_MAX_BYTES`` 20 MiB, ``IMAGE_MAX_PIXELS``
50 MP), each hashed with every algorithm, with and without the 8 dihedral PDQ hashes:

- ``grey PNG 7000x7000``: the issue's case, a mostly flat grey PNG of a few kilobytes;
- ``JPEG 50 MP``: 8660x5773, quality 90;
- ``RGB PNG 50 MP``: 8660x5773 block noise (random 4x4 blocks, so that it fits in 20 MiB).

Each is hashed by ``consortium_client.imaging.image_hashes`` ("new") and by a copy of the
previous full-resolution path kept in this file ("old": decode, convert to RGB at full size,
hash), each run in a fresh process so that its peak resident memory is its own: the peak
(Linux VmHWM, reset just before hashing) minus the process's size before hashing, after
hashing a tiny image once so that the libraries' lazy imports are not counted. Printed per
case: seconds and peak MiB of each path, the ratios old / new, the largest distance between
the two paths' PDQ hashes (the 8 dihedral ones too when asked) and 64-bit hashes, and the PDQ
quality (below 50, PDQ bits sit near their median and any change moves many of them).

Usage::

    PYTHONPATH=client python bench/image_worst_case.py
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageDraw

from consortium_client.hashvalues import hamming_distance
from consortium_client.imaging import image_hashes

PERCEPTUAL_64 = ("phash", "dhash", "ahash", "whash")
JPEG_50MP = (8660, 5773)


def old_image_hashes(data: bytes, *, dihedral: bool) -> dict[str, Any]:
    """The hashing path before the working image: every hash of the full-size RGB image."""
    image = Image.open(io.BytesIO(data))
    image.load()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    pixels = np.asarray(rgb)
    if dihedral:
        vectors, _ = pdqhash.compute_dihedral(pixels)
    else:
        vector, _ = pdqhash.compute(pixels)
        vectors = [vector]
    pdq = [np.packbits(np.asarray(v, dtype=np.uint8)).tobytes().hex() for v in vectors]
    gray = rgb.convert("L")
    return {
        "pdq": pdq,
        "phash": str(imagehash.phash(gray)),
        "dhash": str(imagehash.dhash(gray)),
        "ahash": str(imagehash.average_hash(gray)),
        "whash": str(imagehash.whash(gray)),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def new_image_hashes(data: bytes, *, dihedral: bool) -> dict[str, Any]:
    hashed = image_hashes(data, dihedral=dihedral)
    dihedral_pdq = hashed.pdq_dihedral or [hashed.values["pdq"]]
    return {**hashed.values, "pdq": dihedral_pdq, "quality": hashed.pdq_quality}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ":"))


def probe(path: str, dihedral: bool) -> None:
    """Hash stdin's image once by `path` and print seconds, peak MiB and the hashes (JSON)."""
    hash_one = old_image_hashes if path == "old" else new_image_hashes
    data = sys.stdin.buffer.read()
    warm = io.BytesIO()
    Image.new("RGB", (64, 64)).save(warm, "PNG")
    hash_one(warm.getvalue(), dihedral=True)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current resident size
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    values = hash_one(data, dihedral=dihedral)
    seconds = time.perf_counter() - started
    peak = (_status_kib("VmHWM") - before) / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "values": values}))


def grey_png() -> bytes:
    image = Image.new("L", (7000, 7000), 128)
    draw = ImageDraw.Draw(image)
    for step in range(8):
        left, top = step * 350, step * 290
        draw.ellipse((left, top, 3500 + left, 4666 + top), fill=step * 30)
    return _encoded(image, "PNG")


def scene_jpeg() -> bytes:
    generator = np.random.default_rng(1)
    small = generator.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(JPEG_50MP, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for index in range(40):
        x, y = (index * 977) % JPEG_50MP[0], (index * 613) % JPEG_50MP[1]
        draw.rectangle((x, y, x + 900, y + 500), fill=(index * 6, 255 - index * 6, 128))
    return _encoded(image, "JPEG", quality=90)


def block_noise_png() -> bytes:
    generator = np.random.default_rng(2)
    width, height = JPEG_50MP
    blocks = generator.integers(0, 256, size=(-(-height // 4), -(-width // 4), 3), dtype=np.uint8)
    pixels = blocks.repeat(4, axis=0).repeat(4, axis=1)[:height, :width]
    return _encoded(Image.fromarray(pixels), "PNG")


def _encoded(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def run_probe(data: bytes, path: str, dihedral: bool) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", path]
    if dihedral:
        command.append("--dihedral")
    done = subprocess.run(command, input=data, capture_output=True, check=True)  # noqa: S603
    return dict(json.loads(done.stdout))


def compare(cases: dict[str, bytes]) -> None:
    print(
        f"\n{'case':<40}{'old s':>8}{'new s':>8}{'ratio':>8}"
        f"{'old MiB':>10}{'new MiB':>10}{'ratio':>8}{'pdq bits':>10}{'64-bit bits':>13}"
        f"{'quality':>9}"
    )
    for name, data in cases.items():
        for dihedral in (False, True):
            old = run_probe(data, "old", dihedral)
            new = run_probe(data, "new", dihedral)
            pdq = max(
                hamming_distance(a, b)
                for a, b in zip(old["values"]["pdq"], new["values"]["pdq"], strict=True)
            )
            others = max(
                hamming_distance(old["values"][name], new["values"][name]) for name in PERCEPTUAL_64
            )
            assert old["values"]["sha256"] == new["values"]["sha256"]
            label = f"{name}{' + dihedral' if dihedral else ''}"
            print(
                f"{label:<40}{old['seconds']:>8.2f}{new['seconds']:>8.2f}"
                f"{old['seconds'] / new['seconds']:>7.1f}x"
                f"{old['peak_mib']:>10.0f}{new['peak_mib']:>10.0f}"
                f"{old['peak_mib'] / max(new['peak_mib'], 1):>7.1f}x{pdq:>10}{others:>13}"
                f"{new['values']['quality']:>9}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--dihedral", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.probe:
        probe(arguments.probe, arguments.dihedral)
        return
    cases = {
        "grey PNG 7000x7000": grey_png(),
        "JPEG 50 MP": scene_jpeg(),
        "RGB PNG 50 MP (block noise)": block_noise_png(),
    }
    print("Worst cases under the caps (20 MiB, 50 MP), each path in a fresh process:")
    for name, data in cases.items():
        size = Image.open(io.BytesIO(data)).size
        print(f"  {name}: {len(data) / 1024:,.0f} KiB, {size[0]}x{size[1]}")
    compare(cases)


if __name__ == "__main__":
    main()
