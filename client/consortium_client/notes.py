"""C2SP signed notes, verifier keys, checkpoints and cosignatures.

The formats are those of c2sp.org/signed-note, c2sp.org/tlog-checkpoint and
c2sp.org/tlog-cosignature (cosignature/v1), as implemented by Go's
golang.org/x/mod/sumdb/note, so that partners, auditors and witnesses check our checkpoints
with tools we did not write. Where the spec leaves a choice, this module picks the stricter
reading, and says why:

- base64 must be canonical (padded, no stray trailing bits), and key hashes in vkeys lower-case
  hex, so that one signature or key has exactly one spelling and a flipped character can never
  still verify. Go never produces anything else.
- Every signature line from a known key is verified, even a second one from the same key (Go
  skips repeats): the spec says a known key's signature MUST be verified, and a note carrying
  one good and one bad signature from one key is not what that key signed.
- Identical lines are reported once; at most 100 signature lines are read (as Go).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consortium_client.keys import public_key_raw

# Signature type bytes assigned by c2sp.org/signed-note.
ED25519 = 0x01
COSIGNATURE_V1 = 0x04  # timestamped Ed25519 cosignature, c2sp.org/tlog-cosignature

MAX_SIGNATURES = 100
MAX_TIMESTAMP = 2**63 - 1
MAX_TREE_SIZE = 2**63 - 1
HASH_SIZE = 32

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
COSIGNATURE_HEADER = "cosignature/v1\n"
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"

_HASH_HEX = re.compile(r"[0-9a-f]{8}")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note, key, checkpoint or cosignature that is malformed or does not verify."""


class NoteSignature(NamedTuple):
    """One signature line: the key's name, its 32-bit key hash, and the signature bytes."""

    name: str
    key_hash: int
    signature: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.key_hash.to_bytes(4, "big") + self.signature).decode("ascii")

    @property
    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {self.base64}\n"


class OpenedNote(NamedTuple):
    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def key_hash(name: str, key_type: int, public_key: bytes) -> int:
    """SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4], big-endian: the id in signature lines."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


def name_is_valid(name: str) -> bool:
    """Key names are non-empty, with no Unicode space and no plus (signed-note)."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and _text_is_valid(name)
    )


def _text_is_valid(text: str) -> bool:
    # Valid UTF-8 (no lone surrogates) and no control character other than newline.
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        # Non-canonical padding bits: a second spelling of the same bytes.
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted public key: Ed25519 (0x01) over the note text, or a cosigner (0x04).

    Compared and hashed by name, type and raw key, so verifiers can be set members.
    """

    name: str
    key_type: int
    public_key: Ed25519PublicKey = field(compare=False)
    raw_key: bytes = field(init=False)
    key_hash: int = field(init=False)

    def __post_init__(self) -> None:
        if not name_is_valid(self.name):
            raise NoteError(f"invalid key name {self.name!r}")
        if self.key_type not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"unsupported key type 0x{self.key_type:02x}")
        raw = public_key_raw(self.public_key)
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "raw_key", raw)
        object.__setattr__(self, "key_hash", key_hash(self.name, self.key_type, raw))

    @property
    def vkey(self) -> str:
        """The C2SP vkey text form: `<name>+<hex key hash>+<base64(type ‖ public key)>`."""
        material = bytes([self.key_type]) + self.raw_key
        return f"{self.name}+{self.key_hash:08x}+{_b64encode(material)}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        if self.key_type == ED25519:
            message = text
        else:
            if len(signature) != 8 + 64:
                return False
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > MAX_TIMESTAMP:
                return False
            message = cosignature_message(text.decode("utf-8"), timestamp)
            signature = signature[8:]
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    """An Ed25519 (0x01) note signing key and its name; compared by its verifier."""

    name: str
    private_key: Ed25519PrivateKey = field(compare=False)
    verifier: NoteVerifier = field(init=False)

    def __post_init__(self) -> None:
        verifier = NoteVerifier(self.name, ED25519, self.private_key.public_key())
        object.__setattr__(self, "verifier", verifier)

    @property
    def key_hash(self) -> int:
        return self.verifier.key_hash

    @property
    def skey(self) -> str:
        """Go's private key form: `PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 ‖ seed)>`."""
        seed = self.private_key.private_bytes_raw()
        material = _b64encode(bytes([ED25519]) + seed)
        return f"{PRIVATE_KEY_PREFIX}{self.name}+{self.key_hash:08x}+{material}"

    def sign(self, text: bytes) -> NoteSignature:
        return NoteSignature(self.name, self.key_hash, self.private_key.sign(text))


