"""Following the log as a partner: fetch what the server serves, verify it, move on.

Each function asks the server (`ConsortiumApi`) for what one check needs and verifies it
with `consortium_client.verify`, against the partner's trusted state: the server is never
trusted for more than the bytes it sends. The CLI's `consortium log ...` commands are thin
wrappers over these.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client import leaves
from consortium_client.accesslog import AccessLogError, access_period_verify
from consortium_client.api import ConsortiumApi
from consortium_client.notes import cosignature_sign
from consortium_client.verify import (
    TrustedState,
    VerificationError,
    VerifiedCheckpoint,
    trusted_advance,
    trusted_checkpoint,
    verify_inclusion_proof,
)


def checkpoint_follow(api: ConsortiumApi, state: TrustedState) -> TrustedState:
    """The state advanced to the server's latest checkpoint.

    The checkpoint is verified with the trusted key, origin and witness quorum; a larger
    tree than the trusted one needs the consistency proof from the trusted size, fetched
    here; a smaller one or another root is refused (`trusted_advance`).
    """
    note = api.checkpoint()
    checkpoint = trusted_checkpoint(state, note)
    trusted = state.checkpoint
    proof = None
    if trusted is not None and 0 < trusted.size < checkpoint.size:
        proof = api.consistency_proof(trusted.size, checkpoint.size)
    return trusted_advance(state, note, proof)


def leaf_inclusion_check(api: ConsortiumApi, state: TrustedState, index: int) -> bytes:
    """Leaf `index`, fetched and proved to be in the trusted checkpoint's tree.

    VerificationError if there is no trusted checkpoint, the leaf is beyond it or withheld
    from this partner, or the proof does not lead to the trusted root.
    """
    checkpoint = state.checkpoint
    if checkpoint is None:
        raise VerificationError("no trusted checkpoint: run 'consortium log checkpoint' first")
    if not 0 <= index < checkpoint.size:
        raise VerificationError(
            f"leaf {index} is not in the trusted checkpoint of size {checkpoint.size}"
        )
    (entry,) = api.log_entries(index, index + 1)
    if entry.index != index:
        raise VerificationError(f"asked for leaf {index}, the server sent leaf {entry.index}")
    if entry.leaf is None:
        raise VerificationError(f"leaf {index} is withheld: this partner may not see it")
    verify_inclusion_proof(entry.leaf, api.inclusion_proof(index, checkpoint.size), checkpoint)
    return entry.leaf


def checkpoint_cosign(
    checkpoint: VerifiedCheckpoint,
    *,
    name: str,
    private_key: Ed25519PrivateKey,
    timestamp: int | None = None,
) -> str:
    """The signed note to post to `POST /api/v1/log/cosignatures`: the checkpoint's text
    and one cosignature/v1 line by `name` (the partner's name) with its signing key.

    Only a checkpoint the caller verified is to be cosigned: a witness vouches that it saw
    this tree extend the history it checked before.
    """
    body = checkpoint.note[: checkpoint.note.index("\n\n") + 1]
    line = cosignature_sign(
        name=name,
        private_key=private_key,
        checkpoint_text=body,
        timestamp=int(time.time()) if timestamp is None else timestamp,
    ).line
    return f"{body}\n{line}"


def access_period_check(events: Iterable[Mapping[str, Any]], leaf: Mapping[str, Any]) -> None:
    """Verify a period's access events against its `access_period_sealed` leaf's fields;
    VerificationError naming the first problem."""
    if leaf.get("type") != leaves.ACCESS_PERIOD_SEALED:
        raise VerificationError(
            f"the leaf is of type {leaf.get('type')!r}, not {leaves.ACCESS_PERIOD_SEALED}"
        )
    try:
        access_period_verify(events, leaf)
    except AccessLogError as exc:
        raise VerificationError(str(exc)) from exc
