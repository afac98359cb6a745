"""Images sent to the server are hashed in memory and dropped; bad ones are refused."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from django.db import connection
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from hashes.image_views import hashing_slots
from tests.conftest import assert_refusal_audited, problem, store_counts
from tests.test_matching import encode, match_image, picture


def _files_under(directory: Path) -> dict[Path, float]:
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root, name)
            try:
                found[path] = path.stat().st_mtime
            except OSError:
                continue
    return found


_WRITES: list[str] = []
_WATCHING = threading.Event()


def _audit(event: str, args: tuple) -> None:
    if _WATCHING.is_set() and event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing:
            _WRITES.append(str(path))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one is idle unless watching


@contextmanager
def files_opened_for_writing() -> Iterator[list[str]]:
    """Every file opened for writing in this process while the block runs."""
    _WRITES.clear()
    _WATCHING.set()
    try:
        yield _WRITES
    finally:
        _WATCHING.clear()


def _database_text_containing(needles: list[str]) -> list[str]:
    """Tables whose rows, as text, contain any of `needles` (PostgreSQL)."""
    hits = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - catalogue names
            for (row,) in cursor.fetchall():
                if any(needle in row for needle in needles):
                    hits.append(table)
                    break
    return hits


def test_an_uploaded_image_leaves_no_trace(alice, shared_list, caplog, settings) -> None:
    """The upload carries a random marker; after matching (and after a refused upload) the
    marker is in no table, log record, temporary file or Redis key."""
    settings.IMAGE_MAX_BYTES = 4 * 1024 * 1024
    marker = secrets.token_hex(24)
    info = PngInfo()
    info.add_text("marker", marker)
    # Large enough that Django's default handlers would have spilled it to a temporary file.
    data = encode(picture(seed=7, size=1000), "PNG", pnginfo=info, compress_level=0)
    assert len(data) > 2_621_440
    needles = [marker, base64.b64encode(data[:48]).decode(), data[:48].hex()]
    temporary = Path(tempfile.gettempdir())
    before = _files_under(temporary)
    caplog.set_level(logging.DEBUG)

    with files_opened_for_writing() as written:
        assert match_image(alice, data).status_code == 200
        assert match_image(alice, data[: len(data) // 2]).status_code == 422  # truncated
    assert written == []

    assert _database_text_containing(needles) == []
    assert not any(marker in record.getMessage() for record in caplog.records)
    changed = [p for p, t in _files_under(temporary).items() if before.get(p) != t]
    for path in changed:
        try:
            content = path.read_bytes()
        except OSError:
            continue
        assert marker.encode() not in content, path
    broker = redis.Redis.from_url(settings.REDIS_URL)
    for key in broker.scan_iter(count=1000):
        value = broker.dump(key) or b""
        assert marker.encode() not in key
        assert marker.encode() not in value


def _bomb() -> bytes:
    # A PNG that declares 30000 x 30000 pixels but compresses to a few kilobytes.
    return encode(Image.new("1", (30000, 30000)), "PNG")


@pytest.mark.parametrize(
    ("make", "status", "slug"),
    [
        pytest.param(_bomb, 422, "image-too-many-pixels", id="decompression-bomb"),
        pytest.param(lambda: encode(picture(seed=8))[:300], 422, "image-truncated", id="truncated"),
        pytest.param(
            lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
            415,
            "not-an-image",
            id="svg",
        ),
        pytest.param(lambda: secrets.token_bytes(5000), 415, "not-an-image", id="random-bytes"),
    ],
)
def test_bad_uploads_are_refused_and_the_server_stays_up(
    alice, shared_list, make, status, slug
) -> None:
    response = match_image(alice, make())
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["type"] == f"urn:consortium:problem:{slug}"
    assert match_image(alice, encode(picture(seed=9))).status_code == 200


def test_an_upload_over_the_byte_cap_is_413(alice, shared_list, settings) -> None:
    settings.IMAGE_MAX_BYTES = 10_000
    response = match_image(alice, encode(picture(seed=10), compress_level=0))
    assert response.status_code == 413
    assert json.loads(response.content)["type"] == "urn:consortium:problem:image-too-large"


def test_a_multipart_match_without_an_image_is_a_problem(alice, shared_list) -> None:
    response = alice.http.post(
        "/api/v1/match", {"note": "x"}, HTTP_AUTHORIZATION=f"Bearer {alice.api_key}"
    )
    assert response.status_code == 400
    assert json.loads(response.content)["type"] == "urn:consortium:problem:image-missing"


@pytest.mark.parametrize(
    ("path", "action"), [("/api/v1/match", "match"), ("/api/v1/hashes", "image.hash")]
)
def test_image_hashing_past_the_concurrency_limit_is_429_and_other_requests_answer(
    alice, shared_list, settings, path, action
) -> None:
    """With every slot held (as by images being hashed in other threads), an image is refused
    at once with a Retry-After; hash matching still answers; a freed slot hashes again."""
    settings.IMAGE_HASH_CONCURRENCY = 2
    settings.IMAGE_HASH_WAIT = 0.05
    data = encode(picture(seed=11))
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.api_key}"}
    slots = hashing_slots()
    for _ in range(settings.IMAGE_HASH_CONCURRENCY):
        assert slots.acquire(blocking=False)
    try:
        before = store_counts()
        response = alice.http.post(path, {"image": io.BytesIO(data)}, **auth)
        assert response.status_code == 429
        assert problem(response) == "hashing-busy"
        assert int(response["Retry-After"]) >= 1
        assert_refusal_audited(
            action=action, status=429, slug="hashing-busy", partner=alice.partner
        )
        assert store_counts() == before
        hashes = {"hashes": [{"algorithm": "pdq", "value": "0" * 64}]}
        matched = alice.http.post(
            "/api/v1/match", json.dumps(hashes), content_type="application/json", **auth
        )
        assert matched.status_code == 200, matched.content
    finally:
        for _ in range(settings.IMAGE_HASH_CONCURRENCY):
            slots.release()
    response = alice.http.post(path, {"image": io.BytesIO(data)}, **auth)
    assert response.status_code == 200, response.content


def test_the_issues_small_7000x7000_png_is_hashed(alice, shared_list) -> None:
    """The file that stalled the server: a few kilobytes declaring 49 megapixels, under the
    cap. It is hashed from a working image (tests/client/test_imaging.py bounds the work)."""
    image = Image.new("L", (7000, 7000), 128)
    ImageDraw.Draw(image).ellipse((1000, 1500, 5000, 6000), fill=40)
    data = encode(image, "PNG")
    assert len(data) < 100_000
    response = alice.http.post(
        "/api/v1/hashes",
        {"image": io.BytesIO(data), "dihedral": "true"},
        HTTP_AUTHORIZATION=f"Bearer {alice.api_key}",
    )
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert (body["format"], body["width"], body["height"]) == ("PNG", 7000, 7000)
    assert len(body["pdq_dihedral"]) == 8
