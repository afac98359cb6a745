"""A small log built in memory the way the server builds it (issue 7 design, leaf version 2),
so that the verifier and the CLI are tested against what the server will serve."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client import merkle
from consortium_client.commitments import commitment_of, salt_new
from consortium_client.dsse import REVOCATION_PAYLOAD_TYPE, SUBMISSION_PAYLOAD_TYPE, envelope_sign
from consortium_client.keys import key_id
from consortium_client.notes import (
    COSIGNATURE_V1,
    NoteSigner,
    checkpoint_format,
    cosignature_sign,
    note_sign,
    note_verifier,
)
from consortium_client.strictjson import strict_json_dumps

ORIGIN = "consortium.example/log"
TIME = "2025-01-01T00:00:00Z"


def leaf_v2(index: int, event_type: str, **fields: Any) -> bytes:
    document = {
        "v": 2,
        "index": index,
        "type": event_type,
        "time": TIME,
        "nonce": secrets.token_hex(16),
        **fields,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def pdq() -> str:
    return secrets.token_hex(32)


@dataclass
class Witness:
    name: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def vkey(self) -> str:
        return note_verifier(self.name, self.key.public_key(), COSIGNATURE_V1).vkey

    def cosign(self, note: str, timestamp: int = 1_700_000_000) -> str:
        """`note` with this witness's cosignature line added."""
        body = note[: note.index("\n\n") + 1]
        line = cosignature_sign(
            name=self.name, private_key=self.key, checkpoint_text=body, timestamp=timestamp
        ).line
        return note + line


@dataclass
class SampleLog:
    signer: NoteSigner = field(
        default_factory=lambda: NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    )
    partner_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    leaves: list[bytes] = field(default_factory=list)
    openings: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> value, salt
    envelopes: dict[int, bytes] = field(default_factory=dict)  # index -> envelope bytes

    @property
    def vkey(self) -> str:
        return self.signer.verifier.vkey

    @property
    def key_id(self) -> str:
        return key_id(self.partner_key.public_key())

    def other(self, event_type: str = "signing_key_registered") -> int:
        index = len(self.leaves)
        self.leaves.append(leaf_v2(index, event_type, partner=1))
        return index

    def submit(self, values: list[str], labels: list[str] | None = None) -> list[int]:
        """Append a signed v2 submission of pdq `values`; return the leaf indexes."""
        labels = labels or ["ncii"]
        salts = [salt_new() for _ in values]
        entries = [
            {"algorithm": "pdq", "commitment": commitment_of("pdq", v, s), "labels": labels}
            for v, s in zip(values, salts, strict=True)
        ]
        payload = {"list": "ncii", "entries": entries, "timestamp": TIME, "nonce": "00" * 16}
        envelope = envelope_sign(
            SUBMISSION_PAYLOAD_TYPE, strict_json_dumps(payload), self.partner_key
        )
        indexes = []
        for entry, value, salt in zip(entries, values, salts, strict=True):
            index = len(self.leaves)
            self.leaves.append(
                leaf_v2(
                    index,
                    "entry_added",
                    list=1,
                    partner=1,
                    key=self.key_id,
                    envelope=hashlib.sha256(envelope).hexdigest(),
                    submission=1,
                    **entry,
                )
            )
            self.openings[index] = (value, salt)
            self.envelopes[index] = envelope
            indexes.append(index)
        return indexes

    def revoke(self, entry: int) -> int:
        payload = {"entries": [entry], "reason": "mistake", "timestamp": TIME, "nonce": "11" * 16}
        envelope = envelope_sign(
            REVOCATION_PAYLOAD_TYPE, strict_json_dumps(payload), self.partner_key
        )
        index = len(self.leaves)
        self.leaves.append(
            leaf_v2(
                index,
                "entry_revoked",
                entry=entry,
                list=1,
                partner=1,
                revoked_by="partner:1",
                reason="mistake",
                key=self.key_id,
                envelope=hashlib.sha256(envelope).hexdigest(),
                revocation=1,
            )
        )
        self.envelopes[index] = envelope
        return index

    def _subtree(self) -> merkle.SubtreeHash:
        return merkle.leaves_subtree_hash([merkle.leaf_hash(leaf) for leaf in self.leaves])

    def root(self, size: int) -> bytes:
        return merkle.root([merkle.leaf_hash(leaf) for leaf in self.leaves[:size]])

    def checkpoint(self, size: int | None = None, witnesses: tuple[Witness, ...] = ()) -> str:
        size = len(self.leaves) if size is None else size
        note = note_sign(checkpoint_format(ORIGIN, size, self.root(size)), [self.signer])
        for witness in witnesses:
            note = witness.cosign(note)
        return note

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        size = len(self.leaves) if size is None else size
        return merkle.inclusion_proof(index, size, self._subtree())

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.leaves) if new is None else new
        return merkle.consistency_proof(old, new, self._subtree())

    def inclusion_json(self, index: int, size: int | None = None) -> str:
        """The proof as `GET /api/v1/log/proofs/inclusion` serves it."""
        size = len(self.leaves) if size is None else size
        return json.dumps(
            {
                "index": index,
                "size": size,
                "leaf_hash": merkle.leaf_hash(self.leaves[index]).hex(),
                "root": self.root(size).hex(),
                "proof": [h.hex() for h in self.inclusion(index, size)],
            }
        )

    def consistency_json(self, old: int, new: int | None = None) -> str:
        """The proof as `GET /api/v1/log/proofs/consistency` serves it."""
        new = len(self.leaves) if new is None else new
        return json.dumps(
            {
                "from": old,
                "to": new,
                "old_root": self.root(old).hex(),
                "new_root": self.root(new).hex(),
                "proof": [h.hex() for h in self.consistency(old, new)],
            }
        )

    def entries_json(self, start: int, end: int, withheld: tuple[int, ...] = ()) -> bytes:
        """Leaves [start, end) as `GET /api/v1/log/entries` serves them, leaves verbatim."""
        items = [
            b'{"index":%d,"leaf_hash":"%s","withheld":true}'
            % (i, merkle.leaf_hash(self.leaves[i]).hex().encode())
            if i in withheld
            else b'{"index":%d,"leaf_hash":"%s","leaf":%b}'
            % (i, merkle.leaf_hash(self.leaves[i]).hex().encode(), self.leaves[i])
            for i in range(start, end)
        ]
        return b'{"entries":[%b]}' % b",".join(items)
