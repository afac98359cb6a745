"""Variants travel with their entry: a pdq entry may carry named variants (PDQ hashes of
edits of the submitter's image), each committed like the entry's value, stored, fed, shown,
matched, revoked and erased with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consortium_client.commitments import commitment_check, commitment_of, salt_new
from consortium_client.dsse import SUBMISSION_PAYLOAD_TYPE, envelope_sign
from consortium_client.strictjson import strict_json_dumps
from consortium_client.variants import MAX_VARIANTS, VARIANTS
from hashes.models import EntryVariant
from tests.conftest import PartnerClient, pdq, problem, store_counts

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


def test_variants_are_refused_on_an_entry_that_is_not_pdq(alice, shared_list) -> None:
    signed, opened = committed(["crop-centre-5"])
    before = store_counts()
    response = alice.post("/api/v1/submissions", raw_submission(alice, signed, opened, "md5"))
    assert response.status_code == 400
    assert problem(response) == "invalid-payload"
    assert response.json()["pointer"] == "/entries/0/variants"
    assert store_counts() == before
