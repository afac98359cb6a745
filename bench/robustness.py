"""Robustness of image matching to the edits people use to evade a block, on real photographs.

What it measures
----------------
Originals: real photographs from Debian packages (scikit-image's samples, OpenCV's sample data,
MATE, KDE Plasma and Lomiri wallpapers), fetched by ``scripts/fetch-test-images`` into a cache
directory, each reduced to at most 1024 pixels a side (the working size the hashes see).
Distractors: 320x320 tiles cut from other large photographs (Lomiri wallpapers not used as
originals): no distractor shares a pixel with an original.

Each original is edited by every evasion in ``EVASIONS`` (resize, JPEG, grayscale, brightness
and contrast, blur, noise, watermark, caption bars, padded canvases, crops, rotations with and
without expansion, 90 and 180 degree turns, mirror, and combinations of two), saved as JPEG
(quality 90 unless the evasion sets it), decoded and hashed as a matcher would.

A *method* is what the submitter stores for an original and what the matcher computes for a
query, compared at one PDQ distance (inclusive): a query matches an original when any of its
hashes is within the distance of any of the original's. Components:

- stored: ``plain`` (PDQ of the original), ``canon`` (PDQ after ``canonical.content_box``
  trims plain borders), ``variants`` (PDQ of ``variants.VARIANTS`` of the canonical original);
- query: ``plain``, ``dihedral`` (the eight rotations and mirrors), ``canon``, ``canon-dihedral``.

Reported per method: recall per evasion (share of originals whose edited copy matches its own
original), mean recall, and false matches: distractor x original pairs (every distractor
queried against every original's stored hashes) and cross pairs (every edited copy against every
*other* original), with the smallest distance among those pairs (the margin). Also: hashing time
per image for each component, storage per entry, and for PDQ and the four 64-bit hashes the
false matches among all pairs of distinct images (originals and distractors) at their default
distances and the largest distance that gives none.

Hashes are cached in the cache directory (by corpus item, evasion and ``VERSION``); work is
spread over ``--jobs`` processes (2 by default).

Usage::

    scripts/fetch-test-images
    PYTHONPATH=client python bench/robustness.py [--small] [--jobs 2] [--docs]

``--docs`` rewrites the marked section of docs/matching.md with the table.
``--small`` runs a handful of originals and evasions (tests/client/test_robustness.py).
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from consortium_client.canonical import canonical_image
from consortium_client.hashvalues import ALGORITHMS
from consortium_client.imaging import pdq_dihedral_hashes, pdq_hash, working_image
from consortium_client.variants import VARIANTS, Transform, cropped, turned

# Bump when an evasion, the canonicalisation or the variants change: cached hashes are keyed on it.
VERSION = "5"
REPOSITORY = Path(__file__).resolve().parent.parent
DOCS = REPOSITORY / "docs" / "matching.md"
BEGIN = "<!-- robustness table: written by bench/robustness.py --docs -->"
END = "<!-- end of robustness table -->"
PDQ_DISTANCE = 31
SIDE = 1024
# PDQ quality floors at which the per-algorithm false matches are counted (the server's
# PDQ_QUALITY_FLOOR flags a hash below it as low quality).
QUALITY_FLOORS = (0, 30, 50, 70)
TILE = 320

SKIMAGE = "usr/lib/python3/dist-packages/skimage/data/"
OPENCV = "usr/share/doc/opencv-doc/examples/data/"
MATE = "usr/share/backgrounds/mate/nature/"
LOMIRI = "usr/share/backgrounds/"
KDE = "usr/share/wallpapers/{}/contents/images/"

ORIGINALS_SMALL = [
    SKIMAGE + name
    for name in (
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "camera.png",
    )
]
ORIGINALS = [
    *ORIGINALS_SMALL,
    SKIMAGE + "hubble_deep_field.jpg",
    SKIMAGE + "retina.jpg",
    *(
        LOMIRI + name
        for name in (
            "Picture_1A_by_freespace.jpg",
            "free_by_Peter_Nerlich.jpg",
            "analogpattern_by_Peter_Nerlich.jpg",
        )
    ),
    *(
        MATE + name + ".jpg"
        for name in (
            "Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings "
            "Wood YellowFlower"
        ).split()
    ),
    *(
        OPENCV + name
        for name in (
            "aero1.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg "
            "ela_original.jpg fruits.jpg graf1.png home.jpg left.jpg leuvenA.jpg "
            "licenseplate_motion.jpg messi5.jpg orange.jpg"
        ).split()
    ),
    KDE.format("Altai") + "1080x1920.png",
    *(
        KDE.format(name) + "1280x1024.jpg"
        for name in (
            "Autumn BytheWater ColdRipple DarkestHour EveningGlow FallenLeaf Grey Kite "
            "OneStandsOut Path summer_1am"
        ).split()
    ),
]
TILED_SMALL = [LOMIRI + "Bridge_by_Sander_Klootwijk.jpg", LOMIRI + "Dragonfly_by_Bolly.jpg"]
TILED = [
    *TILED_SMALL,
    *(
        LOMIRI + name
        for name in (
            "Kleiber_by_Lukas_Baubkus.jpg",
            "seeding_by_Clements_Engelhardt.jpg",
            "sunset_by_Aitzol_Berasategi.jpg",
            "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "aitzgorri_by_Aitzol_Berasategi.jpg",
            "life_by_Aitzol_Berasategi.jpg",
            "Infinite-Sea_by_Aury88.jpg",
            "friends_by_Aitzol_Berasategi.jpg",
            "Wine_by_Jakkub_Mede.jpg",
            "Picture_0B_by_freespace.jpg",
        )
    ),
]


# -- evasions ----------------------------------------------------------------------------------

Evasion = Callable[[Image.Image], Image.Image]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(max(10, size))


def resize(scale_x: float, scale_y: float | None = None) -> Evasion:
    def apply(image: Image.Image) -> Image.Image:
        width = max(1, round(image.width * scale_x))
        height = max(1, round(image.height * (scale_x if scale_y is None else scale_y)))
        return image.resize((width, height), Image.Resampling.BICUBIC)

    return apply


def caption(where: str, share: float, fill: str, ink: str) -> Evasion:
    """A plain band of `share` of the height, with a line of text, above or below."""

    def apply(image: Image.Image) -> Image.Image:
        band = round(image.height * share)
        canvas = Image.new("RGB", (image.width, image.height + band), fill)
        top = band if where == "top" else 0
        canvas.paste(image, (0, top))
        draw = ImageDraw.Draw(canvas)
        y = 0 if where == "top" else image.height
        text = "when you see it... #relatable"
        draw.text((image.width // 20, y + band // 4), text, fill=ink, font=font(band * 2 // 5))
        return canvas

    return apply


def pad(share: float, fill: str, offset: tuple[float, float] = (0.5, 0.5)) -> Evasion:
    """The image on a plain canvas `share` larger each way, placed at `offset` of the margin."""

    def apply(image: Image.Image) -> Image.Image:
        width, height = round(image.width * (1 + share)), round(image.height * (1 + share))
        canvas = Image.new("RGB", (width, height), fill)
        x = round((width - image.width) * offset[0])
        y = round((height - image.height) * offset[1])
        canvas.paste(image, (x, y))
        return canvas

    return apply


def crop(left: float, top: float, right: float, bottom: float) -> Evasion:
    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        return image.crop(
            (round(w * left), round(h * top), w - round(w * right), h - round(h * bottom))
        )

    return apply


def rotate(degrees: float, expand: bool) -> Evasion:
    def apply(image: Image.Image) -> Image.Image:
        return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=expand)

    return apply


def transpose(method: Image.Transpose) -> Evasion:
    return lambda image: image.transpose(method)


def noise(sigma: float) -> Evasion:
    def apply(image: Image.Image) -> Image.Image:
        generator = np.random.default_rng(7)
        pixels = np.asarray(image, dtype=np.float32)
        noisy = pixels + generator.normal(0, sigma, pixels.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    return apply


def watermark(image: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = image.width // 12
    draw.text(
        (image.width // 6, image.height // 2 - size // 2),
        "@reposted_daily",
        fill=(255, 255, 255, 140),
        font=font(size),
    )
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def then(first: Evasion, second: Evasion) -> Evasion:
    return lambda image: second(first(image))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# name -> (edit, JPEG quality of the copy). Crops are per side; rotations in degrees
# anticlockwise; "expand" keeps the whole picture on a larger canvas with black corners.
EVASIONS: dict[str, tuple[Evasion, int]] = {
    "resize 25%": (resize(0.25), 90),
    "resize 50%": (resize(0.5), 90),
    "resize 200%": (resize(2.0), 90),
    "stretch 130% wide": (resize(1.3, 1.0), 90),
    "JPEG q30": (lambda image: image, 30),
    "JPEG q10": (lambda image: image, 10),
    "grayscale": (lambda image: image.convert("L").convert("RGB"), 90),
    "brightness +30%": (lambda image: ImageEnhance.Brightness(image).enhance(1.3), 90),
    "contrast -30%": (lambda image: ImageEnhance.Contrast(image).enhance(0.7), 90),
    "blur r2": (lambda image: image.filter(ImageFilter.GaussianBlur(2)), 90),
    "noise s10": (noise(10), 90),
    "text watermark": (watermark, 90),
    "caption bar top 15% white": (caption("top", 0.15, "white", "black"), 90),
    "caption bar bottom 20% black": (caption("bottom", 0.2, "black", "white"), 90),
    "padded canvas 20% white": (pad(0.2, "white"), 90),
    "padded canvas 40% grey off-centre": (pad(0.4, "#808080", (0.2, 0.7)), 90),
    "crop 5% each side": (crop(0.05, 0.05, 0.05, 0.05), 90),
    "crop 10% each side": (crop(0.1, 0.1, 0.1, 0.1), 90),
    "crop 10% left": (crop(0.1, 0, 0, 0), 90),
    "crop 7% top and right": (crop(0, 0.07, 0.07, 0), 90),
    "rotate 2": (rotate(2, False), 90),
    "rotate -3": (rotate(-3, False), 90),
    "rotate 5": (rotate(5, False), 90),
    "rotate 3 expand": (rotate(3, True), 90),
    "rotate -5 expand": (rotate(-5, True), 90),
    "rotate 90": (transpose(Image.Transpose.ROTATE_90), 90),
    "rotate 180": (transpose(Image.Transpose.ROTATE_180), 90),
    "mirror": (transpose(Image.Transpose.FLIP_LEFT_RIGHT), 90),
    "caption bar + JPEG q50": (caption("bottom", 0.15, "white", "black"), 50),
    "crop 5% + resize 50%": (then(crop(0.05, 0.05, 0.05, 0.05), resize(0.5)), 90),
    "mirror + crop 10% left": (
        then(crop(0.1, 0, 0, 0), transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        90,
    ),
    "padded canvas + grayscale": (
        then(pad(0.3, "black"), lambda image: image.convert("L").convert("RGB")),
        90,
    ),
    "rotate 3 + caption bar": (then(rotate(3, False), caption("top", 0.15, "white", "black")), 90),
    "watermark + resize 50%": (then(watermark, resize(0.5)), 90),
}
# A second set of evasions, with parameters off the grid of `CANDIDATES`, reported in a table
# of their own: variants chosen on `EVASIONS` alone fit its exact parameters (after about ten
# the harness's recall stops growing, and the rest would be chosen by their order), so
# `--select` counts both.
UNSEEN: dict[str, tuple[Evasion, int]] = {
    "crop 3% each side": (crop(0.03, 0.03, 0.03, 0.03), 90),
    "crop 7% each side": (crop(0.07, 0.07, 0.07, 0.07), 90),
    "crop 8% top": (crop(0, 0.08, 0, 0), 90),
    "crop 12% right": (crop(0, 0, 0.12, 0), 90),
    "crop 6% bottom and left": (crop(0.06, 0, 0, 0.06), 90),
    "crop 4% left, 9% bottom": (crop(0.04, 0, 0, 0.09), 90),
    "rotate -2": (rotate(-2, False), 90),
    "rotate 4": (rotate(4, False), 90),
    "rotate -7": (rotate(-7, False), 90),
    "rotate 2 expand": (rotate(2, True), 90),
    "rotate -4 expand": (rotate(-4, True), 90),
    "rotate 8 expand": (rotate(8, True), 90),
    "rotate 4 + crop 5% each side": (then(rotate(4, False), crop(0.05, 0.05, 0.05, 0.05)), 90),
}
EVASIONS_SMALL = [
    "JPEG q30",
    "caption bar top 15% white",
    "padded canvas 20% white",
    "crop 5% each side",
    "rotate -3",
    "rotate -5 expand",
    "mirror",
]


# The candidate variants `--select` chooses from, on a grid of its own (the evasions' exact
# parameters are partly on it, partly not: `UNSEEN` checks what is not). Every name of
# `VARIANTS` is among them, with the same transform.
def candidates() -> dict[str, Transform]:
    found: dict[str, Transform] = {}
    for share in (3, 5, 8, 10, 13, 16):
        found[f"crop-centre-{share}"] = cropped(*[share / 100] * 4)
    sides = {
        "top": (0, 1, 0, 0),
        "bottom": (0, 0, 0, 1),
        "left": (1, 0, 0, 0),
        "right": (0, 0, 1, 0),
    }
    corners = {
        "top-left": (1, 1, 0, 0),
        "top-right": (0, 1, 1, 0),
        "bottom-left": (1, 0, 0, 1),
        "bottom-right": (0, 0, 1, 1),
    }
    for share in (5, 10, 15):
        for name, sides_cut in (sides | corners).items():
            found[f"crop-{name}-{share}"] = cropped(*[share / 100 * cut for cut in sides_cut])
    for degrees in (1.5, 3, 4.5, 6):
        for sign, prefix in ((1, ""), (-1, "minus-")):
            label = f"{degrees:g}"
            found[f"rotate-{prefix}{label}"] = turned(sign * degrees)
            found[f"rotate-{prefix}{label}-expand"] = turned(sign * degrees, expand=True)
    missing = set(VARIANTS) - set(found)
    if missing:
        raise ValueError(f"VARIANTS not among the candidates: {sorted(missing)}")
    return found


CANDIDATES = candidates()


# -- hashing -----------------------------------------------------------------------------------

Hexes = list[str]


@dataclass
class Query:
    """What a matcher computes for one image."""

    plain: str
    quality: int
    dihedral: Hexes
    canon: str
    canon_dihedral: Hexes
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class Stored:
    """What a submitter stores for one original."""

    plain: str
    canon: str
    # PDQ of every one of CANDIDATES (VARIANTS among them), by name.
    candidates: dict[str, str]
    sixty_four: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)


def query_hashes(data: bytes) -> Query:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    working = working_image(data)
    seconds["decode"] = time.perf_counter() - clock
    clock = time.perf_counter()
    plain, quality = pdq_hash(working)
    seconds["pdq"] = time.perf_counter() - clock
    clock = time.perf_counter()
    dihedral, _ = pdq_dihedral_hashes(working)
    seconds["pdq dihedral"] = time.perf_counter() - clock
    clock = time.perf_counter()
    canonical = canonical_image(working)
    canon, _ = pdq_hash(canonical)
    seconds["canonical + pdq"] = time.perf_counter() - clock
    canon_dihedral, _ = pdq_dihedral_hashes(canonical)
    return Query(plain, quality, dihedral, canon, canon_dihedral, seconds)


def sixty_four_bit(image: Image.Image) -> dict[str, str]:
    gray = image.convert("L")
    return {
        "phash": str(imagehash.phash(gray)),
        "dhash": str(imagehash.dhash(gray)),
        "ahash": str(imagehash.average_hash(gray)),
        "whash": str(imagehash.whash(gray)),
    }


def stored_hashes(data: bytes) -> Stored:
    seconds: dict[str, float] = {}
    working = working_image(data)
    plain, _ = pdq_hash(working)
    canonical = canonical_image(working)
    canon, _ = pdq_hash(canonical)
    clock = time.perf_counter()
    variants = [pdq_hash(transform(working))[0] for transform in VARIANTS.values()]
    seconds["variants"] = time.perf_counter() - clock
    clock = time.perf_counter()
    sixty_four = sixty_four_bit(working)
    seconds["phash+dhash+ahash+whash"] = time.perf_counter() - clock
    known = dict(zip(VARIANTS, variants, strict=True))
    pool = {
        name: known.get(name) or pdq_hash(transform(working))[0]
        for name, transform in CANDIDATES.items()
    }
    return Stored(plain, canon, pool, sixty_four, seconds)


def load_original(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.draft("RGB", (SIDE * 2, SIDE * 2))
        rgb = image.convert("RGB")
    rgb.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    return rgb


def original_work(item: tuple[Path, list[str]]) -> tuple[Stored, dict[str, Query]]:
    path, evasions = item
    original = load_original(path)
    stored = stored_hashes(jpeg_bytes(original, 95))
    queries = {}
    for name in evasions:
        edit, quality = (EVASIONS | UNSEEN)[name]
        queries[name] = query_hashes(jpeg_bytes(edit(original), quality))
    return stored, queries


def tiles(path: Path) -> Iterable[Image.Image]:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    for top in range(0, rgb.height - TILE + 1, TILE):
        for left in range(0, rgb.width - TILE + 1, TILE):
            yield rgb.crop((left, top, left + TILE, top + TILE))


def distractor_work(path: Path) -> list[tuple[Query, dict[str, str]]]:
    out = []
    for tile in tiles(path):
        data = jpeg_bytes(tile, 90)
        out.append((query_hashes(data), sixty_four_bit(working_image(data))))
    return out


# -- distances ---------------------------------------------------------------------------------


def packed(hexes: list[str]) -> npt.NDArray[np.uint64]:
    raw = np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), dtype=">u8")
    return raw.astype(np.uint64).reshape(len(hexes), -1)


def distances(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """All pairwise Hamming distances between rows of `a` and of `b`."""
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    for word in range(a.shape[1]):
        out += np.bitwise_count(a[:, word, None] ^ b[None, :, word])
    return out


STORED = {
    "plain": lambda s: [s.plain],
    "canon": lambda s: [s.canon],
    "variants": lambda s: [s.candidates[name] for name in VARIANTS],
}
QUERY = {
    "plain": lambda q: [q.plain],
    "dihedral": lambda q: q.dihedral,
    "canon": lambda q: [q.canon],
    "canon-dihedral": lambda q: q.canon_dihedral,
}
# name -> (stored components, query components, PDQ distance)
METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "PDQ": (("plain",), ("plain",), PDQ_DISTANCE),
    "PDQ, dihedral query": (("plain",), ("dihedral",), PDQ_DISTANCE),
    "canonical": (("canon",), ("canon",), PDQ_DISTANCE),
    "canonical, dihedral query": (("plain", "canon"), ("dihedral", "canon-dihedral"), PDQ_DISTANCE),
    "variants": (("plain", "variants"), ("plain",), PDQ_DISTANCE),
    "variants, dihedral query": (("plain", "variants"), ("dihedral",), PDQ_DISTANCE),
    "canonical + variants": (("plain", "canon", "variants"), ("plain", "canon"), PDQ_DISTANCE),
    "canonical + variants, dihedral query": (
        ("plain", "canon", "variants"),
        ("dihedral", "canon-dihedral"),
        PDQ_DISTANCE,
    ),
}
CHOSEN = "canonical + variants, dihedral query"
# The chosen method without its variants: what `--select` adds variants to.
CHOSEN_WITHOUT = "canonical, dihedral query"


def hash_set(components: tuple[str, ...], table: dict, item: object) -> list[str]:
    out: list[str] = []
    for component in components:
        out.extend(table[component](item))
    return list(dict.fromkeys(out))


@dataclass
class MethodResult:
    recall: dict[str, float]
    distractor_false: int
    distractor_pairs: int
    cross_false: int
    cross_pairs: int
    margin: int
    stored_per_entry: float
    queries_per_image: float
    # Set for descriptor methods: what the table says instead of PDQ counts and distances.
    what: str = ""
    stored_text: str = ""
    query_text: str = ""
    margin_text: str = ""

    @property
    def mean_recall(self) -> float:
        return statistics.fmean(self.recall.values())


def nearest(queries: list[list[str]], stored: list[list[str]]) -> npt.NDArray[np.int64]:
    """[query image, original] -> the smallest distance between their hash sets."""
    query_rows = [i for i, hexes in enumerate(queries) for _ in hexes]
    stored_rows = [j for j, hexes in enumerate(stored) for _ in hexes]
    all_queries = packed([h for hexes in queries for h in hexes])
    all_stored = packed([h for hexes in stored for h in hexes])
    result = np.full((len(queries), len(stored)), 10_000, dtype=np.int64)
    query_index = np.asarray(query_rows)
    stored_index = np.asarray(stored_rows)
    for start in range(0, len(all_queries), 2048):
        block = distances(all_queries[start : start + 2048], all_stored)
        # Reduce over each original's stored hashes, then over each image's query hashes.
        per_original = np.full((block.shape[0], len(stored)), 10_000, dtype=np.int64)
        np.minimum.at(per_original, (slice(None), stored_index), block)
        np.minimum.at(result, query_index[start : start + 2048], per_original)
    return result


def evaluate(
    stored: list[Stored],
    queries: list[dict[str, Query]],
    distractors: list[Query],
    evasions: list[str],
    methods: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] | None = None,
) -> dict[str, MethodResult]:
    results = {}
    for name, (stored_parts, query_parts, radius) in (methods or METHODS).items():
        stored_sets = [hash_set(stored_parts, STORED, s) for s in stored]
        recall: dict[str, float] = {}
        cross_false = cross_pairs = 0
        margin = 256
        for evasion in evasions:
            query_sets = [hash_set(query_parts, QUERY, q[evasion]) for q in queries]
            near = nearest(query_sets, stored_sets)
            own = np.diag(near)
            recall[evasion] = float(np.mean(own <= radius))
            others = near[~np.eye(len(stored), dtype=bool)]
            cross_false += int(np.sum(others <= radius))
            cross_pairs += others.size
            margin = min(margin, int(others.min()))
        distractor_sets = [hash_set(query_parts, QUERY, d) for d in distractors]
        near = nearest(distractor_sets, stored_sets)
        margin = min(margin, int(near.min()))
        results[name] = MethodResult(
            recall=recall,
            distractor_false=int(np.sum(near <= radius)),
            distractor_pairs=near.size,
            cross_false=cross_false,
            cross_pairs=cross_pairs,
            margin=margin,
            stored_per_entry=statistics.fmean(len(s) for s in stored_sets),
            queries_per_image=statistics.fmean(
                len(hash_set(query_parts, QUERY, q[evasions[0]])) for q in queries
            ),
        )
    return results


def pairwise_false(values: list[str], limits: dict[int, int]) -> tuple[dict[int, int], int]:
    """False matches among all pairs of `values` at each distance, and the smallest distance."""
    rows = packed(values)
    near = distances(rows, rows)
    upper = near[np.triu_indices(len(values), k=1)]
    return {limit: int(np.sum(upper <= limit)) for limit in limits}, int(upper.min())


# -- local descriptors -------------------------------------------------------------------------
#
# A second kind of matching, for lists that opt in: OpenCV keypoints and binary descriptors of the
# grayscale image (longest side DESCRIPTOR_SIDE), matched against every stored original's at once
# (two nearest neighbours over the pool, Lowe's ratio test over the pool, so a descriptor that
# fits two originals equally counts for neither), voted per original, and verified per original
# with a RANSAC homography: the score of a pair is its count of inliers. Keypoint positions are
# stored with the descriptors (2 x uint16) because the verification needs them: that is what
# makes the stored data partly invertible (docs/security.md).

DESCRIPTOR_VERSION = "3"
DESCRIPTOR_SIDE = 512
DESCRIPTOR_FEATURES = 256
DESCRIPTOR_KINDS = ("orb", "akaze")
RATIO = 0.8
RANSAC_PIXELS = 5.0
# Fewer ratio-test survivors than this for an original: no homography is tried, the score is 0.
MIN_GOOD = 6
# A pair matches when its homography has at least this many inliers (chosen from the sweep).
MIN_INLIERS = 12
INLIER_SWEEP = (6, 8, 10, 12, 15, 20)


@dataclass
class Features:
    """Keypoint positions (n x 2, float32, in pixels of the reduced image) and descriptors."""

    points: npt.NDArray[np.float32]
    descriptors: npt.NDArray[np.uint8]

    @property
    def stored_bytes(self) -> int:
        # Positions as 2 x uint16 (the reduced image is at most DESCRIPTOR_SIDE a side).
        return int(self.descriptors.size) + 4 * len(self.points)


def detector(kind: str) -> cv2.Feature2D:
    if kind == "orb":
        return cv2.ORB_create(nfeatures=DESCRIPTOR_FEATURES)
    # AKAZE has no feature cap: keep the strongest DESCRIPTOR_FEATURES (below).
    return cv2.AKAZE_create()


def features(image: Image.Image, kind: str) -> Features:
    gray = image.convert("L")
    gray.thumbnail((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), Image.Resampling.LANCZOS)
    found = detector(kind)
    keypoints, descriptors = found.detectAndCompute(np.asarray(gray), None)
    if descriptors is None or not keypoints:
        # A flat image may have none (AKAZE's default threshold finds none on some).
        empty = np.zeros((0, found.descriptorSize()), np.uint8)
        return Features(np.zeros((0, 2), np.float32), empty)
    order = np.argsort([-k.response for k in keypoints], kind="stable")[:DESCRIPTOR_FEATURES]
    points = np.asarray([keypoints[i].pt for i in order], dtype=np.float32)
    return Features(points, np.ascontiguousarray(descriptors[order]))


@dataclass
class Pool:
    """Every stored original's features of one kind, stacked for one nearest-neighbour search."""

    descriptors: npt.NDArray[np.uint8]
    points: npt.NDArray[np.float32]
    owner: npt.NDArray[np.int64]
    originals: int


