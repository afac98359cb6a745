"""Variants travel with their entry: a pdq entry may carry named variants (PDQ hashes of
edits of the submitter's image), each committed like the entry's value, stored, fed, shown,
matched, revoked and erased with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image, ImageDraw

from consortium_client.commitments import commitment_check, commitment_of, salt_new
from consortium_client.dsse import SUBMISSION_PAYLOAD_TYPE, envelope_sign
from consortium_client.imaging import image_hashes
from consortium_client.strictjson import strict_json_dumps
from consortium_client.variants import MAX_VARIANTS, RETIRED_VARIANTS, VARIANTS
from hashes.models import EntryVariant
from hashes.services import entry_erase
from tests.conftest import ADMIN, PartnerClient, pdq, problem, store_counts
from tests.test_matching import encode, flip, match, match_image, picture

NAMES = list(VARIANTS)


def variant_values(count: int = 3) -> dict[str, str]:
    return {name: pdq() for name in NAMES[:count]}


def raw_submission(
    client: PartnerClient,
    signed_variants: list[Any],
    opened_variants: list[Any] | None,
    algorithm: str = "pdq",
) -> bytes:
    """A body whose one entry signs `signed_variants` as given, opened by
    `opened_variants` (None: no `variants` beside the value)."""
    value, salt = (pdq() if algorithm == "pdq" else "0" * 32), salt_new()
    entry: dict[str, Any] = {
        "algorithm": algorithm,
        "commitment": commitment_of(algorithm, value, salt),
    }
    entry["variants"] = signed_variants
    payload = {
        "list": "ncii",
        "entries": [entry],
        "timestamp": datetime.now(UTC).isoformat(),
        "nonce": salt_new(),
    }
    envelope = envelope_sign(
        SUBMISSION_PAYLOAD_TYPE, strict_json_dumps(payload), client.private_key
    )
    opening: dict[str, Any] = {"value": value, "salt": salt}
    if opened_variants is not None:
        opening["variants"] = opened_variants
    return b'{"envelope":%b,"values":%b}' % (envelope, json.dumps([opening]).encode())


def committed(names: list[str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    signed, opened = [], []
    for name in names:
        value, salt = pdq(), salt_new()
        signed.append({"name": name, "commitment": commitment_of("pdq", value, salt)})
        opened.append({"value": value, "salt": salt})
    return signed, opened


def test_an_entry_is_submitted_with_its_variants_and_they_are_stored_shown_and_fed(
    alice, bob, shared_list
) -> None:
    variants = variant_values(3)
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(), "variants": variants}])
    assert response.status_code == 201, response.content
    (entry,) = response.json()["entries"]
    assert [v["name"] for v in entry["variants"]] == NAMES[:3]
    assert [v["value"] for v in entry["variants"]] == list(variants.values())
    stored = list(EntryVariant.objects.filter(entry_id=entry["id"]).order_by("position"))
    assert [(v.name, v.value) for v in stored] == list(variants.items())

    detail = bob.get(f"/api/v1/entries/{entry['id']}").json()
    assert [(v["name"], v["value"]) for v in detail["variants"]] == list(variants.items())

    page = bob.feed()
    (leaf,) = [event for event in page["events"] if event["type"] == "entry_added"]
    assert [v["name"] for v in leaf["variants"]] == NAMES[:3]
    (opening,) = page["values"]
    for signed, opened in zip(leaf["variants"], opening["variants"], strict=True):
        commitment_check("pdq", opened["value"], opened["salt"], signed["commitment"])
    assert [v["value"] for v in opening["variants"]] == list(variants.values())


def test_an_entry_without_variants_keeps_its_leaf_and_feed_item_as_before(
    alice, shared_list
) -> None:
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()}])
    assert response.status_code == 201
    assert "variants" not in response.json()["entries"][0]
    page = alice.feed()
    (leaf,) = [event for event in page["events"] if event["type"] == "entry_added"]
    assert "variants" not in leaf
    assert set(page["values"][0]) == {"index", "value", "salt"}


def test_a_replayed_submission_answers_with_its_variants(alice, shared_list) -> None:
    body = alice.submission(
        "ncii", [{"algorithm": "pdq", "value": pdq(), "variants": variant_values(2)}]
    )
    first = alice.post("/api/v1/submissions", body)
    again = alice.post("/api/v1/submissions", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["entries"] == first.json()["entries"]


@pytest.mark.parametrize(
    ("signed", "opened", "slug", "pointer"),
    [
        pytest.param(
            "unknown", None, "unknown-variant", "/entries/0/variants/0/name", id="unknown"
        ),
        pytest.param(
            "duplicate", None, "duplicate-variant", "/entries/0/variants/1/name", id="dup"
        ),
        pytest.param("too-many", None, "too-many-variants", "/entries/0/variants", id="too-many"),
        pytest.param("ok", "bad-opening", "commitment-mismatch", "/values/0/variants/1", id="bad"),
        pytest.param("ok", "missing", "invalid-payload", "/values/0/variants", id="missing"),
        pytest.param("ok", "short", "invalid-payload", "/values/0/variants", id="short"),
    ],
)
def test_bad_variants_are_refused_and_nothing_is_stored(
    alice, shared_list, signed: str, opened: str | None, slug: str, pointer: str
) -> None:
    names = {
        "unknown": ["blur-everything", "crop-centre-5"],
        "duplicate": ["crop-centre-5", "crop-centre-5"],
        "too-many": [f"{name}" for name in NAMES] * 2,
        "ok": NAMES[:2],
    }[signed]
    signed_variants, openings = committed(names)
    opened_variants: list[Any] | None = openings
    if opened == "bad-opening":
        openings[1]["value"] = pdq()
    elif opened == "missing":
        opened_variants = None
    elif opened == "short":
        opened_variants = openings[:1]
    assert len(NAMES) * 2 > MAX_VARIANTS
    before = store_counts()
    response = alice.post(
        "/api/v1/submissions", raw_submission(alice, signed_variants, opened_variants)
    )
    assert response.status_code == 400, response.content
    assert problem(response) == slug
    assert response.json()["pointer"] == pointer
    assert store_counts() == before


def test_a_retired_variant_name_from_an_older_client_is_stored_and_matched(
    alice, bob, shared_list
) -> None:
    # Variants an earlier client hashed, no longer chosen: its entries, and its submissions,
    # stay valid.
    assert not set(RETIRED_VARIANTS) & set(VARIANTS)
    old = {RETIRED_VARIANTS[0]: pdq(), NAMES[0]: pdq()}
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(), "variants": old}])
    assert response.status_code == 201, response.content
    entry_id = response.json()["entries"][0]["id"]
    (result,) = match(bob, [("pdq", flip(old[RETIRED_VARIANTS[0]], 3))])
    assert [(m["entry"], m["variant"], m["rule"]) for m in result["matches"]] == [
        (entry_id, RETIRED_VARIANTS[0], "pdq-variant")
    ]


def test_variants_are_refused_on_an_entry_that_is_not_pdq(alice, shared_list) -> None:
    signed, opened = committed(["crop-centre-5"])
    before = store_counts()
    response = alice.post("/api/v1/submissions", raw_submission(alice, signed, opened, "md5"))
    assert response.status_code == 400
    assert problem(response) == "invalid-payload"
    assert response.json()["pointer"] == "/entries/0/variants"
    assert store_counts() == before


def edited(image: Image.Image, edit: str) -> bytes:
    """A copy of `image` as someone slipping past a block would make it."""
    width, height = image.size
    if edit == "crop":
        copy = image.crop((round(width * 0.1), 0, width, height))
    elif edit == "rotate":
        copy = image.rotate(-3, resample=Image.Resampling.BILINEAR)
    else:  # a caption bar: a plain band with a line of text, above the picture
        copy = Image.new("RGB", (width, round(height * 1.2)), "white")
        copy.paste(image, (0, round(height * 0.2)))
        ImageDraw.Draw(copy).text((10, 10), "look at this", fill="black")
    return encode(copy)


def submit_image(client: PartnerClient, image: Image.Image, list_name: str = "ncii") -> int:
    hashed = image_hashes(encode(image), canonical=True, variants=True)
    assert hashed.pdq_variants is not None
    entry = {"algorithm": "pdq", "value": hashed.values["pdq"], "variants": hashed.pdq_variants}
    response = client.submit(list_name, [entry])
    assert response.status_code == 201, response.content
    return int(response.json()["entries"][0]["id"])


def pdq_matches(client: PartnerClient, data: bytes) -> list[dict[str, Any]]:
    """Every match of the image's PDQ queries (as sent, canonical, ...), nearest first."""
    response = match_image(client, data)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    found = [m for r in results if r["query"]["algorithm"] == "pdq" for m in r["matches"]]
    return sorted(found, key=lambda match: match["distance"])


