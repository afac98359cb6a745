"""Matching through HTTP: hashes and images, radii, visibility, revocation."""

from __future__ import annotations

import io
import json
import random
import secrets
from typing import Any

import jsonschema
import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image, ImageDraw

from consortium_client.imaging import image_hashes
from hashes.match_index import match_indexes
from hashes.models import HashList
from tests.conftest import (
    PartnerClient,
    assert_refusal_audited,
    partner_client,
    problem,
    store_counts,
)
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


def test_a_mirrored_image_matches_unless_the_partner_opts_out_of_dihedral_queries(
    alice, bob, shared_list
) -> None:
    original = picture(seed=3)
    hashed = image_hashes(encode(original))
    submit(alice, "ncii", [{"algorithm": "pdq", "value": hashed.values["pdq"]}])
    mirrored = encode(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    for opted_out in ("false", "0", "no", "FALSE"):
        plain = json.loads(match_image(bob, mirrored, dihedral=opted_out).content)["results"]
        assert not any(r["matches"] for r in plain if r["query"]["algorithm"] == "pdq")
    for asked in ({}, {"dihedral": "true"}, {"dihedral": ""}):
        response = match_image(bob, mirrored, **asked)
        found = [r for r in json.loads(response.content)["results"] if r["matches"]]
        assert [r["query"]["transform"] for r in found] == ["flip-left-right"]
        assert found[0]["matches"][0]["rule"] == "pdq-dihedral"


@pytest.mark.parametrize("field", ["dihedral", "include_pending"])
def test_a_flag_that_is_neither_true_nor_false_is_refused(bob, shared_list, field) -> None:
    response = match_image(bob, encode(picture(seed=3)), **{field: "maybe"})
    assert (response.status_code, problem(response)) == (400, "malformed-request")
    assert json.loads(response.content)["detail"] == f"{field} must be true or false"


def test_image_hashes_endpoint_returns_every_algorithm(alice) -> None:
    data = encode(picture(seed=4))
    response = alice.http.post(
        "/api/v1/hashes", {"image": io.BytesIO(data)}, HTTP_AUTHORIZATION=f"Bearer {alice.api_key}"
    )
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert body["hashes"] == image_hashes(data).values
    assert set(body["hashes"]) == {"pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256"}


def match_response(client: PartnerClient, hashes: list[tuple[str, str]], **fields: Any) -> Any:
    body = {"hashes": [{"algorithm": a, "value": v} for a, v in hashes], **fields}
    return client.post("/api/v1/match", json.dumps(body).encode())


def planted_near_duplicates(client: PartnerClient, base: str, count: int) -> dict[int, int]:
    """`count` entries of `client` within 31 bits of `base`: entry id -> distance to it."""
    rng = random.Random(7)
    values = {base}
    while len(values) < count:
        bits = rng.sample(range(256), rng.randint(1, 31))
        values.add(f"{int(base, 16) ^ sum(1 << bit for bit in bits):064x}")
    ordered = sorted(values)
    ids = submit(client, "ncii", [{"algorithm": "pdq", "value": v} for v in ordered])
    return {
        entry_id: (int(value, 16) ^ int(base, 16)).bit_count()
        for entry_id, value in zip(ids, ordered, strict=True)
    }


def test_matches_per_hash_are_capped_nearest_first_and_marked_truncated(
    make_partner, bob, shared_list
) -> None:
    mallory = make_partner("mallory")
    base = secrets.token_hex(32)
    planted = planted_near_duplicates(mallory, base, 300)
    best = sorted(planted, key=lambda entry_id: (planted[entry_id], entry_id))
    lone = secrets.token_hex(32)
    (lone_id,) = submit(bob, "ncii", [{"algorithm": "pdq", "value": lone}])

    response = match_response(bob, [("pdq", base), ("pdq", lone)], limit=7)
    assert response.status_code == 200, response.content
    crowded, single = json.loads(response.content)["results"]
    assert [(m["entry"], m["distance"]) for m in crowded["matches"]] == [
        (entry_id, planted[entry_id]) for entry_id in best[:7]
    ]
    assert crowded["truncated"] is True
    assert ([m["entry"] for m in single["matches"]], single["truncated"]) == ([lone_id], False)

    default = match(bob, [("pdq", base)] * 50)
    assert all(len(result["matches"]) == 10 and result["truncated"] for result in default)
    widest = json.loads(match_response(bob, [("pdq", base)], limit=100).content)["results"][0]
    assert [m["entry"] for m in widest["matches"]] == best[:100]


def test_an_exact_hash_held_by_many_lists_is_capped_too(make_partner, bob) -> None:
    value = secrets.token_hex(16)
    for n in range(12):
        owner = make_partner(f"owner-{n}")
        HashListFactory(name=f"list-{n}", owner=owner.partner, visibility=HashList.Visibility.ALL)
        submit(owner, f"list-{n}", [{"algorithm": "md5", "value": value}])
    (result,) = json.loads(match_response(bob, [("md5", value)], limit=5).content)["results"]
    assert len(result["matches"]) == 5
    assert result["truncated"] is True
    entries = [m["entry"] for m in result["matches"]]
    assert entries == sorted(entries)


@pytest.mark.parametrize(
    ("limit", "slug"),
    [
        (101, "limit-out-of-range"),
        (0, "limit-out-of-range"),
        (-1, "limit-out-of-range"),
        ("ten", "malformed-request"),
        (2.5, "malformed-request"),
        (True, "malformed-request"),
    ],
)
def test_a_limit_outside_the_allowed_range_is_refused(alice, shared_list, limit, slug) -> None:
    before = store_counts()
    response = match_response(alice, [("md5", "0" * 32)], limit=limit)
    assert response.status_code == 400
    assert problem(response) == slug
    assert store_counts() == before
    assert_refusal_audited(action="match", status=400, slug=slug, partner=alice.partner)


def test_hashes_times_limit_above_the_request_cap_is_refused(alice, shared_list, settings) -> None:
    settings.MATCH_MAX_RESULTS = 100
    hashes = [("md5", secrets.token_hex(16)) for _ in range(11)]
    response = match_response(alice, hashes, limit=10)
    assert response.status_code == 400
    assert problem(response) == "limit-out-of-range"
    assert json.loads(response.content)["limit"] == 9
    assert match_response(alice, hashes, limit=9).status_code == 200


def test_an_image_match_takes_a_limit_as_a_form_field(alice, bob, shared_list) -> None:
    hashed = image_hashes(encode(picture(seed=5)))
    submit(alice, "ncii", [{"algorithm": "pdq", "value": hashed.values["pdq"]}])
    assert problem(match_image(bob, encode(picture(seed=5)), limit="101")) == "limit-out-of-range"
    response = match_image(bob, encode(picture(seed=5)), limit="1")
    assert response.status_code == 200, response.content
    pdq_result = next(
        r for r in json.loads(response.content)["results"] if r["query"]["algorithm"] == "pdq"
    )
    assert (len(pdq_result["matches"]), pdq_result["truncated"]) == (1, False)


def _measured_match(client: PartnerClient, algorithm: str, value: str) -> tuple[int, int, Any]:
    """Database queries made and index candidates examined by one match, and its results."""
    examined = match_indexes.candidates_examined
    with CaptureQueriesContext(connection) as queries:
        response = match_response(client, [(algorithm, value)])
    assert response.status_code == 200, response.content
    return len(queries), match_indexes.candidates_examined - examined, response


@pytest.mark.parametrize("algorithm", ["md5", "pdq"])
def test_match_work_is_the_same_for_a_hash_in_a_hidden_list_as_for_an_absent_one(
    alice, bob, shared_list, algorithm
) -> None:
    width = 32 if algorithm == "md5" else 64
    HashListFactory(name="hidden", owner=bob.partner, visibility=HashList.Visibility.OWNER)
    held = secrets.token_hex(width // 2)
    submit(bob, "hidden", [{"algorithm": algorithm, "value": held}])
    # Entries alice may see, so that her searches do real work to compare.
    submit(alice, "ncii", [{"algorithm": algorithm, "value": secrets.token_hex(width // 2)}])
    query_hidden = held if algorithm == "md5" else flip(held, 3)
    absent = secrets.token_hex(width // 2)
    match(alice, [(algorithm, absent)])  # the index loads and catches up outside the count

    measured = [
        _measured_match(alice, algorithm, value)
        for value in (query_hidden, absent, query_hidden, absent)
    ]
    assert len({(queries, examined) for queries, examined, _ in measured}) == 1
    # A PDQ search scans alice's list; an exact lookup examines only the ids the value holds.
    assert measured[0][1] == (1 if algorithm == "pdq" else 0)
    bodies = [json.loads(response.content)["results"] for _, _, response in measured]
    for body in bodies:
        body[0]["query"].pop("value")
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0][0]["matches"] == []
    assert {len(response.content) for _, _, response in measured} == {len(measured[0][2].content)}
    # bob, who may see the list, gets the match, so the hash really is there.
    assert len(match(bob, [(algorithm, query_hidden)])[0]["matches"]) == 1


def _strict(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as a JSON Schema that refuses what it does not describe: no
    property beyond those listed, and `nullable` as a type that admits null."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("type") == "object" and "properties" in schema:
        strict["additionalProperties"] = False
    if schema.get("nullable"):
        if "type" in strict:
            strict["type"] = [strict["type"], "null"]
        else:
            strict = {"anyOf": [strict, {"type": "null"}]}
    return strict


def test_a_match_answer_is_exactly_what_the_schema_describes_and_shows_entries_as_read(
    alice, bob, shared_list
) -> None:
    value = secrets.token_hex(32)
    variant = secrets.token_hex(32)
    entry = {
        "algorithm": "pdq",
        "value": value,
        "labels": ["ncii", "verified"],
        "quality": 40,
        "variants": {"rotate-3": variant},
    }
    (entry_id,) = submit(alice, "ncii", [entry])
    (md5_id,) = submit(alice, "ncii", [{"algorithm": "md5", "value": secrets.token_hex(16)}])
    asked = [("pdq", flip(value, 3)), ("pdq", flip(variant, 2)), ("pdq", secrets.token_hex(32))]
    body = json.dumps({"hashes": [{"algorithm": a, "value": v} for a, v in asked]}).encode()

    response = bob.post("/api/v1/match", body)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    answer = json.loads(response.content)
    schema = json.loads(bob.http.get("/api/v1/schema/", {"format": "json"}).content)
    path = schema["paths"]["/api/v1/match"]["post"]["responses"]["200"]
    document = {
        "components": {"schemas": _strict(schema["components"]["schemas"])},
        **path["content"]["application/json"]["schema"],
    }
    validator = jsonschema.Draft202012Validator(document)
    validator.validate(answer)
    doctored = json.loads(response.content)
    doctored["results"][0]["matches"][0]["undocumented"] = 1
    assert not validator.is_valid(doctored)  # the check would see a field the schema lacks
    results = answer["results"]
    assert [[(m["entry"], m["variant"], m["rule"]) for m in r["matches"]] for r in results] == [
        [(entry_id, None, "pdq")],
        [(entry_id, "rotate-3", "pdq-variant")],
        [],
    ]
    # Each match shows its entry exactly as the entry's own page does.
    shown = json.loads(bob.get(f"/api/v1/entries/{entry_id}").content)
    for result in results[:2]:
        (found,) = result["matches"]
        for field, shown_value in shown.items():
            if field not in {"id", "note", "revocation", "variants", "verdicts"}:
                assert found[field] == shown_value, field
    assert results[0]["matches"][0]["labels"] == ["ncii", "verified"]
    assert results[0]["matches"][0]["low_quality"] is True
    assert md5_id != entry_id