def pool(stored: list[Features]) -> Pool:
    return Pool(
        descriptors=np.concatenate([f.descriptors for f in stored]),
        points=np.concatenate([f.points for f in stored]),
        owner=np.concatenate([np.full(len(f.points), i, np.int64) for i, f in enumerate(stored)]),
        originals=len(stored),
    )


def inliers(query: Features, stored: Pool) -> npt.NDArray[np.int64]:
    """[original] -> inliers of the RANSAC homography from the query to that original."""
    scores = np.zeros(stored.originals, dtype=np.int64)
    if len(query.points) < MIN_GOOD:
        return scores
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, stored.descriptors, k=2)
    good: dict[int, dict[int, int]] = {}  # original -> stored row -> query row (one-to-one)
    for pair in pairs:
        if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance:
            row = pair[0].trainIdx
            good.setdefault(int(stored.owner[row]), {}).setdefault(row, pair[0].queryIdx)
    for original, rows in good.items():
        if len(rows) < MIN_GOOD:
            continue
        source = query.points[list(rows.values())]
        target = stored.points[list(rows)]
        _, mask = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_PIXELS)
        if mask is not None:
            scores[original] = int(mask.sum())
    return scores


@dataclass
class DescriptorScores:
    """Inlier counts of one query image, as is and mirrored, against every original, per kind."""

    plain: dict[str, npt.NDArray[np.int64]]
    mirrored: dict[str, npt.NDArray[np.int64]]
    seconds: dict[str, float] = field(default_factory=dict)