@pytest.mark.parametrize(
    ("edit", "variant", "rule"),
    [
        ("crop", "crop-left-10", "pdq-variant"),
        ("rotate", "rotate-minus-3", "pdq-variant"),
        ("caption", None, "pdq-canonical"),
    ],
)
def test_an_edited_copy_that_pdq_misses_matches_through_a_variant_or_the_canonical_rule(
    alice, bob, shared_list, edit: str, variant: str | None, rule: str
) -> None:
    original = picture(seed=1, size=512)
    entry_id = submit_image(alice, original)
    copy = edited(original, edit)
    (found, *_) = pdq_matches(bob, copy)
    assert (found["entry"], found["variant"], found["rule"]) == (entry_id, variant, rule)
    assert found["distance"] <= 31


def test_pdq_alone_misses_the_edited_copies(alice, bob, shared_list) -> None:
    original = picture(seed=1, size=512)
    hashed = image_hashes(encode(original))
    alice.submit("ncii", [{"algorithm": "pdq", "value": hashed.values["pdq"]}])
    for edit in ("crop", "rotate", "caption"):
        (result,) = match(bob, [("pdq", image_hashes(edited(original, edit)).values["pdq"])])
        assert result["matches"] == []


def test_an_entry_reached_through_its_value_and_variants_is_listed_once(
    alice, bob, shared_list
) -> None:
    value = pdq()
    # Every variant a few bits from the value: the query reaches all of them.
    near = {name: flip(value, 1 + position) for position, name in enumerate(NAMES[:4])}
    entry_id = alice.submit("ncii", [{"algorithm": "pdq", "value": value, "variants": near}])
    entry_id = entry_id.json()["entries"][0]["id"]
    (result,) = match(bob, [("pdq", flip(near[NAMES[2]], 0))])
    assert [(m["entry"], m["variant"], m["rule"], m["distance"]) for m in result["matches"]] == [
        (entry_id, NAMES[2], "pdq-variant", 0)
    ]
    (result,) = match(bob, [("pdq", value)])
    assert [(m["entry"], m["variant"], m["rule"]) for m in result["matches"]] == [
        (entry_id, None, "pdq")
    ]


