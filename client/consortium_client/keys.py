"""Ed25519 signing keys: generation, serialisation and the key id the consortium uses.

The key id is the hex SHA-256 of the raw 32-byte public key, so anybody holding the public
key computes the same id without asking the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyFormatError(ValueError):
    """A key that cannot be read."""


def key_generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key_raw(public_key)).hexdigest()


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_load(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError("not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError("the private key is not an Ed25519 key")
    return key


def public_key_load(data: bytes | str) -> Ed25519PublicKey:
    """Read a public key given as PEM (SubjectPublicKeyInfo) or as base64 of the raw 32 bytes."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise KeyFormatError("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError("the public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("a public key must be PEM or base64 of 32 raw bytes") from exc
    if len(raw) != 32:
        raise KeyFormatError("a raw Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)