def descriptor_scores(data: bytes, pools: dict[str, Pool]) -> DescriptorScores:
    working = working_image(data)
    mirror = working.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    plain, mirrored, seconds = {}, {}, {}
    for kind, stored in pools.items():
        clock = time.perf_counter()
        query = features(working, kind)
        seconds[f"{kind} features"] = time.perf_counter() - clock
        clock = time.perf_counter()
        plain[kind] = inliers(query, stored)
        seconds[f"{kind} match + RANSAC, all originals"] = time.perf_counter() - clock
        mirrored[kind] = inliers(features(mirror, kind), stored)
    return DescriptorScores(plain, mirrored, seconds)


def stored_features(path: Path) -> dict[str, Features]:
    working = working_image(jpeg_bytes(load_original(path), 95))
    return {kind: features(working, kind) for kind in DESCRIPTOR_KINDS}


def original_descriptor_work(
    item: tuple[Path, list[str], dict[str, Pool]],
) -> dict[str, DescriptorScores]:
    path, evasions, pools = item
    original = load_original(path)
    out = {}
    for name in evasions:
        edit, quality = EVASIONS[name]
        out[name] = descriptor_scores(jpeg_bytes(edit(original), quality), pools)
    return out


def distractor_descriptor_work(item: tuple[Path, dict[str, Pool]]) -> list[DescriptorScores]:
    path, pools = item
    return [descriptor_scores(jpeg_bytes(tile, 90), pools) for tile in tiles(path)]


