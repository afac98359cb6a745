"""Offline verification of what the log serves: checkpoints, proofs, entries, envelopes.

Each `verify_*` function checks one claim and raises `VerificationError`, whose message is
one line naming what failed; nothing here talks to the server, so a partner or an auditor
verifies files they saved, with the code the server itself proves with (`merkle`, `notes`,
`commitments`, `dsse`).

`TrustedState` is what a verifier remembers between runs: the log's verifier key, its
origin, the witnesses it requires and the last checkpoint it verified. `trusted_advance`
moves it forward only along a consistent history: a smaller tree is a rollback, another root
at the same size or an inconsistent proof is a fork, and each is refused with its own line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consortium_client import merkle
from consortium_client.commitments import CommitmentError, commitment_check
from consortium_client.dsse import (
    FEEDBACK_PAYLOAD_TYPE,
    REVOCATION_PAYLOAD_TYPE,
    SUBMISSION_PAYLOAD_TYPE,
    EnvelopeError,
    envelope_parse,
    envelope_verify,
)
from consortium_client.keys import key_id
from consortium_client.leaves import LEAF_VERSION
from consortium_client.notes import (
    COSIGNATURE_V1,
    ED25519,
    NoteError,
    NoteVerifier,
    checkpoint_parse,
    cosignature_timestamp,
    note_open,
    vkey_parse,
)
from consortium_client.strictjson import StrictJsonError, strict_json_loads

TRUSTED_STATE_VERSION = 1
HASH_HEX = re.compile(r"[0-9a-f]{64}")


class VerificationError(Exception):
    """A claim that does not verify; the message is one line saying which check failed."""


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose note carries a good signature by the log key.

    `cosigners` holds the name and claimed time of each required witness whose cosignature
    verified; `note` is the whole signed note, as received.
    """

    origin: str
    size: int
    root: bytes
    note: str
    cosigners: tuple[tuple[str, int], ...] = ()


def _fail(message: str) -> VerificationError:
    # One line, whatever the underlying library put in its message.
    return VerificationError(" ".join(message.split()))


def _log_verifier(vkey_text: str) -> NoteVerifier:
    try:
        verifier = vkey_parse(vkey_text.strip())
    except NoteError as exc:
        raise _fail(f"the log key is not a valid vkey: {exc}") from exc
    if verifier.key_type != ED25519:
        raise _fail("the log key must be an Ed25519 (type 0x01) vkey")
    return verifier


def _witness_verifiers(witnesses: Iterable[str]) -> list[NoteVerifier]:
    verifiers = []
    for text in witnesses:
        try:
            verifier = vkey_parse(text.strip())
        except NoteError as exc:
            raise _fail(f"a witness key is not a valid vkey: {exc}") from exc
        if verifier.key_type != COSIGNATURE_V1:
            raise _fail(f"witness key {verifier.name} must be a cosignature/v1 (type 0x04) vkey")
        if verifier not in verifiers:
            verifiers.append(verifier)
    return verifiers


