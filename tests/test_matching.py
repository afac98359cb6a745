"""Matching through HTTP: hashes and images, radii, visibility, revocation."""

from __future__ import annotations

import io
import json
import secrets
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from consortium_client.imaging import image_hashes
from hashes.models import HashList
from tests.conftest import PartnerClient, partner_client
from tests.factories import HashListFactory


def flip(value: str, bits: int) -> str:
    """`value` with its first `bits` bits inverted."""
    number = int(value, 16) ^ (((1 << bits) - 1) << (len(value) * 4 - bits))
    return f"{number:0{len(value)}x}"


def match(client: PartnerClient, hashes: list[tuple[str, str]]) -> list[dict[str, Any]]:
    body = json.dumps({"hashes": [{"algorithm": a, "value": v} for a, v in hashes]}).encode()
    response = client.post("/api/v1/match", body)
    assert response.status_code == 200, response.content
    return json.loads(response.content)["results"]


def submit(client: PartnerClient, list_name: str, entries: list[dict[str, Any]]) -> list[int]:
    response = client.submit(list_name, entries)
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def picture(seed: int, size: int = 256) -> Image.Image:
    """A structured test picture (shapes on a gradient) that perceptual hashes can describe."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, size, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(gradient, (size, 1)),
            np.tile(gradient, (size, 1)).T,
            np.full((size, size), rng.integers(0, 255), np.uint8),
        ],
        axis=-1,
    )
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, size - 40, 2)
        w, h = rng.integers(20, 90, 2)
        draw.ellipse(
            [int(x), int(y), int(x + w), int(y + h)],
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def match_image(client: PartnerClient, data: bytes, **fields: Any) -> Any:
    return client.http.post(
        "/api/v1/match",
        {"image": io.BytesIO(data), **fields},
        HTTP_AUTHORIZATION=f"Bearer {client.api_key}",
    )


def test_match_finds_hashes_within_the_default_radius(alice, bob, shared_list) -> None:
    value = secrets.token_hex(32)
    (entry_id,) = submit(alice, "ncii", [{"algorithm": "pdq", "value": value}])
    near, edge, far = flip(value, 5), flip(value, 31), flip(value, 32)
    results = match(bob, [("pdq", near), ("pdq", edge), ("pdq", far)])
    assert [[(m["entry"], m["distance"]) for m in r["matches"]] for r in results] == [
        [(entry_id, 5)],
        [(entry_id, 31)],
        [],
    ]
    first = results[0]["matches"][0]
    assert (first["partner"], first["list"], first["value"]) == ("alice", "ncii", value)
    assert first["signing_key"] == alice.signing_key.key_id


def test_exact_algorithms_match_only_the_same_value(alice, bob, shared_list) -> None:
    value = secrets.token_hex(16)
    submit(alice, "ncii", [{"algorithm": "md5", "value": value}])
    results = match(bob, [("md5", value), ("md5", flip(value, 1))])
    assert [len(r["matches"]) for r in results] == [1, 0]


def test_a_list_radius_overrides_the_default(alice, bob, shared_list) -> None:
    shared_list.match_distances = {"pdq": 8}
    shared_list.save()
    value = secrets.token_hex(32)
    submit(alice, "ncii", [{"algorithm": "pdq", "value": value}])
    results = match(bob, [("pdq", flip(value, 8)), ("pdq", flip(value, 9))])
    assert [len(r["matches"]) for r in results] == [1, 0]


def test_match_never_returns_entries_of_lists_the_partner_cannot_see(alice, bob) -> None:
    HashListFactory(name="private", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    value = secrets.token_hex(32)
    submit(alice, "private", [{"algorithm": "pdq", "value": value}])
    assert match(bob, [("pdq", value)])[0]["matches"] == []
    assert len(match(alice, [("pdq", value)])[0]["matches"]) == 1


def test_revocation_stops_matches_at_once(alice, bob, shared_list) -> None:
    value = secrets.token_hex(32)
    (entry_id,) = submit(alice, "ncii", [{"algorithm": "pdq", "value": value}])
    assert len(match(bob, [("pdq", value)])[0]["matches"]) == 1
    assert alice.revoke([entry_id]).status_code == 201
    assert match(bob, [("pdq", value)])[0]["matches"] == []


def test_low_quality_entries_are_flagged(alice, bob, shared_list) -> None:
    value = secrets.token_hex(32)
    submit(alice, "ncii", [{"algorithm": "pdq", "value": value, "quality": 20}])
    (found,) = match(bob, [("pdq", value)])[0]["matches"]
    assert (found["quality"], found["low_quality"]) == (20, True)


def test_match_needs_the_match_scope(alice, shared_list) -> None:
    reader = partner_client("reader", scopes=["read"])
    body = json.dumps({"hashes": [{"algorithm": "md5", "value": "0" * 32}]}).encode()
    response = reader.post("/api/v1/match", body)
    assert response.status_code == 403
    assert json.loads(response.content)["type"].endswith("insufficient-scope")


@pytest.mark.parametrize(
    ("hashes", "slug"),
    [
        ([{"algorithm": "pdq", "value": "0" * 63}], "invalid-hash-value"),
        ([{"algorithm": "sha1", "value": "0" * 40}], "unknown-algorithm"),
        ([], "malformed-request"),
    ],
)
def test_bad_match_queries_are_problems(alice, shared_list, hashes, slug) -> None:
    response = alice.post("/api/v1/match", json.dumps({"hashes": hashes}).encode())
    assert response.status_code == 400
    assert json.loads(response.content)["type"].endswith(slug)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda im: encode(im.resize((128, 128))), id="resized-to-half"),
        pytest.param(lambda im: encode(im, "JPEG", quality=30), id="jpeg-quality-30"),
        pytest.param(lambda im: encode(im.convert("L")), id="grayscale"),
    ],
)
def test_an_altered_image_matches_its_original_through_http(
    alice, bob, shared_list, variant
) -> None:
    original = picture(seed=1)
    hashed = image_hashes(encode(original))
    (entry_id,) = submit(
        alice,
        "ncii",
        [{"algorithm": "pdq", "value": hashed.values["pdq"], "quality": hashed.pdq_quality}],
    )
    response = match_image(bob, variant(original))
    assert response.status_code == 200, response.content
    results = json.loads(response.content)["results"]
    pdq_result = next(r for r in results if r["query"]["algorithm"] == "pdq")
    assert [m["entry"] for m in pdq_result["matches"]] == [entry_id]


def test_a_different_image_does_not_match(alice, bob, shared_list) -> None:
    hashed = image_hashes(encode(picture(seed=1)))
    submit(alice, "ncii", [{"algorithm": "pdq", "value": hashed.values["pdq"]}])
    response = match_image(bob, encode(picture(seed=2)))
    assert response.status_code == 200
    assert all(not r["matches"] for r in json.loads(response.content)["results"])


def test_a_mirrored_image_matches_when_dihedral_hashes_are_asked_for(
    alice, bob, shared_list
) -> None:
    original = picture(seed=3)
    hashed = image_hashes(encode(original))
    submit(alice, "ncii", [{"algorithm": "pdq", "value": hashed.values["pdq"]}])
    mirrored = encode(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    plain = json.loads(match_image(bob, mirrored).content)["results"]
    assert not any(r["matches"] for r in plain if r["query"]["algorithm"] == "pdq")
    response = match_image(bob, mirrored, dihedral="true")
    found = [r for r in json.loads(response.content)["results"] if r["matches"]]
    assert found
    assert found[0]["query"]["transform"] is not None


def test_image_hashes_endpoint_returns_every_algorithm(alice) -> None:
    data = encode(picture(seed=4))
    response = alice.http.post(
        "/api/v1/hashes", {"image": io.BytesIO(data)}, HTTP_AUTHORIZATION=f"Bearer {alice.api_key}"
    )
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert body["hashes"] == image_hashes(data).values
    assert set(body["hashes"]) == {"pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256"}