# -- running -----------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("CONSORTIUM_IMAGE_CACHE", REPOSITORY / ".data" / "images"))


def cached(key: str, compute: Callable[[], object]) -> object:
    path = cache_dir() / "hashes" / f"{VERSION}-{key.replace('/', '_')}.pickle"
    if path.exists():
        with path.open("rb") as file:
            return pickle.load(file)  # noqa: S301 - our own cache, written just below
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        pickle.dump(value, file)
    return value


@dataclass
class Run:
    stored: list[Stored]
    queries: list[dict[str, Query]]
    distractors: list[Query]
    distractor_sixty_four: list[dict[str, str]]
    evasions: list[str]
    unseen: list[str]
    originals: list[str]
    tiled: list[str]
    seconds: float
    # Local descriptors (empty unless asked for): stored features per original and kind, and
    # inlier counts of every edited copy and distractor against every original.
    features: list[dict[str, Features]] = field(default_factory=list)
    descriptor_queries: list[dict[str, DescriptorScores]] = field(default_factory=list)
    descriptor_distractors: list[DescriptorScores] = field(default_factory=list)
    descriptor_seconds: float = 0.0


def _original(item: tuple[Path, str, list[str]]) -> tuple[Stored, dict[str, Query]]:
    path, key, evasions = item
    return cached(key, lambda: original_work((path, evasions)))  # type: ignore[return-value]