def verify_checkpoint(
    note: str | bytes,
    vkey_text: str,
    origin: str | None = None,
    *,
    witnesses: Iterable[str] = (),
    quorum: int = 0,
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint against the log's vkey, and its cosignatures.

    The origin must be `origin`, or the key's name when `origin` is None (the log signs
    with a key named for its origin). Cosignatures by `witnesses` (cosignature/v1 vkeys)
    are verified; fewer than `quorum` of them refuses the checkpoint. A signature line by
    a known key that does not verify refuses the whole note; lines by unknown keys are
    ignored, as C2SP signed-note requires.
    """
    log_key = _log_verifier(vkey_text)
    witness_keys = _witness_verifiers(witnesses)
    if not 0 <= quorum <= len(witness_keys):
        raise _fail(f"a quorum of {quorum} needs at least {quorum} witness keys")
    expected_origin = log_key.name if origin is None else origin
    try:
        opened = note_open(note, [log_key, *witness_keys])
    except NoteError as exc:
        raise _fail(f"checkpoint signature: {exc}") from exc
    slots = {(s.name, s.key_hash): s for s in opened.verified}
    if (log_key.name, log_key.key_hash) not in slots:
        raise _fail(f"the checkpoint is not signed by the log key {log_key.name}")
    try:
        parsed = checkpoint_parse(opened.text)
    except NoteError as exc:
        raise _fail(f"checkpoint body: {exc}") from exc
    if parsed.origin != expected_origin:
        raise _fail(f"the checkpoint's origin is {parsed.origin!r}, not {expected_origin!r}")
    cosigners = tuple(
        (key.name, cosignature_timestamp(slots[(key.name, key.key_hash)]))
        for key in witness_keys
        if (key.name, key.key_hash) in slots
    )
    if len(cosigners) < quorum:
        raise _fail(
            f"the checkpoint of size {parsed.size} is cosigned by {len(cosigners)} of the "
            f"required witnesses, fewer than the quorum of {quorum}"
        )
    text = note if isinstance(note, str) else note.decode("utf-8")
    return VerifiedCheckpoint(parsed.origin, parsed.size, parsed.root_hash, text, cosigners)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`.

    The leaf's own `index` field must say the same index: a leaf served at another position
    than the one it names is refused even if the proof holds.
    """
    document = _leaf_document(leaf)
    if document.get("index") != index:
        raise _fail(f"the leaf names index {document.get('index')!r}, not {index}")
    try:
        merkle.inclusion_verify(index, size, merkle.leaf_hash(leaf), proof, root)
    except merkle.ProofError as exc:
        raise _fail(f"inclusion: {exc}") from exc


