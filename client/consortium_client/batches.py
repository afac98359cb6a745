"""Submitting many hashes in signed batches, resumable after an interruption.

The hashes are cut into chunks of `batch_size`; each chunk is one signed submission. Before a
chunk is sent, its signed body (the envelope and the values beside it) is appended to a
journal and flushed to disk; after the server answers, the answer is appended too. Run again
with the same hashes, the journal says what to do with each chunk:

- answered: nothing is sent; the recorded answer is reported again;
- recorded but not answered (killed while sending, or before hearing back): the recorded
  body is sent again, byte for byte. The server de-duplicates a signed statement by what was
  signed, so if the first one arrived it answers 200 with the entries it stored then, and
  nothing is stored twice. Signing the chunk again would give a new nonce, a new statement,
  and duplicate entries: that is why the body is recorded before it is sent;
- not recorded: signed now, recorded, sent.

A torn last line (killed while writing it) is ignored: the chunk it held was never sent.
The journal of a finished run is kept, so that running the same command again sends
nothing; delete it to submit the same hashes once more.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client.api import ConsortiumApi
from consortium_client.keys import key_id
from consortium_client.payloads import submission_envelope

JOURNAL_VERSION = 1


class JournalError(Exception):
    """A journal that belongs to another run, or is in use by another process."""


@dataclass(frozen=True)
class ChunkResult:
    """The server's answer to one chunk; `resent` if its recorded body was sent again,
    `recorded` if the answer comes from the journal (nothing was sent)."""

    chunk: int
    answer: dict[str, Any]
    resent: bool = False
    recorded: bool = False


def batch_id(
    *, server: str, list_name: str, signer: str, batch_size: int, entries: Sequence[dict[str, Any]]
) -> str:
    """What identifies a run: the server, the list, the signing key, the chunking and the
    entries in order. The same command on the same input finds its journal again."""
    document = {
        "server": server,
        "list": list_name,
        "signer": signer,
        "batch_size": batch_size,
        "entries": list(entries),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _journal_read(path: Path, run: str) -> tuple[dict[int, bytes], dict[int, dict[str, Any]]]:
    bodies: dict[int, bytes] = {}
    answers: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return bodies, answers
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):  # the last line, with no newline after it
                break  # torn by a kill while writing: that chunk was never sent
            raise JournalError(f"{path} line {number} is not JSON") from None
        if "run" in record:
            if record["run"] != run:
                raise JournalError(f"{path} is the journal of other hashes or another list")
        elif "answer" in record:
            answers[int(record["chunk"])] = record["answer"]
        elif "body" in record:
            bodies[int(record["chunk"])] = record["body"].encode("utf-8")
    return bodies, answers


def _append(file: IO[bytes], record: dict[str, Any]) -> None:
    file.write(json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n")
    file.flush()
    # On disk before the request leaves: a body sent but not recorded would be signed
    # afresh on resume and stored twice.
    os.fsync(file.fileno())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as file:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one run at a time is on the user
            yield file
            return
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(f"{path} is in use by another submit") from None
        yield file


def submit_batches(
    api: ConsortiumApi,
    *,
    list_name: str,
    entries: Sequence[dict[str, Any]],
    private_key: Ed25519PrivateKey,
    batch_size: int,
    journal: Path,
    run: str,
    on_resume: Callable[[int, int], None] | None = None,
) -> Iterator[ChunkResult]:
    """Submit `entries` (dicts of algorithm, value, labels, quality) in signed chunks of
    `batch_size`, recording each in `journal` first; yield each chunk's answer in order.

    `run` is `batch_id(...)` of these arguments: a journal of another run is refused.
    `on_resume(answered, recorded)` is called once if the journal had chunks already.
    """
    chunks = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]
    with _locked(journal) as file:
        bodies, answers = _journal_read(journal, run)
        if bodies or answers:
            if on_resume is not None:
                on_resume(len(answers), len(bodies))
        else:
            header = {"run": run, "version": JOURNAL_VERSION, "list": list_name}
            _append(
                file, header | {"chunks": len(chunks), "signer": key_id(private_key.public_key())}
            )
        for number, chunk in enumerate(chunks):
            if number in answers:
                yield ChunkResult(number, answers[number], recorded=True)
                continue
            body = bodies.get(number)
            resent = body is not None
            if body is None:
                body = submission_envelope(list_name, chunk, private_key).body()
                _append(file, {"chunk": number, "body": body.decode("utf-8")})
            answer = api.post_body("submissions", body)
            _append(file, {"chunk": number, "answer": answer})
            yield ChunkResult(number, answer, resent=resent)
