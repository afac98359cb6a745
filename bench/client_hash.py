"""`consortium hash` on a directory: images/s against calling the libraries directly.

What it measures, in one run on the same files
----------------------------------------------
- ``direct``: this process reads each file and calls Pillow (decode, RGB), pdqhash and
  ImageHash (phash, dhash, ahash, whash) and hashlib (md5, sha256) itself, one core;
- ``cli -j1``: ``consortium hash --jobs 1 DIR > /dev/null`` as a fresh process (start-up,
  the directory walk, the image limits of ``imaging.py``, JSON lines out), one core;
- ``cli``: ``consortium hash DIR`` with its default of one worker process per core.

Each is run ``--rounds`` times, alternating, and the best round is reported with its ratio
to ``direct``. The files are ``--images`` photo-like JPEGs (``bench/image_hashing.py``'s
synthetic scenes, quality 90, ``--size`` pixels): no photographs ship with the repository.

Usage::

    PYTHONPATH=client python bench/client_hash.py [--images 120] [--size 1600x1200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image


def _scene_maker():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "image_hashing", Path(__file__).with_name("image_hashing.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scene


def direct(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        image = Image.open(io.BytesIO(data))
        rgb = image.convert("RGB")
        pdqhash.compute(np.asarray(rgb))
        for function in (imagehash.phash, imagehash.dhash, imagehash.average_hash):
            function(rgb)
        imagehash.whash(rgb)
        hashlib.md5(data).hexdigest()  # noqa: S324 - an identifier, as the client computes it
        hashlib.sha256(data).hexdigest()


def cli(directory: Path, *jobs: str) -> None:
    command = [sys.executable, "-m", "consortium_client", "hash", *jobs, str(directory)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", default="1600x1200")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    scene = _scene_maker()
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for number in range(args.images):
            scene(number, (width, height)).save(directory / f"{number:05}.jpg", quality=90)
        paths = sorted(directory.iterdir())
        best: dict[str, float] = {}
        runs = {
            "direct": lambda: direct(paths),
            "cli -j1": lambda: cli(directory, "--jobs", "1"),
            "cli": lambda: cli(directory),
        }
        for _ in range(args.rounds):
            for name, run in runs.items():
                started = time.perf_counter()
                run()
                elapsed = time.perf_counter() - started
                best[name] = min(best.get(name, elapsed), elapsed)
    cores = os.cpu_count()
    print(f"{args.images} JPEGs of {args.size}, best of {args.rounds} rounds, {cores} cores")
    for name, elapsed in best.items():
        rate = args.images / elapsed
        ratio = best["direct"] / elapsed
        print(f"  {name:8} {rate:7.1f} images/s  ({ratio:.2f}x direct)")


if __name__ == "__main__":
    main()
