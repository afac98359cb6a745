"""Signed notes, vkeys, checkpoints and cosignatures follow the C2SP specs and Go's note package."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium_client.notes import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    NoteError,
    NoteSignature,
    NoteSigner,
    checkpoint_format,
    checkpoint_parse,
    cosignature_message,
    cosignature_sign,
    cosignature_timestamp,
    cosignature_verify,
    key_hash,
    note_open,
    note_sign,
    note_verifier,
    signature_parse,
    skey_parse,
    vkey_parse,
)

# Test vectors of golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestNewSigner,
# TestSignerVerifier, TestOpen), copied verbatim.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
)
# Mangled keys of TestNewVerifier: wrong key length and unknown algorithm, hashes adjusted.
GO_BAD_VKEYS = [
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
]

# Test vectors of github.com/transparency-dev/formats, note/note_cosigv1_test.go
# (TestCoSigV1NewVerifier, TestCoSigV1Timestamp), copied verbatim: a cosigner key published in
# the 0x04 vkey form, a cosignature/v1 made at 1727964367, and a plain 0x01 signature.
REMORA_COSIGNER_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
TD_COSIGNATURE = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXO"
    "RmnFBOBA=="
)
TD_PLAIN_SIGNATURE = (
    "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
)

ORIGIN = "consortium.example/log"
ROOT = hashlib.sha256(b"root").digest()

names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="+"),
    min_size=1,
    max_size=20,
).filter(lambda s: not any(c.isspace() for c in s))
note_texts = st.lists(
    st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), max_size=40),
    min_size=1,
    max_size=5,
).map(lambda lines: "".join(line + "\n" for line in lines))


def signer(name: str = ORIGIN) -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate())


def flips(data: bytes) -> list[bytes]:
    """Every single-byte change of `data`: each position XORed with a few masks."""
    return [
        data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]
        for i in range(len(data))
        for mask in (0x01, 0x20, 0x80, 0xFF)
    ]


def test_go_vectors_verifier_and_signer_keys_parse() -> None:
    peter = vkey_parse(PETER_VKEY)
    assert (peter.name, peter.key_hash, peter.key_type) == ("PeterNeumann", 0xC74F20A3, ED25519)
    assert peter.vkey == PETER_VKEY
    private = skey_parse(PETER_SKEY)
    assert private.skey == PETER_SKEY
    assert private.verifier == peter
    assert vkey_parse(ENOCH_VKEY).key_hash == 0xAF0CFE78


def test_sign_reproduces_go_signed_note() -> None:
    assert note_sign(GO_TEXT, [skey_parse(PETER_SKEY)]) == GO_TEXT + "\n" + PETER_SIG


def test_open_go_note_with_one_known_and_one_unknown_key() -> None:
    opened = note_open(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [vkey_parse(PETER_VKEY)])
    assert opened.text == GO_TEXT
    assert [(s.name, s.key_hash) for s in opened.verified] == [("PeterNeumann", 0xC74F20A3)]
    assert [(s.name, s.key_hash) for s in opened.unverified] == [("EnochRoot", 0xAF0CFE78)]
    both = note_open(
        (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(),
        [vkey_parse(PETER_VKEY), vkey_parse(ENOCH_VKEY)],
    )
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()


def test_open_drops_repeated_identical_lines_like_go() -> None:
    message = GO_TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG
    opened = note_open(message, [vkey_parse(PETER_VKEY)])
    assert len(opened.verified) == 1
    assert len(opened.unverified) == 1


@pytest.mark.parametrize(
    "message",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
        GO_TEXT + "\n" + PETER_SIG * 101,
        GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:],
    ],
)
def test_open_refuses_go_malformed_notes(message: str) -> None:
    with pytest.raises(NoteError):
        note_open(message, [vkey_parse(PETER_VKEY)])


def test_open_refuses_invalid_utf8() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        note_open(b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode(), [vkey_parse(PETER_VKEY)])


def test_open_refuses_a_note_without_a_trusted_signature() -> None:
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        note_open(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


def test_open_ignores_a_key_that_shares_only_the_name_or_only_the_hash() -> None:
    # signed-note: unknown keys are ignored even if they share a name or an id, not both.
    known = signer("log.example")
    impostor_same_name = signer("log.example")
    text = "hello\n"
    message = note_sign(text, [known, impostor_same_name])
    opened = note_open(message, [known.verifier])
    assert [s.key_hash for s in opened.verified] == [known.key_hash]
    assert [s.key_hash for s in opened.unverified] == [impostor_same_name.key_hash]


def test_open_refuses_a_second_bad_signature_by_a_known_key() -> None:
    # Go skips repeats of a verified key; the spec says a known key's signature must verify.
    key = signer()
    good = note_sign("hello\n", [key])
    forged = NoteSignature(key.name, key.key_hash, bytes(64))
    with pytest.raises(NoteError, match="invalid signature"):
        note_open(good + forged.line, [key.verifier])


def test_open_accepts_one_key_given_twice() -> None:
    # Two different keys behind one (name, hash) would take a 32-bit collision; the same key
    # listed twice (say, from two configuration sources) is not ambiguous.
    key = signer()
    again = vkey_parse(key.verifier.vkey)
    assert again == key.verifier
    assert len({again, key.verifier}) == 1
    assert note_open(note_sign("x\n", [key]), [key.verifier, again]).text == "x\n"


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n", "cr\r\n"])
def test_sign_refuses_text_that_cannot_be_opened(text: str) -> None:
    with pytest.raises(NoteError):
        note_sign(text, [signer()])


def test_sign_refuses_no_signer_and_bad_names() -> None:
    with pytest.raises(NoteError, match="at least one"):
        note_sign("x\n", [])
    for name in ["", "a b", "a+b", "a\u00a0b"]:
        with pytest.raises(NoteError, match="invalid key name"):
            NoteSigner(name, Ed25519PrivateKey.generate())


def test_sign_keeps_other_signatures_and_replaces_the_signers_own() -> None:
    log, other = signer("log.example"), signer("other.example")
    first = note_open(note_sign("x\n", [log, other]), [log.verifier, other.verifier])
    again = note_sign("x\n", [log], signatures=first.verified)
    opened = note_open(again, [log.verifier, other.verifier])
    assert [s.name for s in opened.verified] == ["other.example", "log.example"]


@settings(max_examples=50, deadline=None)
@given(text=note_texts, name=names)
def test_sign_open_round_trip(text: str, name: str) -> None:
    key = signer(name)
    opened = note_open(note_sign(text, [key]), [key.verifier])
    assert opened.text == text
    assert [(s.name, s.key_hash) for s in opened.verified] == [(name, key.key_hash)]


@settings(max_examples=10, deadline=None)
@given(text=note_texts)
def test_every_byte_flip_of_a_note_fails(text: str) -> None:
    key = signer()
    message = note_sign(text, [key]).encode()
    for flipped in flips(message):
        with pytest.raises(NoteError):
            note_open(flipped, [key.verifier])


def test_every_byte_flip_of_a_verifier_key_is_refused_or_is_another_key() -> None:
    key = signer()
    vkey = key.verifier.vkey.encode()
    message = note_sign("x\n", [key])
    for flipped in flips(vkey):
        try:
            verifier = vkey_parse(flipped.decode("utf-8"))
        except (NoteError, UnicodeDecodeError):
            continue
        with pytest.raises(NoteError):
            note_open(message, [verifier])


def test_every_mangling_of_go_vkey_and_skey_is_refused() -> None:
    # TestNewVerifier / TestNewSigner: every proper substring and every byte+1 is refused.
    for key, parse in [(PETER_VKEY, vkey_parse), (PETER_SKEY, skey_parse)]:
        data = key.encode()
        candidates = [
            data[i:j]
            for i in range(len(data) + 1)
            for j in range(i + 1, len(data) + 1)
            if (i, j) != (0, len(data))
        ]
        candidates += [data[:i] + bytes([data[i] + 1]) + data[i + 1 :] for i in range(len(data))]
        for candidate in candidates:
            with pytest.raises(NoteError):
                parse(candidate.decode())  # type: ignore[operator]
    for bad in GO_BAD_VKEYS:
        with pytest.raises(NoteError):
            vkey_parse(bad)


def test_vkey_refuses_uppercase_hash() -> None:
    # Go accepts upper case; we accept one spelling per key, the one Go and we produce.
    with pytest.raises(NoteError, match="lower-case"):
        vkey_parse(PETER_VKEY.replace("c74f20a3", "C74F20A3"))


def test_open_refuses_non_canonical_base64_signature() -> None:
    # "AM=" and "AN=" decode to the same bytes: the second spelling is refused, so that no
    # changed character of a signature line still verifies.
    assert PETER_SIG.endswith("JnAM=\n")
    respelled = PETER_SIG.replace("JnAM=", "JnAN=")
    with pytest.raises(NoteError, match="canonical"):
        note_open(GO_TEXT + "\n" + respelled, [vkey_parse(PETER_VKEY)])


@settings(max_examples=30, deadline=None)
@given(name=names, key_type=st.sampled_from([ED25519, COSIGNATURE_V1]))
def test_vkey_and_skey_round_trip(name: str, key_type: int) -> None:
    private = Ed25519PrivateKey.generate()
    verifier = note_verifier(name, private.public_key(), key_type)
    assert vkey_parse(verifier.vkey) == verifier
    raw = base64.b64decode(verifier.vkey.split("+", 2)[2])
    assert raw[0] == key_type
    assert verifier.key_hash == key_hash(name, key_type, raw[1:])
    assert skey_parse(NoteSigner(name, private).skey).private_key.private_bytes_raw() == (
        private.private_bytes_raw()
    )


def test_checkpoint_format_matches_the_spec_example() -> None:
    # c2sp.org/tlog-checkpoint example body.
    root = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    text = checkpoint_format("example.com/behind-the-sofa", 20852163, root)
    assert text == (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert checkpoint_parse(text) == Checkpoint("example.com/behind-the-sofa", 20852163, root)


@settings(max_examples=50, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1),
        max_size=3,
    ),
)
def test_checkpoint_round_trip(size: int, root: bytes, extensions: list[str]) -> None:
    text = checkpoint_format(ORIGIN, size, root, extensions)
    assert checkpoint_parse(text) == Checkpoint(ORIGIN, size, root, tuple(extensions))


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n1\n",
        f"{ORIGIN}\n01\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n+1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n{2**63}\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\n\n",
        f"\n1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\next\tension\n",
    ],
)
def test_checkpoint_parse_refuses_malformed_bodies(text: str) -> None:
    with pytest.raises(NoteError, match="checkpoint"):
        checkpoint_parse(text)


def test_signed_checkpoint_opens_and_parses() -> None:
    log = signer(ORIGIN)
    note = note_sign(checkpoint_format(ORIGIN, 7, ROOT), [log])
    assert checkpoint_parse(note_open(note, [log.verifier]).text).size == 7


def test_cosignature_signs_the_spec_message() -> None:
    # c2sp.org/tlog-cosignature, "Ed25519 signed message" example.
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosignature_message(body, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + body.encode()
    )
    private = Ed25519PrivateKey.generate()
    cosig = cosignature_sign(
        name="witness.example.com/w1",
        private_key=private,
        checkpoint_text=body,
        timestamp=1679315147,
    )
    assert cosig.signature[:8] == (1679315147).to_bytes(8, "big")
    assert len(cosig.signature) == 72
    private.public_key().verify(cosig.signature[8:], cosignature_message(body, 1679315147))
    verifier = note_verifier("witness.example.com/w1", private.public_key(), COSIGNATURE_V1)
    assert cosig.key_hash == key_hash(
        "witness.example.com/w1", 0x04, verifier.public_key.public_bytes_raw()
    )
    assert cosignature_verify(verifier, body, cosig) == 1679315147


def test_cosigned_checkpoint_opens_with_log_and_witness_keys() -> None:
    log = signer(ORIGIN)
    body = checkpoint_format(ORIGIN, 3, ROOT)
    witness = Ed25519PrivateKey.generate()
    cosig = cosignature_sign(
        name="witness.example", private_key=witness, checkpoint_text=body, timestamp=1_700_000_000
    )
    note = note_sign(body, [log], signatures=[cosig])
    witness_key = note_verifier("witness.example", witness.public_key(), COSIGNATURE_V1)
    opened = note_open(note, [log.verifier, witness_key])
    assert {s.name for s in opened.verified} == {ORIGIN, "witness.example"}
    # A partner that trusts only the log sees the cosignature as unverified, not as an error.
    assert note_open(note, [log.verifier]).unverified == (cosig,)
    # The same Ed25519 key as a 0x01 key has another key hash: no cross-type confusion.
    plain = note_verifier("witness.example", witness.public_key(), ED25519)
    assert plain.key_hash != witness_key.key_hash


def test_every_byte_flip_of_a_cosignature_fails() -> None:
    body = checkpoint_format(ORIGIN, 3, ROOT)
    witness = Ed25519PrivateKey.generate()
    verifier = note_verifier("witness.example", witness.public_key(), COSIGNATURE_V1)
    cosig = cosignature_sign(
        name="witness.example", private_key=witness, checkpoint_text=body, timestamp=42
    )
    for flipped in flips(cosig.signature):
        with pytest.raises(NoteError, match="invalid cosignature"):
            cosignature_verify(verifier, body, cosig._replace(signature=flipped))
    for flipped_body in flips(body.encode()):
        try:
            text = flipped_body.decode("utf-8")
        except UnicodeDecodeError:
            continue
        with pytest.raises(NoteError):
            cosignature_verify(verifier, text, cosig)


def test_cosignature_refuses_wrong_key_type_timestamp_and_signer() -> None:
    body = checkpoint_format(ORIGIN, 3, ROOT)
    witness = Ed25519PrivateKey.generate()
    cosig = cosignature_sign(
        name="w.example", private_key=witness, checkpoint_text=body, timestamp=1
    )
    with pytest.raises(NoteError, match="cosigner"):
        cosignature_verify(note_verifier("w.example", witness.public_key()), body, cosig)
    other = note_verifier("w.example", Ed25519PrivateKey.generate().public_key(), COSIGNATURE_V1)
    with pytest.raises(NoteError, match="not by this cosigner"):
        cosignature_verify(other, body, cosig)
    with pytest.raises(NoteError, match="timestamp"):
        cosignature_sign(name="w.example", private_key=witness, checkpoint_text=body, timestamp=-1)
    with pytest.raises(NoteError, match="checkpoint"):
        cosignature_sign(
            name="w.example",
            private_key=witness,
            checkpoint_text="not\na checkpoint\n",
            timestamp=1,
        )
    # A timestamp above 2^63-1 never verifies, even when the signature over it is good.
    huge = 2**64 - 1
    signature = witness.sign(cosignature_message(body, huge))
    forged = cosig._replace(signature=huge.to_bytes(8, "big") + signature)
    verifier = note_verifier("w.example", witness.public_key(), COSIGNATURE_V1)
    with pytest.raises(NoteError, match="invalid cosignature"):
        cosignature_verify(verifier, body, forged)


def test_transparency_dev_cosigner_vkey_parses() -> None:
    remora = vkey_parse(REMORA_COSIGNER_VKEY)
    assert (remora.name, remora.key_type, remora.key_hash) == (
        "remora.n621.de",
        COSIGNATURE_V1,
        0xDA77ADE7,
    )
    assert remora.vkey == REMORA_COSIGNER_VKEY
    for bad in ["bananas.sigstore.dev+12344556", "rekor.sigstore.dev+12345678+AwEB"]:
        with pytest.raises(NoteError):
            vkey_parse(bad)


def test_transparency_dev_cosignature_timestamp() -> None:
    cosig = signature_parse(f"\u2014 witness.example {TD_COSIGNATURE}")
    assert cosignature_timestamp(cosig) == 1727964367
    plain = signature_parse(f"\u2014 log.example {TD_PLAIN_SIGNATURE}\n")
    with pytest.raises(NoteError, match="8-byte timestamp"):
        cosignature_timestamp(plain)


def test_spec_example_cosignature_line_parses() -> None:
    # c2sp.org/tlog-cosignature example: the witness line carries the time of the spec's
    # signed-message example, 1679315147.
    line = (
        "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9"
        "dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    )
    cosig = signature_parse(line)
    assert cosig.name == "witness.example.com/w1"
    assert cosignature_timestamp(cosig) == 1679315147
    assert cosig.line == line + "\n"


@pytest.mark.parametrize(
    "line",
    [
        "witness.example AAAA",
        "\u2014 witness.example",
        "\u2014 witness.example ",
        "\u2014  witness.example AAAAAAA=",
        "\u2014 witness.example AAAA",
        "\u2014 witness.example AAAAAAA=\n\n",
    ],
)
def test_signature_parse_refuses_malformed_lines(line: str) -> None:
    with pytest.raises(NoteError):
        signature_parse(line)
