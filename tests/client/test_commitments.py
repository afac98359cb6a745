import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortium_client.commitments import (
    CommitmentError,
    commitment_check,
    commitment_of,
    salt_new,
)

PDQ = "f" * 64


def test_commitment_is_sha256_over_domain_salt_algorithm_and_value():
    salt = "00" * 16
    expected = hashlib.sha256(
        b"consortium-commitment-v1\x00" + bytes(16) + b"pdq\x00" + PDQ.encode()
    ).hexdigest()
    assert commitment_of("pdq", PDQ, salt) == expected


def test_commitment_normalises_the_value_first():
    salt = salt_new()
    assert commitment_of("md5", "AB" * 16, salt) == commitment_of("md5", "ab" * 16, salt)


def test_salts_are_fresh():
    assert len({salt_new() for _ in range(100)}) == 100


@pytest.mark.parametrize("salt", ["", "00" * 15, "0G" * 16, "AA" * 16, "00" * 17, None])
def test_malformed_salt_is_refused(salt):
    with pytest.raises(CommitmentError):
        commitment_of("pdq", PDQ, salt)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))
def test_another_value_or_salt_does_not_open_a_commitment(salt, other):
    salt_hex, value = salt.hex(), bytes(32).hex()
    commitment = commitment_of("sha256", value, salt_hex)
    commitment_check("sha256", value, salt_hex, commitment)
    if other.hex() != value:
        with pytest.raises(CommitmentError):
            commitment_check("sha256", other.hex(), salt_hex, commitment)
    flipped = bytes([salt[0] ^ 1]) + salt[1:]
    with pytest.raises(CommitmentError):
        commitment_check("sha256", value, flipped.hex(), commitment)