def note_verifier(name: str, public_key: Ed25519PublicKey, key_type: int = ED25519) -> NoteVerifier:
    """A verifier for `public_key` under `name`: type 0x01 for notes, 0x04 for a cosigner."""
    return NoteVerifier(name, key_type, public_key)


def _split_key(text: str, what: str) -> tuple[str, int, bytes]:
    name, _, rest = text.partition("+")
    hash_hex, _, material_b64 = rest.partition("+")
    if not name_is_valid(name):
        raise NoteError(f"malformed {what}: invalid key name")
    if not _HASH_HEX.fullmatch(hash_hex):
        raise NoteError(f"malformed {what}: the key hash must be 8 lower-case hex digits")
    material = _b64decode(material_b64, f"the {what}'s key")
    if not material:
        raise NoteError(f"malformed {what}: empty key")
    return name, int(hash_hex, 16), material


def vkey_parse(vkey: str) -> NoteVerifier:
    """Read a vkey, refusing a malformed one or one whose key hash does not match its key."""
    name, expected_hash, material = _split_key(vkey, "verifier key")
    key_type, raw = material[0], material[1:]
    if key_type not in (ED25519, COSIGNATURE_V1):
        raise NoteError(f"unsupported verifier key type 0x{key_type:02x}")
    if len(raw) != 32:
        raise NoteError("malformed verifier key: an Ed25519 public key is 32 bytes")
    if key_hash(name, key_type, raw) != expected_hash:
        raise NoteError("the verifier key's hash does not match its name and key")
    return NoteVerifier(name, key_type, Ed25519PublicKey.from_public_bytes(raw))


def skey_parse(skey: str) -> NoteSigner:
    """Read Go's `PRIVATE+KEY+...` form, refusing it unless its hash matches the derived key."""
    if not skey.startswith(PRIVATE_KEY_PREFIX):
        raise NoteError("malformed private key: it must start with PRIVATE+KEY+")
    name, expected_hash, material = _split_key(skey[len(PRIVATE_KEY_PREFIX) :], "private key")
    if material[0] != ED25519:
        raise NoteError(f"unsupported private key type 0x{material[0]:02x}")
    if len(material) != 33:
        raise NoteError("malformed private key: an Ed25519 seed is 32 bytes")
    signer = NoteSigner(name, Ed25519PrivateKey.from_private_bytes(material[1:]))
    if signer.key_hash != expected_hash:
        raise NoteError("the private key's hash does not match its name and key")
    return signer


def note_sign(
    text: str,
    signers: Sequence[NoteSigner],
    *,
    signatures: Iterable[NoteSignature] = (),
) -> str:
    """Sign `text` with each signer; `signatures` (e.g. cosignatures) are kept before them.

    A kept signature by the same key as one of `signers` is replaced by the new one.
    """
    if not text.endswith("\n"):
        raise NoteError("a note's text must end in a newline")
    if not _text_is_valid(text):
        raise NoteError("a note's text must be UTF-8 with no control character but newline")
    raw = text.encode("utf-8")
    new = [signer.sign(raw) for signer in signers]
    replaced = {(s.name, s.key_hash) for s in new}
    kept = [s for s in signatures if (s.name, s.key_hash) not in replaced]
    lines = kept + new
    if not lines:
        raise NoteError("a note needs at least one signature")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures")
    for signature in lines:
        if not name_is_valid(signature.name):
            raise NoteError(f"invalid key name {signature.name!r}")
    return text + "\n" + "".join(s.line for s in lines)


def note_open(message: bytes | str, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Parse a signed note and verify it against trusted keys.

    Signatures by unknown keys (name and hash not both matching) are returned unverified; a
    signature by a known key that fails refuses the whole note; so does a note with no
    verified signature.
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_hash)
        if slot in known and known[slot] != verifier:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_hash:08x}")
        known[slot] = verifier

    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("malformed note: not UTF-8") from exc
    if not _text_is_valid(message):
        raise NoteError("malformed note: control character other than newline")
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("malformed note: signature lines must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")

    raw_text = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for line in lines:
        signature = signature_parse(line)
        trusted = known.get((signature.name, signature.key_hash))
        if trusted is None:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if not trusted.verify(raw_text, signature.signature):
            raise NoteError(f"invalid signature for key {signature.name}+{signature.key_hash:08x}")
        if signature not in verified:
            verified.append(signature)
    if not verified:
        raise NoteError("the note has no signature by a trusted key")
    return OpenedNote(text, tuple(verified), tuple(unverified))