def test_a_revoked_entrys_variants_no_longer_match(alice, bob, shared_list) -> None:
    original = picture(seed=3, size=512)
    entry_id = submit_image(alice, original)
    copy = edited(original, "crop")
    assert pdq_matches(bob, copy)
    assert alice.revoke([entry_id]).status_code == 201
    assert pdq_matches(bob, copy) == []


def test_a_list_that_does_not_match_variants_matches_only_entries_own_values(
    alice, bob, shared_list
) -> None:
    original = picture(seed=5, size=512)
    submit_image(alice, original)
    shared_list.match_variants = False
    shared_list.save()
    assert pdq_matches(bob, edited(original, "crop")) == []
    assert [m["rule"] for m in pdq_matches(bob, encode(original))] == ["pdq"]


def test_an_erased_entrys_variants_are_gone_and_never_match(alice, bob, shared_list) -> None:
    original = picture(seed=3, size=512)
    variants = image_hashes(encode(original), variants=True).pdq_variants
    assert variants is not None
    entry_id = submit_image(alice, original)
    copy = edited(original, "rotate")
    assert pdq_matches(bob, copy)
    entry_erase(actor=ADMIN, entry_id=entry_id, reason="a court order")
    assert pdq_matches(bob, copy) == []
    assert EntryVariant.objects.filter(entry_id=entry_id).exclude(value=None).count() == 0
    assert EntryVariant.objects.filter(entry_id=entry_id).exclude(salt=None).count() == 0
    detail = bob.get(f"/api/v1/entries/{entry_id}").content.decode()
    feed = json.dumps(bob.feed())
    for value in variants.values():
        assert value not in detail
        assert value not in feed
