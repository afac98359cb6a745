"""Bad submissions are refused whole, with a problem+json naming the first problem, and
store nothing; good ones in any valid DSSE encoding are accepted, once."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import CryptoSigner

from audit.models import AccessEvent
from consortium_client.commitments import CommitmentError, commitment_of, salt_new
from consortium_client.dsse import (
    REVOCATION_PAYLOAD_TYPE,
    SUBMISSION_PAYLOAD_TYPE,
    SUBMISSION_V1_PAYLOAD_TYPE,
    envelope_sign,
    pae,
)
from consortium_client.hashvalues import HashValueError
from consortium_client.keys import key_generate, key_id, public_key_pem
from hashes.models import Entry, HashList
from partners import services
from tests.conftest import (
    ADMIN,
    PartnerClient,
    assert_refusal_audited,
    partner_client,
    pdq,
    problem,
    store_counts,
)

_MISSING: Any = object()


class Payload(dict[str, Any]):
    """A version 2 submission payload, with the openings that travel beside it."""

    openings: list[Any]


def commit(entries: Any) -> tuple[Any, list[Any]]:
    """Entries written with their values, as a version 2 payload signs them (a commitment
    under a fresh salt), and the openings for the request body. Entries no client would
    sign (bad values, unknown algorithms) get a well-formed commitment to nothing, so that
    the server, not this helper, decides how they are refused."""
    if not isinstance(entries, list):
        return entries, []
    signed_entries: list[Any] = []
    openings: list[Any] = []
    for entry in entries:
        if not isinstance(entry, dict) or "value" not in entry:
            signed_entries.append(entry)
            openings.append({})
            continue
        salt = salt_new()
        try:
            commitment = commitment_of(entry.get("algorithm"), entry["value"], salt)
        except (HashValueError, CommitmentError, TypeError, AttributeError):
            commitment = "0" * 64
        item = {key: value for key, value in entry.items() if key != "value"}
        signed_entries.append({**item, "commitment": commitment})
        openings.append({"value": entry["value"], "salt": salt})
    return signed_entries, openings


def payload(list_name: str = "ncii", entries: Any = None, **fields: Any) -> Payload:
    """A submission payload; a field given as _MISSING is left out. `entries` are written
    with their values; the payload signs commitments and keeps the openings aside."""
    written = [{"algorithm": "pdq", "value": pdq()}] if entries is None else entries
    signed_entries, openings = commit(written)
    document = Payload(
        {
            "list": list_name,
            "entries": signed_entries,
            "timestamp": datetime.now(UTC).isoformat(),
            "nonce": secrets.token_hex(8),
        }
    )
    document.update(fields)
    result = Payload({key: value for key, value in document.items() if value is not _MISSING})
    result.openings = openings
    return result


def body_of(envelope: bytes, openings: list[Any]) -> bytes:
    """The request body: the envelope, and the openings beside it (any JSON, as given)."""
    return b'{"envelope": %b, "values": %b}' % (envelope, json.dumps(openings).encode())


def signed(
    document: dict[str, Any] | bytes,
    key: Ed25519PrivateKey,
    payload_type: str = SUBMISSION_PAYLOAD_TYPE,
    openings: list[Any] | None = None,
) -> bytes:
    """A signed statement: for a submission, the request body (envelope and values); for
    any other payload type, the bare envelope."""
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    envelope = envelope_sign(payload_type, raw, key)
    if payload_type != SUBMISSION_PAYLOAD_TYPE:
        return envelope
    if openings is None:
        openings = getattr(document, "openings", [])
    return body_of(envelope, openings)


def envelope_edit(body: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """Change the envelope inside a request body."""
    document = json.loads(body)
    edit(document["envelope"])
    return json.dumps(document).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Each case builds a request body for alice and names the problem it must get.
Case = Callable[[PartnerClient], bytes]


def _bad_payload_base64(alice: PartnerClient) -> bytes:
    return envelope_edit(
        signed(payload(), alice.private_key), lambda d: d.update(payload="not base64!")
    )


def _bad_sig_base64(alice: PartnerClient) -> bytes:
    def edit(document: dict[str, Any]) -> None:
        document["signatures"][0]["sig"] = "%%%"

    return envelope_edit(signed(payload(), alice.private_key), edit)


def _sig_not_text(alice: PartnerClient) -> bytes:
    def edit(document: dict[str, Any]) -> None:
        document["signatures"][0]["sig"] = 12

    return envelope_edit(signed(payload(), alice.private_key), edit)


def _not_json(alice: PartnerClient) -> bytes:
    return b"this is not json {"


def _not_utf8(alice: PartnerClient) -> bytes:
    return b"\x80not utf-8"


def _deeply_nested(alice: PartnerClient) -> bytes:
    return b"[" * 100_000


def _huge_number(alice: PartnerClient) -> bytes:
    return b'{"payloadType": "x", "n": ' + b"1" * 5000 + b"}"


def _json_array(alice: PartnerClient) -> bytes:
    return b"[]"


def _empty_body(alice: PartnerClient) -> bytes:
    return b""


def _no_signatures(alice: PartnerClient) -> bytes:
    return envelope_edit(signed(payload(), alice.private_key), lambda d: d.pop("signatures"))


def _empty_signatures(alice: PartnerClient) -> bytes:
    return envelope_edit(signed(payload(), alice.private_key), lambda d: d.update(signatures=[]))


def _signature_not_object(alice: PartnerClient) -> bytes:
    return envelope_edit(
        signed(payload(), alice.private_key), lambda d: d.update(signatures=["abc"])
    )


def _keyid_not_text(alice: PartnerClient) -> bytes:
    def edit(document: dict[str, Any]) -> None:
        document["signatures"][0]["keyid"] = 7

    return envelope_edit(signed(payload(), alice.private_key), edit)


def _no_payload_type(alice: PartnerClient) -> bytes:
    return envelope_edit(signed(payload(), alice.private_key), lambda d: d.pop("payloadType"))


def _unregistered_key(alice: PartnerClient) -> bytes:
    return signed(payload(), key_generate())


def _another_partners_key(alice: PartnerClient) -> bytes:
    return signed(payload(), partner_client("mallory").private_key)


def _revoked_signing_key(alice: PartnerClient) -> bytes:
    services.signing_key_revoke(signing_key=alice.signing_key, actor=ADMIN, reason="lost")
    return signed(payload(), alice.private_key)


def _tampered_payload(alice: PartnerClient) -> bytes:
    original = payload()
    envelope = signed(original, alice.private_key)
    original["entries"][0]["commitment"] = "1" * 64
    return envelope_edit(envelope, lambda d: d.update(payload=_b64(json.dumps(original).encode())))


def _tampered_payload_type(alice: PartnerClient) -> bytes:
    envelope = signed(payload(), alice.private_key)
    return envelope_edit(envelope, lambda d: d.update(payloadType=SUBMISSION_PAYLOAD_TYPE + " "))


def _truncated_signature(alice: PartnerClient) -> bytes:
    def edit(document: dict[str, Any]) -> None:
        sig = base64.b64decode(document["signatures"][0]["sig"])
        document["signatures"][0]["sig"] = _b64(sig[:-1])

    return envelope_edit(signed(payload(), alice.private_key), edit)


def _revocation_type(alice: PartnerClient) -> bytes:
    document = payload()
    return body_of(signed(document, alice.private_key, REVOCATION_PAYLOAD_TYPE), document.openings)


def _version_1(alice: PartnerClient) -> bytes:
    # What a version 1 client signed: the value itself, under the signature.
    document = {**payload(), "entries": [{"algorithm": "pdq", "value": pdq()}]}
    return body_of(signed(document, alice.private_key, SUBMISSION_V1_PAYLOAD_TYPE), [])


def _bare_envelope(alice: PartnerClient) -> bytes:
    return json.dumps(json.loads(signed(payload(), alice.private_key))["envelope"]).encode()


def _value_in_signed_entry(alice: PartnerClient) -> bytes:
    document = payload()
    document["entries"][0]["value"] = document.openings[0]["value"]
    return signed(document, alice.private_key)


def _wrong_salt(alice: PartnerClient) -> bytes:
    document = payload()
    document.openings[0]["salt"] = salt_new()
    return signed(document, alice.private_key)


def _other_value(alice: PartnerClient) -> bytes:
    document = payload()
    document.openings[0]["value"] = pdq()
    return signed(document, alice.private_key)


def _openings_swapped(alice: PartnerClient) -> bytes:
    document = payload(entries=[{"algorithm": "pdq", "value": pdq()} for _ in range(2)])
    document.openings.reverse()
    return signed(document, alice.private_key)


def _opening_missing(alice: PartnerClient) -> bytes:
    document = payload(entries=[{"algorithm": "pdq", "value": pdq()} for _ in range(2)])
    return signed(document, alice.private_key, openings=document.openings[:1])


def _values_missing(alice: PartnerClient) -> bytes:
    body = json.loads(signed(payload(), alice.private_key))
    del body["values"]
    return json.dumps(body).encode()


def _bad_salt(salt: Any) -> Case:
    def case(alice: PartnerClient) -> bytes:
        document = payload()
        document.openings[0]["salt"] = salt
        return signed(document, alice.private_key)

    return case


def _bad_commitment(commitment: Any) -> Case:
    def case(alice: PartnerClient) -> bytes:
        document = payload()
        if commitment is _MISSING:
            del document["entries"][0]["commitment"]
        else:
            document["entries"][0]["commitment"] = commitment
        return signed(document, alice.private_key)

    return case


def _payload_not_json(alice: PartnerClient) -> bytes:
    return signed(b"list=ncii", alice.private_key)


def _payload_json_array(alice: PartnerClient) -> bytes:
    return signed(b"[]", alice.private_key)


def _payload_deeply_nested(alice: PartnerClient) -> bytes:
    return signed(b"[" * 100_000, alice.private_key)


def _payload_huge_number(alice: PartnerClient) -> bytes:
    document = payload()
    raw = json.dumps(document).encode()
    huge = raw[:-1] + b', "n": ' + b"1" * 5000 + b"}"
    return signed(huge, alice.private_key, openings=document.openings)


def _unknown_algorithm(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[{"algorithm": "sha1", "value": "a" * 40}]), alice.private_key)


def _pdq_63(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[{"algorithm": "pdq", "value": "a" * 63}]), alice.private_key)


def _pdq_65(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[{"algorithm": "pdq", "value": "a" * 65}]), alice.private_key)


def _non_hex(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[{"algorithm": "pdq", "value": "g" * 64}]), alice.private_key)


def _hex_prefix(alice: PartnerClient) -> bytes:
    value = "0x" + "a" * 14
    return signed(payload(entries=[{"algorithm": "phash", "value": value}]), alice.private_key)


def _value_not_text(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[{"algorithm": "phash", "value": 12}]), alice.private_key)


def _bad_second_entry(alice: PartnerClient) -> bytes:
    entries = [{"algorithm": "pdq", "value": pdq()}, {"algorithm": "pdq", "value": "z" * 64}]
    return signed(payload(entries=entries), alice.private_key)


def _empty_batch(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[]), alice.private_key)


def _entries_not_list(alice: PartnerClient) -> bytes:
    return signed(payload(entries={"algorithm": "pdq", "value": pdq()}), alice.private_key)


def _entry_not_object(alice: PartnerClient) -> bytes:
    return signed(payload(entries=[pdq()]), alice.private_key)


def _unknown_list(alice: PartnerClient) -> bytes:
    return signed(payload("no-such-list"), alice.private_key)


def _missing_list(alice: PartnerClient) -> bytes:
    return signed(payload(list=_MISSING), alice.private_key)


def _duplicate_in_batch(alice: PartnerClient) -> bytes:
    value = pdq()
    entries = [{"algorithm": "pdq", "value": value}, {"algorithm": "pdq", "value": value}]
    return signed(payload(entries=entries), alice.private_key)


def _duplicate_differing_in_case(alice: PartnerClient) -> bytes:
    value = "ab" * 32
    entries = [{"algorithm": "pdq", "value": value}, {"algorithm": "pdq", "value": value.upper()}]
    return signed(payload(entries=entries), alice.private_key)


def _missing_timestamp(alice: PartnerClient) -> bytes:
    return signed(payload(timestamp=_MISSING), alice.private_key)


def _naive_timestamp(alice: PartnerClient) -> bytes:
    return signed(payload(timestamp="2026-01-01T12:00:00"), alice.private_key)


def _not_a_timestamp(alice: PartnerClient) -> bytes:
    return signed(payload(timestamp="yesterday"), alice.private_key)


def _missing_nonce(alice: PartnerClient) -> bytes:
    return signed(payload(nonce=_MISSING), alice.private_key)


def _empty_nonce(alice: PartnerClient) -> bytes:
    return signed(payload(nonce=""), alice.private_key)


def _long_nonce(alice: PartnerClient) -> bytes:
    return signed(payload(nonce="n" * 129), alice.private_key)


def _labels(labels: Any) -> Case:
    def case(alice: PartnerClient) -> bytes:
        entries = [{"algorithm": "pdq", "value": pdq(), "labels": labels}]
        return signed(payload(entries=entries), alice.private_key)

    return case


def _long_note(alice: PartnerClient) -> bytes:
    entries = [{"algorithm": "pdq", "value": pdq(), "note": "n" * 2001}]
    return signed(payload(entries=entries), alice.private_key)


def _raw_payload(text: str) -> Case:
    """A payload written by hand (as no careful client would), properly signed by alice, so
    that only the strictness of the parser can refuse it."""

    def case(alice: PartnerClient) -> bytes:
        document = payload()
        raw = json.dumps(document)[:-1] + ", " + text + "}"
        return signed(raw.encode(), alice.private_key, openings=document.openings)

    return case


def _payload_encoded(encoding: str) -> Case:
    def case(alice: PartnerClient) -> bytes:
        document = payload()
        raw = json.dumps(document).encode(encoding)
        return signed(raw, alice.private_key, openings=document.openings)

    return case


def _payload_with_bom(alice: PartnerClient) -> bytes:
    document = payload()
    raw = b"\xef\xbb\xbf" + json.dumps(document).encode()
    return signed(raw, alice.private_key, openings=document.openings)


def _payload_latin1(alice: PartnerClient) -> bytes:
    document = payload(entries=[{"algorithm": "pdq", "value": pdq(), "note": "café"}])
    return signed(
        json.dumps(document, ensure_ascii=False).encode("latin-1"),
        alice.private_key,
        openings=document.openings,
    )


def _duplicate_value_in_entry(alice: PartnerClient) -> bytes:
    # Signed once, read two ways: a last-wins parser stores the second hash, a first-wins
    # verifier believes the first was shared.
    document = payload()
    first = document["entries"][0]["commitment"]
    raw = json.dumps(document).replace(
        f'"commitment": "{first}"', f'"commitment": "{first}", "commitment": "{"1" * 64}"'
    )
    return signed(raw.encode(), alice.private_key, openings=document.openings)


def _text_in_entry(field: str, text: Any) -> Case:
    def case(alice: PartnerClient) -> bytes:
        entries = [{"algorithm": "pdq", "value": pdq(), field: text}]
        return signed(payload(entries=entries), alice.private_key)

    return case


def _text_field(field: str, text: str) -> Case:
    def case(alice: PartnerClient) -> bytes:
        return signed(payload(**{field: text}), alice.private_key)

    return case


def _envelope_with_two_payloads(alice: PartnerClient) -> bytes:
    # The signature covers the second payload; a first-wins verifier would read the first.
    body = signed(payload(), alice.private_key).decode()
    other = _b64(json.dumps(payload()).encode())
    return body.replace('"payload": ', f'"payload": "{other}", "payload": ', 1).encode()


def _envelope_encoded(encoding: str) -> Case:
    def case(alice: PartnerClient) -> bytes:
        return signed(payload(), alice.private_key).decode().encode(encoding)

    return case


def _envelope_with_bom(alice: PartnerClient) -> bytes:
    return b"\xef\xbb\xbf" + signed(payload(), alice.private_key)


def _envelope_with_nan(alice: PartnerClient) -> bytes:
    return signed(payload(), alice.private_key)[:-1] + b', "extra": NaN}'


def _envelope_with_lone_surrogate(alice: PartnerClient) -> bytes:
    def edit(document: dict[str, Any]) -> None:
        document["signatures"][0]["keyid"] = "\udc00"

    return envelope_edit(signed(payload(), alice.private_key), edit)


REFUSALS: dict[str, tuple[Case, int, str]] = {
    "bad base64 in payload": (_bad_payload_base64, 400, "invalid-base64"),
    "bad base64 in sig": (_bad_sig_base64, 400, "invalid-base64"),
    "sig not text": (_sig_not_text, 400, "invalid-base64"),
    "body not JSON": (_not_json, 400, "malformed-request"),
    "body not UTF-8": (_not_utf8, 400, "malformed-request"),
    "body a JSON array": (_json_array, 400, "malformed-request"),
    "body nested too deep": (_deeply_nested, 400, "malformed-request"),
    "body with a huge number": (_huge_number, 400, "malformed-request"),
    "empty body": (_empty_body, 400, "malformed-request"),
    "no signatures": (_no_signatures, 400, "malformed-envelope"),
    "empty signatures": (_empty_signatures, 400, "malformed-envelope"),
    "signature not an object": (_signature_not_object, 400, "malformed-envelope"),
    "keyid not text": (_keyid_not_text, 400, "malformed-envelope"),
    "no payloadType": (_no_payload_type, 400, "malformed-envelope"),
    "unregistered key": (_unregistered_key, 400, "invalid-signature"),
    "another partner's key": (_another_partners_key, 400, "invalid-signature"),
    "revoked signing key": (_revoked_signing_key, 400, "invalid-signature"),
    "payload changed after signing": (_tampered_payload, 400, "invalid-signature"),
    "truncated signature": (_truncated_signature, 400, "invalid-signature"),
    "payloadType changed after signing": (_tampered_payload_type, 400, "wrong-payload-type"),
    "revocation payload type": (_revocation_type, 400, "wrong-payload-type"),
    "payload not JSON": (_payload_not_json, 400, "invalid-payload"),
    "payload a JSON array": (_payload_json_array, 400, "invalid-payload"),
    "payload nested too deep": (_payload_deeply_nested, 400, "invalid-payload"),
    "payload with a huge number": (_payload_huge_number, 400, "invalid-payload"),
    "version 1 payload": (_version_1, 400, "legacy-payload-version"),
    "a bare envelope, as version 1 sent it": (_bare_envelope, 400, "malformed-request"),
    "values missing": (_values_missing, 400, "malformed-request"),
    "a value under the signature": (_value_in_signed_entry, 400, "invalid-payload"),
    "a salt that does not open the commitment": (_wrong_salt, 400, "commitment-mismatch"),
    "a value that does not open the commitment": (_other_value, 400, "commitment-mismatch"),
    "openings in the wrong order": (_openings_swapped, 400, "commitment-mismatch"),
    "an opening missing": (_opening_missing, 400, "invalid-payload"),
    "salt too short": (_bad_salt("ab" * 15), 400, "invalid-payload"),
    "salt uppercase": (_bad_salt("AB" * 16), 400, "invalid-payload"),
    "salt not text": (_bad_salt(7), 400, "invalid-payload"),
    "commitment too short": (_bad_commitment("a" * 63), 400, "invalid-payload"),
    "commitment missing": (_bad_commitment(_MISSING), 400, "invalid-payload"),
    "unknown algorithm": (_unknown_algorithm, 400, "unknown-algorithm"),
    "pdq of 63 hex": (_pdq_63, 400, "invalid-hash-value"),
    "pdq of 65 hex": (_pdq_65, 400, "invalid-hash-value"),
    "non-hex": (_non_hex, 400, "invalid-hash-value"),
    "0x prefix": (_hex_prefix, 400, "invalid-hash-value"),
    "value not text": (_value_not_text, 400, "invalid-hash-value"),
    "good entry then bad entry": (_bad_second_entry, 400, "invalid-hash-value"),
    "empty batch": (_empty_batch, 400, "empty-batch"),
    "entries not a list": (_entries_not_list, 400, "invalid-payload"),
    "entry not an object": (_entry_not_object, 400, "invalid-payload"),
    "unknown list": (_unknown_list, 404, "unknown-list"),
    "no list named": (_missing_list, 400, "invalid-payload"),
    "duplicate in batch": (_duplicate_in_batch, 400, "duplicate-in-batch"),
    "duplicate differing in case": (_duplicate_differing_in_case, 400, "duplicate-in-batch"),
    "missing timestamp": (_missing_timestamp, 400, "invalid-payload"),
    "timestamp without zone": (_naive_timestamp, 400, "invalid-payload"),
    "timestamp not a date": (_not_a_timestamp, 400, "invalid-payload"),
    "missing nonce": (_missing_nonce, 400, "invalid-payload"),
    "empty nonce": (_empty_nonce, 400, "invalid-payload"),
    "nonce too long": (_long_nonce, 400, "invalid-payload"),
    "label uppercase": (_labels(["NCII"]), 400, "invalid-payload"),
    "label empty": (_labels([""]), 400, "invalid-payload"),
    "label with a trailing newline": (_labels(["ncii\n"]), 400, "invalid-payload"),
    "label not text": (_labels([3]), 400, "invalid-payload"),
    "labels not a list": (_labels("ncii"), 400, "invalid-payload"),
    "too many labels": (_labels([f"l{n}" for n in range(33)]), 400, "invalid-payload"),
    "note too long": (_long_note, 400, "invalid-payload"),
    # Strict JSON: one envelope, one meaning for every verifier.
    "envelope with a duplicate key": (_envelope_with_two_payloads, 400, "malformed-request"),
    "envelope in UTF-16": (_envelope_encoded("utf-16"), 400, "malformed-request"),
    "envelope in UTF-32": (_envelope_encoded("utf-32"), 400, "malformed-request"),
    "envelope with a BOM": (_envelope_with_bom, 400, "malformed-request"),
    "envelope with NaN": (_envelope_with_nan, 400, "malformed-request"),
    "envelope with a lone surrogate": (_envelope_with_lone_surrogate, 400, "malformed-request"),
    "payload with a duplicate key": (_raw_payload('"list": "other"'), 400, "invalid-payload"),
    "duplicate key in an entry": (_duplicate_value_in_entry, 400, "invalid-payload"),
    "payload with NaN": (_raw_payload('"n": NaN'), 400, "invalid-payload"),
    "payload with Infinity": (_raw_payload('"n": Infinity'), 400, "invalid-payload"),
    "payload with -Infinity": (_raw_payload('"n": -Infinity'), 400, "invalid-payload"),
    "payload with 1e400": (_raw_payload('"n": 1e400'), 400, "invalid-payload"),
    "payload with 2**53": (_raw_payload(f'"n": {2**53}'), 400, "invalid-payload"),
    "payload with a lone surrogate": (_raw_payload('"n": "\\ud800"'), 400, "invalid-payload"),
    "payload in UTF-16": (_payload_encoded("utf-16"), 400, "invalid-payload"),
    "payload in UTF-16-LE": (_payload_encoded("utf-16-le"), 400, "invalid-payload"),
    "payload in UTF-32": (_payload_encoded("utf-32"), 400, "invalid-payload"),
    "payload with a BOM": (_payload_with_bom, 400, "invalid-payload"),
    "payload in Latin-1": (_payload_latin1, 400, "invalid-payload"),
    # Text PostgreSQL cannot hold, in every signed text field.
    "NUL in note": (_text_in_entry("note", "a\x00b"), 400, "invalid-payload"),
    "lone surrogate in note": (_text_in_entry("note", "a\ud800b"), 400, "invalid-payload"),
    "NUL in a label": (_text_in_entry("labels", ["ncii\x00"]), 400, "invalid-payload"),
    "lone surrogate in a label": (_text_in_entry("labels", ["\udfff"]), 400, "invalid-payload"),
    "NUL in list": (_text_field("list", "nc\x00ii"), 400, "invalid-payload"),
    "lone surrogate in list": (_text_field("list", "nc\udc00ii"), 400, "invalid-payload"),
    "NUL in nonce": (_text_field("nonce", "n\x00"), 400, "invalid-payload"),
    "lone surrogate in nonce": (_text_field("nonce", "n\ud800"), 400, "invalid-payload"),
    "NUL in timestamp": (
        _text_field("timestamp", "2026-01-01T00:00:00Z\x00"),
        400,
        "invalid-payload",
    ),
    "NUL in an unknown field": (_text_field("comment", "\x00"), 400, "invalid-payload"),
    "NUL in a member name": (_text_field("\x00", "x"), 400, "invalid-payload"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=str)
def test_bad_submission_is_refused_and_stores_nothing(
    alice: PartnerClient, shared_list: HashList, case: str
) -> None:
    build, status, slug = REFUSALS[case]
    body = build(alice)
    before = store_counts()

    response = alice.post("/api/v1/submissions", body)

    assert response.status_code == status, response.content
    assert problem(response) == slug
    assert store_counts() == before
    assert_refusal_audited(
        action="submission.create", status=status, slug=slug, partner=alice.partner
    )


@pytest.mark.parametrize(
    ("build", "pointer"),
    [
        (_text_in_entry("note", "a\x00b"), "/entries/0/note"),
        (_text_in_entry("note", "a\ud800b"), "/entries/0/note"),
        (_text_in_entry("labels", ["ok", "\x00"]), "/entries/0/labels/1"),
        (_text_field("list", "\x00"), "/list"),
        (_text_field("a/b~c", "\x00"), "/a~1b~0c"),
    ],
    ids=["nul-note", "surrogate-note", "nul-label", "nul-list", "escaped-name"],
)
def test_text_refusal_points_at_the_field(alice, shared_list, build, pointer) -> None:
    response = alice.post("/api/v1/submissions", build(alice))

    assert problem(response) == "invalid-payload"
    assert json.loads(response.content)["pointer"] == pointer


def test_refusal_names_the_first_problem_with_a_pointer(alice, shared_list) -> None:
    response = alice.post("/api/v1/submissions", _bad_second_entry(alice))

    body = json.loads(response.content)
    assert body["pointer"] == "/values/1/value"
    assert body["status"] == 400
    assert body["title"]
    assert body["detail"]


def test_batch_over_the_limit_is_too_large(alice, shared_list, settings) -> None:
    settings.SUBMISSION_MAX_ENTRIES = 3
    entries = [{"algorithm": "pdq", "value": pdq()} for _ in range(4)]
    before = store_counts()

    response = alice.submit("ncii", entries)

    assert response.status_code == 413
    assert problem(response) == "batch-too-large"
    assert json.loads(response.content)["limit"] == 3
    assert store_counts() == before
    assert alice.submit("ncii", entries[:3]).status_code == 201


def test_body_over_the_size_limit_is_too_large(alice, shared_list, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = store_counts()

    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq()} for _ in range(20)])

    assert response.status_code == 413
    assert problem(response) == "request-too-large"
    assert store_counts() == before


def test_hash_already_held_in_the_list_is_a_conflict(alice, shared_list) -> None:
    held = pdq()
    first = alice.submit("ncii", [{"algorithm": "pdq", "value": held}])
    held_id = json.loads(first.content)["entries"][0]["id"]
    before = store_counts()

    response = alice.submit(
        "ncii",
        [{"algorithm": "pdq", "value": pdq()}, {"algorithm": "pdq", "value": held.upper()}],
    )

    assert response.status_code == 409
    assert problem(response) == "entry-exists"
    body = json.loads(response.content)
    assert body["entry"] == held_id
    assert body["pointer"] == "/entries/1"
    assert store_counts() == before


def test_same_hash_under_another_algorithm_is_not_a_conflict(alice, shared_list) -> None:
    value = pdq()[:32]
    alice.submit("ncii", [{"algorithm": "md5", "value": value}])

    response = alice.submit("ncii", [{"algorithm": "phash", "value": value[:16]}])

    assert response.status_code == 201, response.content


def test_another_partners_envelope_is_refused(alice, bob, shared_list) -> None:
    envelope = alice.submission("ncii", [{"algorithm": "pdq", "value": pdq()}])
    before = store_counts()

    response = bob.post("/api/v1/submissions", envelope)

    assert response.status_code == 400
    assert problem(response) == "invalid-signature"
    assert store_counts() == before


# Accepted ----------------------------------------------------------------------------------


def _entry(client: PartnerClient, entry_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/entries/{entry_id}")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_uppercase_hex_is_stored_lowercase(alice, shared_list) -> None:
    value = pdq().upper()

    response = alice.submit("ncii", [{"algorithm": "pdq", "value": value}])

    assert response.status_code == 201, response.content
    (created,) = json.loads(response.content)["entries"]
    assert created["value"] == value.lower()
    assert _entry(alice, created["id"])["value"] == value.lower()
    assert Entry.objects.get().value == value.lower()


def test_same_envelope_twice_is_idempotent(alice, shared_list) -> None:
    envelope = alice.submission("ncii", [{"algorithm": "pdq", "value": pdq()} for _ in range(3)])
    first = alice.post("/api/v1/submissions", envelope)
    assert first.status_code == 201, first.content
    after_first = store_counts()

    second = alice.post("/api/v1/submissions", envelope)

    assert second.status_code == 200
    assert second.content == first.content
    assert store_counts() == after_first
    replay = AccessEvent.objects.order_by("-id").first()
    assert replay is not None
    assert replay.detail.get("replayed") is True


def test_two_partners_may_hold_the_same_hash_in_one_list(alice, bob, shared_list) -> None:
    value = pdq()

    first = alice.submit("ncii", [{"algorithm": "pdq", "value": value}])
    second = bob.submit("ncii", [{"algorithm": "pdq", "value": value}])

    assert first.status_code == 201, first.content
    assert second.status_code == 201, second.content
    holders = set(Entry.objects.filter(value=value).values_list("partner__name", flat=True))
    assert holders == {"alice", "bob"}


def test_envelope_from_an_independent_dsse_implementation_is_accepted(alice, shared_list) -> None:
    value = pdq()
    document = payload(entries=[{"algorithm": "pdq", "value": value, "labels": ["ncii"]}])
    envelope = SslibEnvelope(json.dumps(document).encode(), SUBMISSION_PAYLOAD_TYPE, {})
    signature = envelope.sign(CryptoSigner(alice.private_key))
    assert signature.keyid != alice.signing_key.key_id
    body = body_of(json.dumps(envelope.to_dict()).encode(), document.openings)

    response = alice.post("/api/v1/submissions", body)

    assert response.status_code == 201, response.content
    (created,) = json.loads(response.content)["entries"]
    entry = _entry(alice, created["id"])
    assert (entry["value"], entry["signing_key"]) == (value, alice.signing_key.key_id)
    # The server keeps the envelope in canonical form, its signed payload byte for byte, so
    # anybody can verify it again, and its digest is the one the leaf names.
    stored = alice.get(f"/api/v1/submissions/{entry['submission']}/envelope")
    assert hashlib.sha256(stored.content).hexdigest() == entry["envelope_sha256"]
    again = SslibEnvelope.from_dict(json.loads(stored.content))
    assert again.payload == envelope.payload
    assert again.verify([CryptoSigner(alice.private_key).public_key], 1)


def test_envelope_signed_by_another_of_the_partners_keys_is_accepted(alice, shared_list) -> None:
    second_key = key_generate()
    second = services.signing_key_register(
        partner=alice.partner, public_key=public_key_pem(second_key.public_key()), actor=ADMIN
    )
    envelope = signed(payload(), second_key)

    response = alice.post("/api/v1/submissions", envelope)

    assert response.status_code == 201, response.content
    (created,) = json.loads(response.content)["entries"]
    assert _entry(alice, created["id"])["signing_key"] == second.key_id


@pytest.mark.parametrize(
    "hint",
    ["other key of the partner", "unknown key", "absent", "empty"],
)
def test_keyid_hint_does_not_decide_verification(alice, shared_list, hint: str) -> None:
    other = services.signing_key_register(
        partner=alice.partner,
        public_key=public_key_pem(key_generate().public_key()),
        actor=ADMIN,
    )
    envelope = signed(payload(), alice.private_key)

    def edit(document: dict[str, Any]) -> None:
        signature = document["signatures"][0]
        if hint == "other key of the partner":
            signature["keyid"] = other.key_id
        elif hint == "unknown key":
            signature["keyid"] = key_id(key_generate().public_key())
        elif hint == "absent":
            del signature["keyid"]
        else:
            signature["keyid"] = ""

    response = alice.post("/api/v1/submissions", envelope_edit(envelope, edit))

    assert response.status_code == 201, response.content
    (created,) = json.loads(response.content)["entries"]
    assert _entry(alice, created["id"])["signing_key"] == alice.signing_key.key_id


def test_one_valid_signature_among_unknown_ones_is_enough(alice, shared_list) -> None:
    written = payload()
    document = json.dumps(written).encode()
    stranger = key_generate()
    signatures = [
        {
            "keyid": key_id(stranger.public_key()),
            "sig": _b64(stranger.sign(pae(SUBMISSION_PAYLOAD_TYPE, document))),
        },
        {"sig": _b64(alice.private_key.sign(pae(SUBMISSION_PAYLOAD_TYPE, document)))},
    ]
    envelope = json.dumps(
        {
            "payloadType": SUBMISSION_PAYLOAD_TYPE,
            "payload": _b64(document),
            "signatures": signatures,
        }
    ).encode()

    response = alice.post("/api/v1/submissions", body_of(envelope, written.openings))

    assert response.status_code == 201, response.content


def test_url_safe_unpadded_base64_is_accepted(alice, shared_list) -> None:
    # A note chosen so that standard base64 of the payload needs '+' and '/'.
    written = payload(entries=[{"algorithm": "pdq", "value": pdq(), "note": "???~~~>>>"}])
    document = json.dumps(written).encode()
    signature = alice.private_key.sign(pae(SUBMISSION_PAYLOAD_TYPE, document))

    def url_safe(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    assert {"-", "_"} & set(url_safe(document))
    envelope = json.dumps(
        {
            "payloadType": SUBMISSION_PAYLOAD_TYPE,
            "payload": url_safe(document),
            "signatures": [{"keyid": alice.signing_key.key_id, "sig": url_safe(signature)}],
        }
    ).encode()

    response = alice.post("/api/v1/submissions", body_of(envelope, written.openings))

    assert response.status_code == 201, response.content
    (created,) = json.loads(response.content)["entries"]
    assert _entry(alice, created["id"])["note"] == "???~~~>>>"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (rb'{"envelope\ud800": {}, "values": []}', "/envelope\\ud800"),
        (rb'{"envelope": {"payload\udc00": "x"}, "values": []}', "/envelope/payload\\udc00"),
        (rb'{"envelope": {}, "values": ["\ud800"]}', "/values/0"),
    ],
    ids=["body-member", "envelope-member", "value"],
)
def test_lone_surrogate_in_the_body_is_pointed_at_not_a_server_error(
    alice: PartnerClient, shared_list: HashList, body: bytes, pointer: str
) -> None:
    """A pointer naming a member with a lone surrogate still renders as UTF-8 JSON."""
    before = store_counts()

    response = alice.post("/api/v1/submissions", body)

    assert response.status_code == 400
    assert problem(response) == "malformed-request"
    assert json.loads(response.content)["pointer"] == pointer
    assert store_counts() == before