def signature_parse(line: str) -> NoteSignature:
    """Parse one signature line (`— <name> <base64>`, the final newline optional).

    For a cosignature posted on its own, before it is checked with `cosignature_verify`.
    """
    line = line.removesuffix("\n")
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("malformed note: a signature line must start with an em dash")
    name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not name_is_valid(name):
        raise NoteError("malformed note: invalid key name in a signature line")
    raw = _b64decode(encoded, "a signature")
    if len(raw) < 5:
        raise NoteError("malformed note: a signature is a key hash and at least one byte")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def checkpoint_format(
    origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()
) -> str:
    """The checkpoint body (the note text) of a tree of `size` leaves with that root."""
    checkpoint = Checkpoint(origin, size, root_hash, tuple(extensions))
    _checkpoint_check(checkpoint)
    lines = [origin, str(size), _b64encode(root_hash), *extensions]
    return "".join(line + "\n" for line in lines)


def _checkpoint_check(checkpoint: Checkpoint) -> None:
    if not checkpoint.origin or not _text_is_valid(checkpoint.origin) or "\n" in checkpoint.origin:
        raise NoteError("a checkpoint's origin must be one non-empty line")
    if not 0 <= checkpoint.size <= MAX_TREE_SIZE:
        raise NoteError("a checkpoint's tree size must be between 0 and 2^63-1")
    if len(checkpoint.root_hash) != HASH_SIZE:
        raise NoteError("a checkpoint's root hash must be 32 bytes")
    for line in checkpoint.extensions:
        if not line or "\n" in line or not _text_is_valid(line):
            raise NoteError("a checkpoint's extension lines must be non-empty lines")


def checkpoint_parse(text: str) -> Checkpoint:
    """Parse a checkpoint body, refusing anything `checkpoint_format` would not produce."""
    if not text.endswith("\n"):
        raise NoteError("malformed checkpoint: it must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("malformed checkpoint: origin, tree size and root hash are required")
    origin, size_text, root_text, *extensions = lines
    if not _TREE_SIZE.fullmatch(size_text):
        raise NoteError("malformed checkpoint: the tree size must be decimal, no leading zero")
    root_hash = _b64decode(root_text, "the checkpoint's root hash")
    checkpoint = Checkpoint(origin, int(size_text), root_hash, tuple(extensions))
    _checkpoint_check(checkpoint)
    return checkpoint


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a cosigner/v1 signs: header, time line, then the whole checkpoint body."""
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{checkpoint_text}".encode()


def cosignature_sign(
    *, name: str, private_key: Ed25519PrivateKey, checkpoint_text: str, timestamp: int
) -> NoteSignature:
    """A cosignature/v1 of a checkpoint body, made at `timestamp` (POSIX seconds)."""
    checkpoint_parse(checkpoint_text)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError("a cosignature's timestamp must be between 0 and 2^63-1")
    verifier = note_verifier(name, private_key.public_key(), COSIGNATURE_V1)
    signature = private_key.sign(cosignature_message(checkpoint_text, timestamp))
    return NoteSignature(name, verifier.key_hash, timestamp.to_bytes(8, "big") + signature)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The POSIX time a cosignature/v1 claims, read before (or without) verifying it."""
    if len(signature.signature) != 8 + 64:
        raise NoteError("a cosignature/v1 is an 8-byte timestamp and a 64-byte signature")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise NoteError("a cosignature's timestamp must be between 0 and 2^63-1")
    return timestamp


def cosignature_verify(
    verifier: NoteVerifier, checkpoint_text: str, signature: NoteSignature
) -> int:
    """Verify a cosignature of a checkpoint body and return its timestamp."""
    if verifier.key_type != COSIGNATURE_V1:
        raise NoteError("a cosignature is verified with a cosigner (0x04) key")
    checkpoint_parse(checkpoint_text)
    if (signature.name, signature.key_hash) != (verifier.name, verifier.key_hash):
        raise NoteError("the cosignature is not by this cosigner's key")
    if not verifier.verify(checkpoint_text.encode("utf-8"), signature.signature):
        raise NoteError(f"invalid cosignature for key {signature.name}+{signature.key_hash:08x}")
    return cosignature_timestamp(signature)
