"""Image hashing: throughput through ``imaging.py`` against the libraries called directly, and
which transformations each algorithm survives.

What it measures
----------------
1. Throughput: ``--images`` generated JPEG files (quality 90, ``--size`` pixels), held in memory
   as bytes, hashed with every algorithm (pdq, phash, dhash, ahash, whash, md5, sha256) by
   ``consortium_client.imaging.image_hashes`` and by a plain pipeline calling Pillow, pdqhash,
   ImageHash and hashlib directly on the same bytes (decode, convert to RGB, hash). The two run
   in alternating rounds so that load from other processes hits both alike; the best round of
   each is reported, with their ratio. The direct pipeline's time is also split by step.
2. Robustness: for each of ``--pairs`` generated images, the distance between the hash of the
   original and of a transformed copy: half size, JPEG quality 30, grayscale, crop 10% (5% off
   each edge), rotate 90 degrees, mirror (left-right). ``pdq-dihedral`` is the smallest
   distance to any of the original's eight dihedral PDQ hashes. ``unrelated`` pairs two
   different images, to show how far apart non-matches fall. Images are half of ``--size``.
   Printed: median and maximum
   distance, and the share within the algorithm's default distance (pdq 31, others 10).

The images are synthetic (blurred shapes over smooth noise, with grain), not photographs:
read the distances as indicative of each algorithm's behaviour, not as rates on real content.

Usage::

    PYTHONPATH=client python bench/image_hashing.py [--images 40] [--pairs 40] [--size 1600x1200]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import statistics
import time
from collections.abc import Callable

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageFilter

from consortium_client.hashvalues import ALGORITHMS, hamming_distance
from consortium_client.imaging import image_hashes

PERCEPTUAL = [name for name, spec in ALGORITHMS.items() if spec.perceptual and not spec.frames]


def scene(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photo-like image: smooth colour noise, blurred shapes, and fine grain."""
    rng = random.Random(seed)
    generator = np.random.default_rng(seed)
    width, height = size
    ground = generator.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(ground).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x, y, x + rng.randrange(width // 30, width // 3), y + rng.randrange(20, height // 3))
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(3)), dtype=np.int16)
    grain = generator.integers(-12, 13, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def direct_hashes(data: bytes, steps: dict[str, float] | None = None) -> dict[str, str]:
    """The same hashes with Pillow, pdqhash, ImageHash and hashlib called directly."""
    clock = time.perf_counter()

    def step(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        if steps is not None:
            steps[name] = steps.get(name, 0.0) + now - clock
        clock = now

    image = Image.open(io.BytesIO(data))
    rgb = image.convert("RGB")
    step("decode")
    vector, _ = pdqhash.compute(np.asarray(rgb))
    values = {"pdq": np.packbits(vector.astype(np.uint8)).tobytes().hex()}
    step("pdq")
    for name, function in (
        ("phash", imagehash.phash),
        ("dhash", imagehash.dhash),
        ("ahash", imagehash.average_hash),
        ("whash", imagehash.whash),
    ):
        values[name] = str(function(rgb))
        step(name)
    values["md5"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
    values["sha256"] = hashlib.sha256(data).hexdigest()
    step("md5+sha256")
    return values


def throughput(files: list[bytes], rounds: int) -> None:
    def rate(hash_one: Callable[[bytes], object]) -> float:
        started = time.perf_counter()
        for data in files:
            hash_one(data)
        return len(files) / (time.perf_counter() - started)

    ours, direct = [], []
    for _ in range(rounds):
        ours.append(rate(image_hashes))
        direct.append(rate(direct_hashes))
    steps: dict[str, float] = {}
    for data in files:
        direct_hashes(data, steps)
    total = sum(steps.values())
    print(f"\nThroughput, {len(files)} JPEG files, best of {rounds} alternating rounds")
    print(f"  imaging.image_hashes (all 7 hashes)        {max(ours):7.2f} images/s")
    print(f"  Pillow + pdqhash + ImageHash, direct       {max(direct):7.2f} images/s")
    print(f"  ratio imaging / direct                     {max(ours) / max(direct):7.2f}")
    split = ", ".join(f"{k} {v / total:.0%}" for k, v in steps.items())
    print(f"  direct pipeline time by step: {split}")


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "half size": lambda image: image.resize((image.width // 2, image.height // 2)),
    "jpeg q30": lambda image: Image.open(io.BytesIO(jpeg(image, 30))),
    "grayscale": lambda image: image.convert("L"),
    "crop 10%": lambda image: image.crop(
        (image.width // 20, image.height // 20, image.width * 19 // 20, image.height * 19 // 20)
    ),
    "rotate 90": lambda image: image.transpose(Image.Transpose.ROTATE_90),
    "mirror": lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def robustness(pairs: int, size: tuple[int, int]) -> None:
    columns = [*PERCEPTUAL, "pdq-dihedral"]
    distances: dict[str, dict[str, list[int]]] = {t: {c: [] for c in columns} for t in TRANSFORMS}
    distances["unrelated"] = {c: [] for c in columns}
    for seed in range(pairs):
        original = scene(1000 + seed, size)
        reference = image_hashes(jpeg(original), dihedral=True)
        assert reference.pdq_dihedral is not None
        others = {name: transform(original) for name, transform in TRANSFORMS.items()}
        others["unrelated"] = scene(5000 + seed, size)
        for name, copy in others.items():
            values = image_hashes(jpeg(copy)).values
            for algorithm in PERCEPTUAL:
                distances[name][algorithm].append(
                    hamming_distance(reference.values[algorithm], values[algorithm])
                )
            distances[name]["pdq-dihedral"].append(
                min(hamming_distance(h, values["pdq"]) for h in reference.pdq_dihedral)
            )
    print(f"\nDistance original -> copy over {pairs} images ({size[0]}x{size[1]}, JPEG q90):")
    print("median / max / share within the default distance (pdq 31, others 10)")
    print(f"{'':<12}" + "".join(f"{c:>20}" for c in columns))
    for name, by_algorithm in distances.items():
        cells = []
        for column in columns:
            values = by_algorithm[column]
            limit = ALGORITHMS["pdq" if column.startswith("pdq") else column].default_distance
            within = sum(v <= limit for v in values) / len(values)
            cells.append(f"{statistics.median(values):>5.0f} /{max(values):>4} /{within:>5.0%}")
        print(f"{name:<12}" + "".join(f"{c:>20}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="1600x1200")
    arguments = parser.parse_args()
    width, height = (int(n) for n in arguments.size.split("x"))
    files = [jpeg(scene(seed, (width, height))) for seed in range(arguments.images)]
    throughput(files, arguments.rounds)
    robustness(arguments.pairs, (width // 2, height // 2))


if __name__ == "__main__":
    main()