def _tiled(item: tuple[Path, str]) -> list[tuple[Query, dict[str, str]]]:
    path, key = item
    return cached(key, lambda: distractor_work(path))  # type: ignore[return-value]


def _stored_features(item: tuple[Path, str]) -> dict[str, Features]:
    path, key = item
    return cached(key, lambda: stored_features(path))  # type: ignore[return-value]


def _original_descriptors(
    item: tuple[Path, str, list[str], dict[str, Pool]],
) -> dict[str, DescriptorScores]:
    path, key, evasions, pools = item
    return cached(key, lambda: original_descriptor_work((path, evasions, pools)))  # type: ignore[return-value]


def _tiled_descriptors(item: tuple[Path, str, dict[str, Pool]]) -> list[DescriptorScores]:
    path, key, pools = item
    return cached(key, lambda: distractor_descriptor_work((path, pools)))  # type: ignore[return-value]


def run_descriptors(result: Run, *, small: bool, jobs: int) -> None:
    """Adds the local-descriptor scores to `result` (a second pass: queries need every original)."""
    root = cache_dir() / "root"
    started = time.perf_counter()
    # Keys carry the descriptor settings' version and the set of originals the pool holds.
    suffix = f"d{DESCRIPTOR_VERSION}-{'small' if small else 'full'}"
    with ProcessPoolExecutor(max_workers=jobs) as pool_:
        result.features = list(
            pool_.map(
                _stored_features, [(root / p, f"features-{suffix}-{p}") for p in result.originals]
            )
        )
        pools = {kind: pool([f[kind] for f in result.features]) for kind in DESCRIPTOR_KINDS}
        result.descriptor_queries = list(
            pool_.map(
                _original_descriptors,
                [
                    (root / p, f"descriptors-{suffix}-{p}", result.evasions, pools)
                    for p in result.originals
                ],
            )
        )
        tile_sets = list(
            pool_.map(
                _tiled_descriptors,
                [(root / p, f"tile-descriptors-{suffix}-{p}", pools) for p in result.tiled],
            )
        )
    result.descriptor_distractors = [scores for tiles_ in tile_sets for scores in tiles_]
    result.descriptor_seconds = time.perf_counter() - started