def verify_consistency(
    old_size: int, old_root: bytes, new_size: int, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify that the tree of `old_size` leaves is a prefix of the tree of `new_size`."""
    try:
        merkle.consistency_verify(old_size, new_size, old_root, new_root, proof)
    except merkle.ProofError as exc:
        raise _fail(f"consistency: {exc}") from exc


def verify_inclusion_proof(
    leaf: bytes, proof: InclusionProof, checkpoint: VerifiedCheckpoint
) -> None:
    """Verify a served inclusion proof of `leaf` against a checkpoint already verified.

    The proof must be for the checkpoint's size, name the leaf's hash and the checkpoint's
    root (a proof claiming another root is a fork shown to this reader), and lead from
    the leaf to that root.
    """
    if proof.size != checkpoint.size:
        raise _fail(
            f"the proof is for size {proof.size}, the checkpoint is of size {checkpoint.size}"
        )
    if merkle.leaf_hash(leaf) != proof.leaf_hash:
        raise _fail(f"the leaf's hash is not the proof's leaf_hash for leaf {proof.index}")
    if proof.root != checkpoint.root:
        raise _fail(f"fork: the proof's root for size {proof.size} is not the checkpoint's")
    verify_inclusion(leaf, proof.index, proof.size, proof.hashes, checkpoint.root)


def verify_consistency_proof(
    proof: ConsistencyProof, old: VerifiedCheckpoint, new: VerifiedCheckpoint
) -> None:
    """Verify a served consistency proof between two checkpoints already verified: it must
    be between their sizes, claim their roots, and show the older tree a prefix of the newer."""
    if (proof.old_size, proof.new_size) != (old.size, new.size):
        raise _fail(
            f"the proof is from size {proof.old_size} to {proof.new_size}, "
            f"not from {old.size} to {new.size}"
        )
    if (proof.old_root, proof.new_root) != (old.root, new.root):
        raise _fail(
            f"fork: the proof's roots are not those of the checkpoints "
            f"of size {old.size} and {new.size}"
        )
    verify_consistency(old.size, old.root, new.size, new.root, proof.hashes)


def _leaf_document(leaf: bytes) -> dict[str, Any]:
    """A leaf as the log builds it: canonical JSON (sorted keys, no white space, ASCII).

    Anything else is refused, so that two verifiers never read one leaf two ways.
    """
    try:
        document = strict_json_loads(leaf)
    except StrictJsonError as exc:
        raise _fail(f"the leaf is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _fail("the leaf is not a JSON object")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if canonical.encode() != leaf:
        raise _fail("the leaf is not canonical JSON")
    return document


def _leaf_of_type(leaf: bytes, event_type: str) -> dict[str, Any]:
    document = _leaf_document(leaf)
    if document.get("v") != LEAF_VERSION:
        raise _fail(f"the leaf is version {document.get('v')!r}, not {LEAF_VERSION}")
    if document.get("type") != event_type:
        raise _fail(f"the leaf is of type {document.get('type')!r}, not {event_type}")
    return document


def verify_entry(
    leaf: bytes,
    value: str,
    salt: str,
    variants: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Verify that `value` and `salt` open the commitment of an `entry_added` leaf, and, for
    a leaf with variants, that `variants` (`[{"value", "salt"}]`, as the feed's `values`
    item carries them) open each of the leaf's variants, in order.

    Returns the leaf's fields.
    """
    document = _leaf_of_type(leaf, "entry_added")
    algorithm, commitment = document.get("algorithm"), document.get("commitment")
    if not isinstance(algorithm, str) or not isinstance(commitment, str):
        raise _fail("the leaf has no algorithm and commitment")
    try:
        commitment_check(algorithm, value, salt, commitment)
    except (CommitmentError, ValueError) as exc:
        raise _fail(f"entry {document['index']}: {exc}") from exc
    signed = document.get("variants") or []
    opened = list(variants or [])
    if not isinstance(signed, list) or len(signed) != len(opened):
        raise _fail(
            f"entry {document['index']}: the leaf has {len(signed)} variants, "
            f"{len(opened)} were given to open them"
        )
    for position, (variant, opening) in enumerate(zip(signed, opened, strict=True)):
        try:
            commitment_check(algorithm, opening["value"], opening["salt"], variant["commitment"])
        except (CommitmentError, ValueError, KeyError, TypeError) as exc:
            raise _fail(f"entry {document['index']}: variant {position}: {exc}") from exc
    return document


def _signed_payload(
    document: Mapping[str, Any],
    envelope: bytes,
    signing_public_key: Ed25519PublicKey,
    payload_type: str,
) -> dict[str, Any]:
    """The payload of `envelope` once it is shown to be the leaf's envelope, signed by the
    leaf's key, of `payload_type`, and strict JSON."""
    if not isinstance(envelope, bytes):
        raise _fail("the envelope must be the exact bytes the server stored")
    digest = hashlib.sha256(envelope).hexdigest()
    if document.get("envelope") is None or document.get("key") is None:
        raise _fail(f"leaf {document['index']} names no signed envelope (an administrator's act)")
    if digest != document["envelope"]:
        raise _fail(f"the envelope's SHA-256 is {digest}, not the leaf's {document['envelope']}")
    signer = key_id(signing_public_key)
    if signer != document["key"]:
        raise _fail(f"the public key has id {signer}, not the leaf's key {document['key']}")
    try:
        parsed = envelope_parse(envelope)
        envelope_verify(parsed, [(signer, signing_public_key)])
    except EnvelopeError as exc:
        raise _fail(f"envelope: {exc}") from exc
    if parsed.payload_type != payload_type:
        raise _fail(f"the envelope's payload type is {parsed.payload_type!r}, not {payload_type}")
    try:
        payload = strict_json_loads(parsed.payload)
    except StrictJsonError as exc:
        raise _fail(f"the signed payload is not strict JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise _fail("the signed payload is not a JSON object")
    return payload


def verify_envelope(
    leaf: bytes, envelope: bytes, signing_public_key: Ed25519PublicKey
) -> dict[str, Any]:
    """Verify that an `entry_added` leaf came from a submission its partner signed.

    The envelope's SHA-256 must be the leaf's `envelope`, the key's id the leaf's `key`,
    the DSSE signature must verify with that key, and the signed v2 payload must hold an
    entry with the leaf's algorithm, commitment, labels and variants (names and commitments,
    in order). Returns that signed entry.
    """
    document = _leaf_of_type(leaf, "entry_added")
    payload = _signed_payload(document, envelope, signing_public_key, SUBMISSION_PAYLOAD_TYPE)
    entries = payload.get("entries")
    if not isinstance(entries, list):
        raise _fail("the signed payload has no entries")
    wanted = {name: document.get(name) for name in ("algorithm", "commitment", "labels")}
    wanted["variants"] = document.get("variants") or None
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        # The leaf holds the signed labels as the server reads them: a set, sorted, and
        # none when the signed entry names none.
        labels = entry.get("labels", [])
        if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
            labels = sorted(set(labels))
        signed = {
            "algorithm": entry.get("algorithm"),
            "commitment": entry.get("commitment"),
            "variants": entry.get("variants") or None,
        }
        if signed | {"labels": labels} == wanted:
            return entry
    raise _fail(
        f"no signed entry has the leaf's algorithm, commitment, labels and variants "
        f"(entry {document.get('index')} of the log)"
    )


def verify_revocation(
    leaf: bytes, envelope: bytes, signing_public_key: Ed25519PublicKey
) -> dict[str, Any]:
    """Verify that an `entry_revoked` leaf came from a revocation signed by the leaf's key,
    whose revocation v1 payload names the leaf's `entry`. Returns the signed payload."""
    document = _leaf_of_type(leaf, "entry_revoked")
    payload = _signed_payload(document, envelope, signing_public_key, REVOCATION_PAYLOAD_TYPE)
    entries = payload.get("entries")
    entry = document.get("entry")
    # bool is an int in Python; a signed `true` must not revoke entry 1.
    if not isinstance(entries, list) or not any(type(e) is int and e == entry for e in entries):
        raise _fail(f"the signed revocation does not name entry {entry!r}")
    return payload


def verify_feedback(
    leaf: bytes, envelope: bytes, signing_public_key: Ed25519PublicKey
) -> dict[str, Any]:
    """Verify that an `entry_feedback` leaf came from a verdict signed by the leaf's key,
    whose feedback v1 payload gives the leaf's verdict, reason and grade on the leaf's
    `entry`. Returns the signed payload (its optional note is for people, not the log)."""
    document = _leaf_of_type(leaf, "entry_feedback")
    payload = _signed_payload(document, envelope, signing_public_key, FEEDBACK_PAYLOAD_TYPE)
    entry = payload.get("entry")
    if type(entry) is not int or entry != document.get("entry"):
        raise _fail(f"the signed verdict is on entry {entry!r}, not {document.get('entry')!r}")
    for name in ("verdict", "reason", "grade"):
        if payload.get(name) != document.get(name):
            raise _fail(f"the signed {name} is not the leaf's")
    return payload


# Trusted state


@dataclass(frozen=True)
class TrustedState:
    """What a verifier trusts: the log key, its origin, the witnesses and quorum it asks
    of every checkpoint, and the last checkpoint it verified (None before the first)."""

    vkey: str
    origin: str
    witnesses: tuple[str, ...] = ()
    quorum: int = 0
    checkpoint: VerifiedCheckpoint | None = field(default=None)

    def __post_init__(self) -> None:
        _log_verifier(self.vkey)
        if not 0 <= self.quorum <= len(_witness_verifiers(self.witnesses)):
            raise _fail(f"a quorum of {self.quorum} needs at least {self.quorum} witness keys")


def trusted_state_new(
    vkey_text: str,
    origin: str | None = None,
    *,
    witnesses: Iterable[str] = (),
    quorum: int = 0,
) -> TrustedState:
    """Trust a log key on first use; its name is the origin unless `origin` says otherwise."""
    vkey = vkey_text.strip()
    return TrustedState(
        vkey=vkey,
        origin=_log_verifier(vkey).name if origin is None else origin,
        witnesses=tuple(w.strip() for w in witnesses),
        quorum=quorum,
    )


def trusted_checkpoint(state: TrustedState, note: str | bytes) -> VerifiedCheckpoint:
    """Verify `note` with the trusted key, origin, witnesses and quorum of `state`."""
    return verify_checkpoint(
        note, state.vkey, state.origin, witnesses=state.witnesses, quorum=state.quorum
    )


def trusted_advance(
    state: TrustedState,
    new_checkpoint: str | bytes,
    consistency_proof: ConsistencyProof | Sequence[bytes] | None,
) -> TrustedState:
    """The state that trusts `new_checkpoint`, if it extends the trusted one.

    Refuses a smaller tree (rollback), another root at the same size (fork), and a new
    tree the proof does not show to extend the trusted one (fork). The proof is the
    server's (`consistency_proof_parse`), which must be from the trusted size and root to
    the new ones, or its bare hashes. Equal checkpoints keep the newly received note, which
    may carry more cosignatures.
    """
    new = trusted_checkpoint(state, new_checkpoint)
    old = state.checkpoint
    if isinstance(consistency_proof, ConsistencyProof):
        trusted_size = 0 if old is None else old.size
        if (consistency_proof.old_size, consistency_proof.new_size) != (trusted_size, new.size):
            raise _fail(
                f"the consistency proof is from size {consistency_proof.old_size} to "
                f"{consistency_proof.new_size}, not from the trusted size {trusted_size} "
                f"to {new.size}"
            )
        if old is not None and (consistency_proof.old_root, consistency_proof.new_root) != (
            old.root,
            new.root,
        ):
            raise _fail(
                f"fork: the consistency proof's roots are not those of the trusted checkpoint "
                f"of size {old.size} and the checkpoint of size {new.size}"
            )
        consistency_proof = consistency_proof.hashes
    if old is not None:
        if new.size < old.size:
            raise _fail(
                f"rollback: the checkpoint is of size {new.size}, "
                f"smaller than the trusted size {old.size}"
            )
        if new.size == old.size:
            if new.root != old.root:
                raise _fail(
                    f"fork: two roots for size {new.size}: "
                    f"trusted {_b64(old.root)}, received {_b64(new.root)}"
                )
        elif old.size > 0:
            if consistency_proof is None:
                raise _fail(f"no consistency proof from size {old.size} to {new.size}")
            try:
                merkle.consistency_verify(old.size, new.size, old.root, new.root, consistency_proof)
            except merkle.ProofError as exc:
                raise _fail(
                    f"fork: the checkpoint of size {new.size} does not extend the trusted "
                    f"checkpoint of size {old.size} ({exc})"
                ) from exc
    return replace(state, checkpoint=new)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise _fail(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"{what} is not valid base64") from exc
    if _b64(raw) != text:
        raise _fail(f"{what} is not canonical base64")
    return raw


def trusted_state_dumps(state: TrustedState) -> str:
    document: dict[str, Any] = {
        "version": TRUSTED_STATE_VERSION,
        "vkey": state.vkey,
        "origin": state.origin,
        "witnesses": list(state.witnesses),
        "quorum": state.quorum,
        "checkpoint": None,
    }
    if state.checkpoint is not None:
        document["checkpoint"] = {
            "size": state.checkpoint.size,
            "root": _b64(state.checkpoint.root),
            "note": state.checkpoint.note,
        }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def trusted_state_loads(text: str | bytes) -> TrustedState:
    """Read a trusted-state file, re-verifying its checkpoint against its key.

    The file is the verifier's own memory, but a checkpoint in it is trusted only if its
    note still verifies and says the size and root the file claims.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else text
    try:
        document = strict_json_loads(raw)
    except StrictJsonError as exc:
        raise _fail(f"the trusted state is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != TRUSTED_STATE_VERSION:
        raise _fail(f"the trusted state is not a version {TRUSTED_STATE_VERSION} state")
    vkey, origin = document.get("vkey"), document.get("origin")
    witnesses, quorum = document.get("witnesses", []), document.get("quorum", 0)
    if not (isinstance(vkey, str) and isinstance(origin, str)):
        raise _fail("the trusted state needs a vkey and an origin")
    if not (isinstance(witnesses, list) and all(isinstance(w, str) for w in witnesses)):
        raise _fail("the trusted state's witnesses must be a list of vkeys")
    if type(quorum) is not int:
        raise _fail("the trusted state's quorum must be an integer")
    state = TrustedState(vkey=vkey, origin=origin, witnesses=tuple(witnesses), quorum=quorum)
    saved = document.get("checkpoint")
    if saved is None:
        return state
    if not isinstance(saved, dict) or not isinstance(saved.get("note"), str):
        raise _fail("the trusted state's checkpoint needs a size, a root and a note")
    checkpoint = verify_checkpoint(saved["note"], vkey, origin, witnesses=witnesses)
    claimed = (saved.get("size"), _b64decode(saved.get("root"), "the trusted root"))
    if (checkpoint.size, checkpoint.root) != claimed:
        raise _fail("the trusted state's size and root are not those of its checkpoint note")
    return replace(state, checkpoint=checkpoint)


def trusted_state_load(path: Path) -> TrustedState:
    """Read the trusted-state file at `path` (OSError if it cannot be read)."""
    return trusted_state_loads(path.read_bytes())


def trusted_state_save(path: Path, state: TrustedState) -> None:
    """Write `state` to `path` atomically, mode 0600: a crash leaves the old file or the new.

    The temporary file is in the same directory, so the rename never crosses file systems.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates the file with mode 0600 already; say so for readers.
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(trusted_state_dumps(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# What the log's read API serves, parsed strictly: proofs and leaves, as saved from the API


@dataclass(frozen=True)
class InclusionProof:
    """`GET /api/v1/log/proofs/inclusion`: leaf `index` is in the tree of `size` leaves.

    `leaf_hash` and `root` are what the server claims; a verifier checks the leaf it holds
    against `leaf_hash` and the proof against the root of a checkpoint it verified, never
    against the `root` the proof itself carries.
    """

    index: int
    size: int
    leaf_hash: bytes
    root: bytes
    hashes: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    """`GET /api/v1/log/proofs/consistency`: the tree of `old_size` leaves is a prefix of
    the tree of `new_size`; the roots are the server's claims, as for `InclusionProof`."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    hashes: list[bytes]


@dataclass(frozen=True)
class LogEntry:
    """One item of `GET /api/v1/log/entries`: the leaf's bytes, or None when withheld
    (an event the reader may not see: only its hash is served)."""

    index: int
    leaf_hash: bytes
    leaf: bytes | None


def inclusion_proof_parse(text: str | bytes) -> InclusionProof:
    """`{"index", "size", "leaf_hash", "root", "proof": [hex, ...]}`, as the server serves it."""
    document = _api_document(text, "the proof", {"index", "size", "leaf_hash", "root", "proof"})
    index, size = _count(document, "index"), _count(document, "size")
    if index >= size:
        raise _fail(f"the proof is for leaf {index}, outside a tree of size {size}")
    return InclusionProof(
        index,
        size,
        _hash(document["leaf_hash"], "the proof's leaf_hash"),
        _hash(document["root"], "the proof's root"),
        _hashes(document["proof"]),
    )


def consistency_proof_parse(text: str | bytes) -> ConsistencyProof:
    """`{"from", "to", "old_root", "new_root", "proof": [hex, ...]}`, as the server serves it."""
    document = _api_document(text, "the proof", {"from", "to", "old_root", "new_root", "proof"})
    old, new = _count(document, "from"), _count(document, "to")
    if old > new:
        raise _fail(f"the proof is from size {old} to the smaller size {new}")
    return ConsistencyProof(
        old,
        new,
        _hash(document["old_root"], "the proof's old_root"),
        _hash(document["new_root"], "the proof's new_root"),
        _hashes(document["proof"]),
    )


def log_entries_parse(text: str | bytes) -> list[LogEntry]:
    """`{"entries": [{"index", "leaf_hash", "leaf"} | {"index", "leaf_hash", "withheld"}]}`.

    The server splices each leaf in verbatim, and a leaf is canonical JSON, so its exact
    bytes are the canonical encoding of what was parsed; each must hash to its `leaf_hash`
    (a leaf served in any other spelling is refused, not silently re-encoded). Indexes must
    be consecutive.
    """
    document = _api_document(text, "the log entries", {"entries"})
    items = document["entries"]
    if not isinstance(items, list):
        raise _fail("the log entries' 'entries' must be a list")
    found: list[LogEntry] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(f"log entry {position} is not a JSON object")
        if item.keys() not in ({"index", "leaf_hash", "leaf"}, {"index", "leaf_hash", "withheld"}):
            raise _fail(f"log entry {position} has the fields {sorted(item)}")
        index = _count(item, "index")
        if found and index != found[-1].index + 1:
            raise _fail(f"log entry {index} follows entry {found[-1].index}")
        leaf_hash = _hash(item["leaf_hash"], f"the leaf_hash of log entry {index}")
        if "withheld" in item:
            if item["withheld"] is not True:
                raise _fail(f"log entry {index}: 'withheld' must be true")
            found.append(LogEntry(index, leaf_hash, None))
            continue
        leaf = _canonical(item["leaf"])
        if merkle.leaf_hash(leaf) != leaf_hash:
            raise _fail(f"log entry {index}: the leaf does not hash to its leaf_hash")
        found.append(LogEntry(index, leaf_hash, leaf))
    return found


def leaf_file_read(raw: bytes, index: int | None = None) -> bytes:
    """The bytes of a leaf from a file holding either the leaf itself (a final newline is
    the file's, never the leaf's: canonical JSON never ends in white space) or an answer of
    `GET /api/v1/log/entries` holding it: leaf `index`, or its only leaf if `index` is None.
    """
    text = raw.removesuffix(b"\n").removesuffix(b"\r")
    if not text.startswith(b'{"entries":'):
        return text
    entries = log_entries_parse(text)
    if index is None:
        if len(entries) != 1:
            raise _fail(f"the log entries hold {len(entries)} leaves: say which (--index)")
        (entry,) = entries
    else:
        found = [entry for entry in entries if entry.index == index]
        if not found:
            raise _fail(f"the log entries hold no leaf {index}")
        (entry,) = found
    if entry.leaf is None:
        raise _fail(f"leaf {entry.index} is withheld: this partner may not see it")
    return entry.leaf


def _canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _api_document(text: str | bytes, what: str, fields: set[str]) -> dict[str, Any]:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    try:
        document = strict_json_loads(raw)
    except StrictJsonError as exc:
        raise _fail(f"{what} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _fail(f"{what} is not a JSON object")
    if document.keys() != fields:
        raise _fail(f"{what} has the fields {sorted(document)}, not {sorted(fields)}")
    return document


def _count(document: Mapping[str, Any], name: str) -> int:
    value = document[name]
    # bool is an int in Python, never a size.
    if type(value) is not int or value < 0:
        raise _fail(f"{name!r} must be a non-negative integer")
    return value


def _hash(text: object, what: str) -> bytes:
    # Lower-case hex only, as the server writes it: one hash, one spelling.
    if not isinstance(text, str) or not HASH_HEX.fullmatch(text):
        raise _fail(f"{what} must be 64 lower-case hex characters")
    return bytes.fromhex(text)


def _hashes(items: object) -> list[bytes]:
    if not isinstance(items, list):
        raise _fail("the proof's 'proof' must be a list of hashes")
    return [_hash(item, f"proof hash {i}") for i, item in enumerate(items)]
