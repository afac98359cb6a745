"""Salted commitments to hash values: what a log leaf and a signed submission hold instead of
the value itself.

A leaf must keep verifying after a value is erased (a victim's or a court's request), and a
signature over a batch must not break when one of its values is forgotten. So both hold
SHA-256 over a domain tag, a random salt and the value; the value and its salt travel beside
them and can be deleted without touching a signed or hashed byte. The salt is chosen by the
submitting partner's client, 128 random bits, so that nobody who reads a leaf can test
whether a known file's hash is on a list by hashing it themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from consortium_client.hashvalues import hash_value_parse

# The domain tag keeps a commitment from being read as any other SHA-256 we compute.
COMMITMENT_DOMAIN = b"consortium-commitment-v1\x00"
SALT_BYTES = 16
SALT_PATTERN = re.compile(rf"[0-9a-f]{{{2 * SALT_BYTES}}}")
COMMITMENT_PATTERN = re.compile(r"[0-9a-f]{64}")


class CommitmentError(ValueError):
    """A salt or commitment that is malformed, or a value that does not match its commitment."""


def salt_new() -> str:
    """A fresh salt: 16 random bytes as 32 lowercase hex characters."""
    return secrets.token_hex(SALT_BYTES)


def salt_parse(salt: object) -> bytes:
    if not isinstance(salt, str) or not SALT_PATTERN.fullmatch(salt):
        raise CommitmentError(f"a salt is {2 * SALT_BYTES} lowercase hex characters")
    return bytes.fromhex(salt)


def commitment_parse(commitment: object) -> str:
    if not isinstance(commitment, str) or not COMMITMENT_PATTERN.fullmatch(commitment):
        raise CommitmentError("a commitment is 64 lowercase hex characters")
    return commitment


def commitment_of(algorithm: str, value: str, salt: str) -> str:
    """The commitment to `value` (normalised first) of `algorithm` under `salt`:
    hex SHA-256(domain ‖ salt bytes ‖ algorithm ‖ 0x00 ‖ value)."""
    normalised = hash_value_parse(algorithm, value)
    digest = hashlib.sha256(COMMITMENT_DOMAIN)
    digest.update(salt_parse(salt))
    digest.update(algorithm.encode("ascii") + b"\x00" + normalised.encode("ascii"))
    return digest.hexdigest()


def commitment_check(algorithm: str, value: str, salt: str, commitment: str) -> None:
    """Raise CommitmentError unless `value` and `salt` open `commitment`."""
    expected = commitment_of(algorithm, value, salt)
    if not hmac.compare_digest(expected, commitment_parse(commitment)):
        raise CommitmentError(f"the {algorithm} value and salt do not match the commitment")


def commitment_opens(algorithm: str, value: str, salt: str, commitment: str) -> bool:
    """Whether a stored, already normalised `value` and `salt` open `commitment`.

    For readers of many stored rows (an index loading millions of entries): no parsing,
    and False, never an exception, for a malformed value or salt, which cannot open a
    commitment made from a normalised one."""
    if not SALT_PATTERN.fullmatch(salt):
        return False
    try:
        value_bytes = value.encode("ascii")
    except UnicodeEncodeError:
        return False
    digest = hashlib.sha256(COMMITMENT_DOMAIN)
    digest.update(bytes.fromhex(salt))
    digest.update(algorithm.encode("ascii") + b"\x00" + value_bytes)
    return hmac.compare_digest(digest.hexdigest(), commitment)