def run(*, small: bool, jobs: int, descriptors: bool = False) -> Run:
    root = cache_dir() / "root"
    originals = ORIGINALS_SMALL if small else ORIGINALS
    tiled = TILED_SMALL if small else TILED
    evasions = EVASIONS_SMALL if small else list(EVASIONS)
    unseen = [] if small else list(UNSEEN)
    missing = [p for p in [*originals, *tiled] if not (root / p).exists()]
    if missing:
        sys.exit(
            f"missing {missing[0]} (and {len(missing) - 1} more): run scripts/fetch-test-images"
        )
    started = time.perf_counter()
    # One cache entry per original and evasion set, so --small reuses nothing it should not.
    suffix = "small" if small else "full"
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = list(
            pool.map(
                _original,
                [(root / p, f"original-{suffix}-{p}", evasions + unseen) for p in originals],
            )
        )
        tile_sets = list(pool.map(_tiled, [(root / p, f"tiles-{p}") for p in tiled]))
    result = Run(
        stored=[s for s, _ in done],
        queries=[q for _, q in done],
        distractors=[query for tiles_ in tile_sets for query, _ in tiles_],
        distractor_sixty_four=[bits for tiles_ in tile_sets for _, bits in tiles_],
        evasions=evasions,
        unseen=unseen,
        originals=originals,
        tiled=tiled,
        seconds=time.perf_counter() - started,
    )
    if descriptors:
        run_descriptors(result, small=small, jobs=jobs)
    return result


def pdq_matches(
    result: Run, method: str
) -> tuple[dict[str, npt.NDArray[np.bool_]], npt.NDArray[np.bool_]]:
    """A PDQ method's matches: [copy, original] per evasion, and [distractor, original]."""
    stored_parts, query_parts, radius = METHODS[method]
    stored_sets = [hash_set(stored_parts, STORED, s) for s in result.stored]
    per_evasion = {
        evasion: nearest(
            [hash_set(query_parts, QUERY, q[evasion]) for q in result.queries], stored_sets
        )
        <= radius
        for evasion in result.evasions
    }
    distractor_sets = [hash_set(query_parts, QUERY, d) for d in result.distractors]
    return per_evasion, nearest(distractor_sets, stored_sets) <= radius


# name -> (descriptor kind, also query the mirrored image, or-ed with the chosen PDQ method)
DESCRIPTOR_METHODS: dict[str, tuple[str, bool, bool]] = {
    "ORB": ("orb", False, False),
    "ORB, mirrored query too": ("orb", True, False),
    "AKAZE, mirrored query too": ("akaze", True, False),
    "chosen PDQ method, then ORB": ("orb", True, True),
    "chosen PDQ method, then AKAZE": ("akaze", True, True),
}


def descriptor_score(scores: DescriptorScores, kind: str, mirror: bool) -> npt.NDArray[np.int64]:
    if mirror:
        return np.maximum(scores.plain[kind], scores.mirrored[kind])
    return scores.plain[kind]


def evaluate_descriptors(result: Run, min_inliers: int = MIN_INLIERS) -> dict[str, MethodResult]:
    """Each of DESCRIPTOR_METHODS at `min_inliers`, scored as `evaluate` scores PDQ methods."""
    chosen, chosen_distractors = pdq_matches(result, CHOSEN)
    stored_chosen = statistics.fmean(
        len(hash_set(METHODS[CHOSEN][0], STORED, s)) for s in result.stored
    )
    out = {}
    for name, (kind, mirror, with_pdq) in DESCRIPTOR_METHODS.items():
        recall: dict[str, float] = {}
        cross_false = cross_pairs = 0
        worst = 0  # the most inliers of any pair that is not a copy of its original
        for evasion in result.evasions:
            score = np.stack(
                [descriptor_score(q[evasion], kind, mirror) for q in result.descriptor_queries]
            )
            matched = score >= min_inliers
            if with_pdq:
                matched |= chosen[evasion]
            recall[evasion] = float(np.mean(np.diag(matched)))
            others = ~np.eye(len(result.originals), dtype=bool)
            cross_false += int(np.sum(matched[others]))
            cross_pairs += int(others.sum())
            worst = max(worst, int(score[others].max()))
        distractor_score = np.stack(
            [descriptor_score(d, kind, mirror) for d in result.descriptor_distractors]
        )
        distractor_matched = distractor_score >= min_inliers
        if with_pdq:
            distractor_matched |= chosen_distractors
        worst = max(worst, int(distractor_score.max()))
        kilobytes = statistics.fmean(f[kind].stored_bytes for f in result.features) / 1024
        keypoints = statistics.fmean(len(f[kind].points) for f in result.features)
        stored = f"{keypoints:.0f} kp, {kilobytes:.1f} KiB"
        out[name] = MethodResult(
            recall=recall,
            distractor_false=int(distractor_matched.sum()),
            distractor_pairs=distractor_matched.size,
            cross_false=cross_false,
            cross_pairs=cross_pairs,
            margin=worst,
            stored_per_entry=0.0,
            queries_per_image=0.0,
            what=(
                f"{name} ({DESCRIPTOR_FEATURES} keypoints at {DESCRIPTOR_SIDE} px, "
                f"ratio {RATIO}, RANSAC homography, >= {min_inliers} inliers"
                + (f"; or-ed with {CHOSEN}" if with_pdq else "")
                + ")"
            ),
            stored_text=(f"{stored_chosen:.1f} + {stored}" if with_pdq else stored),
            query_text=("2 images" if mirror else "1 image") + (" + PDQ" if with_pdq else ""),
            margin_text=f"{worst} inliers",
        )
    return out


