"""Signed-note costs: signing and opening a checkpoint, verifying a cosignature.

What it measures
----------------
The client library's pure code (no database): `note_sign` of a checkpoint body with the log
key, `note_open` of that note with the log key and with the log key plus 20 cosigner keys
over a note carrying 20 cosignatures (what a partner checking a quorum does), and
`cosignature_verify` of one cosignature. Each is timed over `--seconds` and reported as
operations per second, microseconds per operation, and the ratio to its baseline measured in
the same run: a bare Ed25519 sign or verify (`cryptography`) of the same bytes, so the ratio is
what parsing and checking the note format costs on top of the cryptography.

Usage::

    PYTHONPATH=client .venv/bin/python bench/notes.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client.notes import (
    COSIGNATURE_V1,
    NoteSigner,
    checkpoint_format,
    cosignature_sign,
    cosignature_verify,
    note_open,
    note_sign,
    note_verifier,
)

ORIGIN = "consortium.example/log"
WITNESSES = 20


def rate(
    name: str, operation: Callable[[], object], seconds: float, baseline: float | None = None
) -> float:
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        operation()
        count += 1
    micros = elapsed / count * 1e6
    ratio = f"{micros / baseline:>6.2f}x baseline" if baseline else ""
    print(f"{name:<48} {count / elapsed:>8.0f}/s {micros:>9.1f} µs {ratio}")
    return micros


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    log = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    body = checkpoint_format(ORIGIN, 1_000_000, hashlib.sha256(b"root").digest())
    witnesses = [Ed25519PrivateKey.generate() for _ in range(WITNESSES)]
    cosigs = [
        cosignature_sign(
            name=f"w{i}.example", private_key=key, checkpoint_text=body, timestamp=1_700_000_000
        )
        for i, key in enumerate(witnesses)
    ]
    cosigners = [
        note_verifier(f"w{i}.example", key.public_key(), COSIGNATURE_V1)
        for i, key in enumerate(witnesses)
    ]
    note = note_sign(body, [log])
    cosigned = note_sign(body, [log], signatures=cosigs)

    raw = body.encode()
    public = log.private_key.public_key()
    signature = log.private_key.sign(raw)
    sign = rate("baseline: Ed25519 sign", lambda: log.private_key.sign(raw), args.seconds)
    verify = rate("baseline: Ed25519 verify", lambda: public.verify(signature, raw), args.seconds)
    rate("note_sign (checkpoint, log key)", lambda: note_sign(body, [log]), args.seconds, sign)
    rate("note_open (log key)", lambda: note_open(note, [log.verifier]), args.seconds, verify)
    rate(
        f"note_open ({WITNESSES} cosignatures, all keys known)",
        lambda: note_open(cosigned, [log.verifier, *cosigners]),
        args.seconds,
        verify * (WITNESSES + 1),
    )
    rate(
        "cosignature_verify (one)",
        lambda: cosignature_verify(cosigners[0], body, cosigs[0]),
        args.seconds,
        verify,
    )


if __name__ == "__main__":
    main()