def descriptor_sweep_report(result: Run) -> str:
    rows = [
        "| descriptor, mirrored query too: min inliers | "
        + " | ".join(f"{kind}: mean recall, false (distractor, cross)" for kind in DESCRIPTOR_KINDS)
        + " |",
        "|---:|" + "---|" * len(DESCRIPTOR_KINDS),
    ]
    for threshold in INLIER_SWEEP:
        methods = evaluate_descriptors(result, threshold)
        cells = []
        for kind in DESCRIPTOR_KINDS:
            name = next(
                n
                for n, (k, mirror, pdq) in DESCRIPTOR_METHODS.items()
                if k == kind and mirror and not pdq
            )
            m = methods[name]
            cells.append(f"{m.mean_recall:.3f}, {m.distractor_false}, {m.cross_false}")
        rows.append(f"| {threshold} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def report(result: Run, methods: dict[str, MethodResult]) -> str:
    lines = []
    names = list(methods)
    short = {name: f"M{i + 1}" for i, name in enumerate(names)}
    lines.append(
        f"{len(result.stored)} originals, {len(result.evasions)} evasions, "
        f"{len(result.distractors)} distractors (tiles of {len(result.tiled)} other photographs); "
        f"PDQ distance {PDQ_DISTANCE} inclusive.\n"
    )
    lines.append("| method | stored per entry | query hashes | what |")
    lines.append("|---|---|---|---|")
    for name in names:
        m = methods[name]
        if m.what:
            lines.append(f"| {short[name]} | {m.stored_text} | {m.query_text} | {m.what} |")
            continue
        stored_parts, query_parts, _ = METHODS[name]
        lines.append(
            f"| {short[name]} | {m.stored_per_entry:.1f} | {m.queries_per_image:.1f} | {name} "
            f"(stored: {', '.join(stored_parts)}; query: {', '.join(query_parts)}) |"
        )
    lines.append("")
    lines.append("| evasion | " + " | ".join(short[n] for n in names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for evasion in result.evasions:
        cells = " | ".join(f"{methods[n].recall[evasion]:.2f}" for n in names)
        lines.append(f"| {evasion} | {cells} |")
    lines.append(
        "| **mean recall** | "
        + " | ".join(f"**{methods[n].mean_recall:.3f}**" for n in names)
        + " |"
    )
    lines.append(
        "| false matches, distractor x original | "
        + " | ".join(f"{methods[n].distractor_false}" for n in names)
        + " |"
    )
    lines.append(
        "| false matches, cross pairs | "
        + " | ".join(f"{methods[n].cross_false}" for n in names)
        + " |"
    )
    lines.append(
        "| smallest distance (most inliers), non-matching pairs | "
        + " | ".join(methods[n].margin_text or f"{methods[n].margin}" for n in names)
        + " |"
    )
    any_method = methods[names[0]]
    lines.append(
        f"\nPairs: {any_method.distractor_pairs:,} distractor x original and "
        f"{any_method.cross_pairs:,} cross (every edited copy against every other original)."
    )
    return "\n".join(lines)


def unseen_report(result: Run) -> str:
    """Recall of the chosen method, and of it without variants, on the second set of evasions
    (parameters off the candidates' grid)."""
    parts = {CHOSEN: METHODS[CHOSEN], "canonical, dihedral query": METHODS[CHOSEN_WITHOUT]}
    methods = evaluate(result.stored, result.queries, result.distractors, result.unseen, parts)
    rows = [
        "| evasion (not on the candidates' grid) | " + " | ".join(parts) + " |",
        "|---|" + "---:|" * len(parts),
    ]
    for evasion in result.unseen:
        rows.append(
            f"| {evasion} | "
            + " | ".join(f"{methods[n].recall[evasion]:.2f}" for n in parts)
            + " |"
        )
    rows.append(
        "| **mean recall** | "
        + " | ".join(f"**{methods[n].mean_recall:.3f}**" for n in parts)
        + " |"
    )
    rows.append(
        "| false matches (distractor, cross) | "
        + " | ".join(f"{methods[n].distractor_false}, {methods[n].cross_false}" for n in parts)
        + " |"
    )
    return "\n".join(rows)


def variant_selection(result: Run, *, count: int, seed: int) -> tuple[list[str], str]:
    """Greedy choice of `count` of CANDIDATES by the recall each adds to the chosen method
    without variants over EVASIONS and UNSEEN, on a random half of the originals (`seed`),
    then checked on the other half. A candidate that comes within the distance of any pair
    that is not a copy (a distractor, or another original's edited copy) is never chosen.
    Returns the chosen names and a table of each step."""
    stored_parts, query_parts, radius = METHODS[CHOSEN_WITHOUT]
    names = list(CANDIDATES)
    originals = len(result.stored)
    groups = {"evasions": result.evasions, "unseen": result.unseen}
    # [original, evasion, candidate]: the edited copy's query hashes reach the candidate.
    reach: dict[str, npt.NDArray[np.bool_]] = {}
    base: dict[str, npt.NDArray[np.bool_]] = {}
    margin = np.full(len(names), 10_000, dtype=np.int64)
    distractor_rows = packed(
        [h for d in result.distractors for h in hash_set(query_parts, QUERY, d)]
    )
    for group, evasions in groups.items():
        reach[group] = np.zeros((originals, len(evasions), len(names)), dtype=bool)
        base[group] = np.zeros((originals, len(evasions)), dtype=bool)
    for i, stored in enumerate(result.stored):
        own = packed(hash_set(stored_parts, STORED, stored))
        pool = packed([stored.candidates[name] for name in names])
        for group, evasions in groups.items():
            for j, evasion in enumerate(evasions):
                rows = packed(hash_set(query_parts, QUERY, result.queries[i][evasion]))
                base[group][i, j] = distances(rows, own).min() <= radius
                reach[group][i, j] = distances(rows, pool).min(axis=0) <= radius
        others = packed(
            [
                h
                for k, queries in enumerate(result.queries)
                if k != i
                for evasion in result.evasions
                for h in hash_set(query_parts, QUERY, queries[evasion])
            ]
        )
        nearest_other = np.minimum(
            distances(distractor_rows, pool).min(axis=0), distances(others, pool).min(axis=0)
        )
        margin = np.minimum(margin, nearest_other)
    order = np.random.default_rng(seed).permutation(originals)
    halves = {"train": order[: originals // 2], "held-out": order[originals // 2 :]}

    def recall(group: str, rows: npt.NDArray[np.int64], chosen: list[int]) -> float:
        matched = base[group][rows].copy()
        for candidate in chosen:
            matched |= reach[group][rows][:, :, candidate]
        return float(matched.mean()) if matched.size else 0.0

    def chosen_on(rows: npt.NDArray[np.int64], chosen: list[int]) -> float:
        # Both sets of evasions count: on the harness's own alone, the recall stops growing
        # after about ten variants, and further ones would be chosen by their order alone.
        both = len(result.evasions) + len(result.unseen)
        return (
            recall("evasions", rows, chosen) * len(result.evasions)
            + recall("unseen", rows, chosen) * len(result.unseen)
        ) / both

    everyone = np.arange(originals)
    allowed = [c for c in range(len(names)) if margin[c] > radius]
    chosen: list[int] = []
    lines = [
        f"Greedy choice of variants (seed {seed}: {len(halves['train'])} originals to choose "
        f"on, {len(halves['held-out'])} held out; {len(allowed)} of {len(names)} candidates "
        f"never within {radius} of a pair that is not a copy). Recall of "
        f"{CHOSEN_WITHOUT} plus the variants so far:\n",
        "| step | variant added | nearest non-copy | evasions: train | held-out | all "
        "| more evasions: train | held-out | all |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cells(chosen: list[int]) -> str:
        return " | ".join(
            f"{recall(group, rows, chosen):.3f}"
            for group in groups
            for rows in (halves["train"], halves["held-out"], everyone)
        )

    lines.append(f"| 0 | (none) | | {cells([])} |")
    for step in range(1, count + 1):
        best = max(
            (c for c in allowed if c not in chosen),
            key=lambda c: (chosen_on(halves["train"], [*chosen, c]), -c),
        )
        chosen.append(best)
        lines.append(f"| {step} | {names[best]} | {margin[best]} | {cells(chosen)} |")
    current = [names.index(name) for name in VARIANTS]
    lines.append(f"| | all {len(allowed)} allowed candidates | | {cells(allowed)} |")
    lines.append(f"| | `VARIANTS` ({len(VARIANTS)}) | {margin[current].min()} | {cells(current)} |")
    return [names[c] for c in chosen], "\n".join(lines)


def sweep_report(result: Run) -> str:
    """The chosen method at other PDQ distances: what a looser rule would buy, and cost."""
    rows = [
        f"| {CHOSEN}: distance | mean recall | false matches (distractor, cross) |",
        "|---:|---:|---|",
    ]
    stored_parts, query_parts, _ = METHODS[CHOSEN]
    for radius in (24, 31, 40, 48, 56):
        METHODS["sweep"] = (stored_parts, query_parts, radius)
        try:
            only = {"sweep": METHODS["sweep"]}
            m = evaluate(result.stored, result.queries, result.distractors, result.evasions, only)
        finally:
            del METHODS["sweep"]
        rows.append(
            f"| {radius} | {m['sweep'].mean_recall:.3f} | "
            f"{m['sweep'].distractor_false}, {m['sweep'].cross_false} |"
        )
    return "\n".join(rows)


def timing_report(result: Run) -> str:
    totals: dict[str, list[float]] = {}
    for queries in result.queries:
        for query in queries.values():
            for step, seconds in query.seconds.items():
                totals.setdefault(step, []).append(seconds)
    for stored in result.stored:
        for step, seconds in stored.seconds.items():
            totals.setdefault(step, []).append(seconds)
    for scores in result.descriptor_queries:
        for score in scores.values():
            for step, seconds in score.seconds.items():
                totals.setdefault(step, []).append(seconds)
    rows = ["| step | median ms per image |", "|---|---:|"]
    for step, values in totals.items():
        extra = f" ({len(VARIANTS)} variants)" if step == "variants" else ""
        rows.append(f"| {step}{extra} | {statistics.median(values) * 1000:.1f} |")
    return "\n".join(rows)


def sixty_four_report(result: Run) -> str:
    """False matches among all pairs of distinct images (originals and distractors), per
    algorithm at its default distance (`hashvalues.ALGORITHMS`), with the largest distance that
    gives none, over all images and over those at or above each PDQ quality floor."""
    images = [s.sixty_four for s in result.stored] + result.distractor_sixty_four
    low = sum(d.quality < QUALITY_FLOORS[-1] for d in result.distractors)
    pairs = len(images) * (len(images) - 1) // 2
    rows = [
        f"{len(images)} images ({pairs:,} pairs of different images; {low} distractor tiles have "
        f"PDQ quality under {QUALITY_FLOORS[-1]}; originals count as above every floor).\n",
        "| algorithm (default distance) | PDQ quality floor | images | false matches at default "
        "| largest distance with none | smallest distance |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for algorithm in ("pdq", "phash", "dhash", "ahash", "whash"):
        default = ALGORITHMS[algorithm].default_distance
        for floor in QUALITY_FLOORS:
            kept = [i for i, d in enumerate(result.distractors) if d.quality >= floor]
            if algorithm == "pdq":
                values = [s.plain for s in result.stored] + [
                    result.distractors[i].plain for i in kept
                ]
            else:
                subset = [s.sixty_four for s in result.stored]
                subset += [result.distractor_sixty_four[i] for i in kept]
                values = [image[algorithm] for image in subset]
            counts, smallest = pairwise_false(values, {default: 0})
            none_below = "none" if smallest == 0 else str(smallest - 1)
            rows.append(
                f"| {algorithm} ({default}) | {floor} | {len(values)} | {counts[default]} "
                f"| {none_below} | {smallest} |"
            )
    return "\n".join(rows)


def write_docs(text: str) -> None:
    content = DOCS.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    DOCS.write_text(content[:start] + "\n" + text + "\n" + content[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--docs", action="store_true")
    parser.add_argument(
        "--select",
        type=int,
        metavar="N",
        help="choose N variants greedily among the candidates (train and held-out halves)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the halves of --select")
    parser.add_argument(
        "--no-descriptors",
        action="store_true",
        help="skip the local-descriptor methods (OpenCV ORB and AKAZE), the slowest part",
    )
    arguments = parser.parse_args()
    descriptors = not arguments.no_descriptors
    result = run(small=arguments.small, jobs=arguments.jobs, descriptors=descriptors)
    if arguments.select:
        _, table = variant_selection(result, count=arguments.select, seed=arguments.seed)
        print(table)
        return
    methods = evaluate(result.stored, result.queries, result.distractors, result.evasions)
    sections = []
    if descriptors:
        methods |= evaluate_descriptors(result)
    sections.append(report(result, methods))
    sections.append("The chosen method at other distances:\n\n" + sweep_report(result))
    if result.unseen:
        sections.append(
            "More evasions, with parameters off the candidates' grid:\n\n" + unseen_report(result)
        )
    if descriptors:
        sections.append(
            "Local descriptors at other inlier thresholds:\n\n" + descriptor_sweep_report(result)
        )
    sections.append("Hashing time (one core):\n\n" + timing_report(result))
    sections.append("Distinct images' distances, per algorithm:\n\n" + sixty_four_report(result))
    text = "\n\n".join(sections)
    print(text)
    print(f"\n(hashed or loaded from cache in {result.seconds:.1f} s)")
    if descriptors:
        print(f"(descriptors computed or loaded in {result.descriptor_seconds:.1f} s)")
    if arguments.docs:
        write_docs(text)


if __name__ == "__main__":
    main()
