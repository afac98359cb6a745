"""Pushing checkpoints to outside witnesses (c2sp.org/tlog-witness, add-checkpoint).

A witness keeps, per log origin, the last checkpoint it cosigned; given a newer one with a
consistency proof from that one, it verifies the log's signature and the proof and returns
its timestamped cosignature (cosignature/v1). Served with the note, that cosignature tells
partners that the witness saw this very tree as an extension of what it saw before: the log
cannot show two partners two histories unless every witness they require colludes.

Witnesses are configured by the administrator only (LOG_WITNESSES: vkey and add-checkpoint
URL); nothing a partner sends chooses where the server connects. Even so a push is bounded:
HTTPS only (plain http only to this machine, when LOG_WITNESS_ALLOW_LOCAL_HTTP allows it),
no redirects followed, LOG_WITNESS_TIMEOUT for the whole exchange, answers capped at
WITNESS_ANSWER_MAX_BYTES. Nothing here runs inside the signer's transaction: pushes are
queued after a checkpoint commits (witness_push_task), and a witness that is down costs
retries of that task, never a checkpoint.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from audit.actors import WITNESS_PUSHER, Actor
from audit.models import Checkpoint, Cosignature
from audit.selectors import checkpoint_of_size, witness_cosigned_size
from audit.services import access_event_record
from audit.tree import tree_consistency_proof
from consortium_client.notes import (
    COSIGNATURE_V1,
    MAX_SIGNATURES,
    NoteError,
    NoteVerifier,
    cosignature_verify,
    signature_parse,
    vkey_parse,
)

logger = logging.getLogger(__name__)

WITNESS_ANSWER_MAX_BYTES = 64 * 1024
LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
TLOG_SIZE_CONTENT_TYPE = "text/x.tlog.size"
_TREE_SIZE_LINE = re.compile(rb"(0|[1-9][0-9]{0,18})\n")

# What each refusal of add-checkpoint means, for the operator reading the log line.
REFUSALS = {
    400: "the witness found the request malformed",
    403: "the witness trusts another key for this log's origin (LOG_ORIGIN)",
    404: "the witness does not know this log's origin: ask its operator to add the log",
    409: "the witness holds another checkpoint than the one the proof starts from",
    422: "the witness refused the consistency proof: it may hold a different tree (a fork)",
}


class WitnessUnavailable(Exception):
    """No answer in time, a broken connection or a 5xx: worth trying again later."""


@dataclass(frozen=True)
class Witness:
    """One outside witness: its cosignature/v1 verifier key (whose name is the witness's
    name) and the URL of its add-checkpoint endpoint."""

    verifier: NoteVerifier
    url: str

    @property
    def name(self) -> str:
        return self.verifier.name


def witness_parse(item: str, *, allow_local_http: bool = False) -> Witness:
    """One LOG_WITNESSES item, `<vkey> <add-checkpoint URL>`, refused unless the vkey is a
    valid cosignature/v1 key and the URL is https (or http to this machine, if allowed)."""
    parts = item.split()
    if len(parts) != 2:
        raise ImproperlyConfigured(
            f"LOG_WITNESSES item {item!r} must be '<witness vkey> <add-checkpoint URL>'"
        )
    vkey, url = parts
    try:
        verifier = vkey_parse(vkey)
    except NoteError as error:
        raise ImproperlyConfigured(f"LOG_WITNESSES vkey {vkey!r}: {error}") from error
    if verifier.key_type != COSIGNATURE_V1:
        raise ImproperlyConfigured(
            f"LOG_WITNESSES vkey {vkey!r} is not a cosignature/v1 (type 0x04) key"
        )
    parsed = urlsplit(url)
    local = parsed.scheme == "http" and allow_local_http and parsed.hostname in LOCAL_HOSTS
    if not (parsed.scheme == "https" or local) or not parsed.hostname:
        raise ImproperlyConfigured(
            f"LOG_WITNESSES URL {url!r} must be https (plain http only to this machine, "
            "with LOG_WITNESS_ALLOW_LOCAL_HTTP)"
        )
    if parsed.username or parsed.password or parsed.fragment:
        raise ImproperlyConfigured(f"LOG_WITNESSES URL {url!r} must carry no user or fragment")
    return Witness(verifier, url)


def witnesses_configured() -> list[Witness]:
    """The witnesses of LOG_WITNESSES, in order; ImproperlyConfigured names a bad item."""
    witnesses = [
        witness_parse(item, allow_local_http=settings.LOG_WITNESS_ALLOW_LOCAL_HTTP)
        for item in settings.LOG_WITNESSES
    ]
    names = [witness.name for witness in witnesses]
    if len(set(names)) != len(names):
        raise ImproperlyConfigured("LOG_WITNESSES names a witness twice")
    return witnesses


# The HTTP exchange


@dataclass(frozen=True)
class WitnessAnswer:
    status: int
    content_type: str
    body: bytes


def add_checkpoint_body(*, old: int, proof: list[bytes], note: str) -> bytes:
    """The add-checkpoint request: `old <size>`, one base64 line per proof hash, a blank
    line, then the checkpoint note (with every signature it carries)."""
    lines = [f"old {old}\n", *(base64.b64encode(h).decode("ascii") + "\n" for h in proof)]
    return ("".join(lines) + "\n" + note).encode("utf-8")


def _witness_post(witness: Witness, body: bytes) -> WitnessAnswer:
    """POST `body` to the witness's URL; WitnessUnavailable unless a whole answer of at most
    WITNESS_ANSWER_MAX_BYTES arrives within LOG_WITNESS_TIMEOUT. Redirects are not followed."""
    url = urlsplit(witness.url)
    timeout = settings.LOG_WITNESS_TIMEOUT
    deadline = time.monotonic() + timeout
    connection: http.client.HTTPConnection
    if url.scheme == "https":
        context = ssl.create_default_context()
        connection = http.client.HTTPSConnection(
            url.hostname or "", url.port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {"Content-Type": "text/plain; charset=utf-8", "User-Agent": "consortium-log"}
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        received = bytearray()
        # A witness that trickles its answer byte by byte is cut off at the deadline: the
        # socket timeout alone bounds each read, not the whole answer.
        while chunk := response.read1(16 * 1024):
            received += chunk
            if len(received) > WITNESS_ANSWER_MAX_BYTES:
                raise WitnessUnavailable(f"answer over {WITNESS_ANSWER_MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise WitnessUnavailable(f"no whole answer within {timeout:g} seconds")
        content_type = response.getheader("Content-Type", "")
        return WitnessAnswer(response.status, content_type, bytes(received))
    except (OSError, http.client.HTTPException) as error:
        raise WitnessUnavailable(f"{type(error).__name__}: {error}") from error
    finally:
        connection.close()


def _tlog_size(answer: WitnessAnswer) -> int | None:
    """The size a 409 says the witness last cosigned, or None if the answer is not one."""
    media_type = answer.content_type.split(";")[0].strip().lower()
    found = _TREE_SIZE_LINE.fullmatch(answer.body)
    if media_type != TLOG_SIZE_CONTENT_TYPE or found is None:
        return None
    return int(found.group(1))


def _cosignature_read(witness: Witness, checkpoint: Checkpoint, body: bytes) -> tuple[int, str]:
    """The witness's cosignature in a 200 answer (its timestamp and line), verified.

    The answer is signature lines. Lines by other keys are ignored, as the spec requires
    of a client; a line by the witness's key that does not verify refuses the whole answer,
    and so does an answer with no line by that key."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NoteError("the answer is not UTF-8") from error
    if not text.endswith("\n"):
        raise NoteError("the answer must be signature lines, each ending in a newline")
    lines = text[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the answer has more than {MAX_SIGNATURES} signature lines")
    checkpoint_text = checkpoint.note[: checkpoint.note.index("\n\n") + 1]
    key = (witness.verifier.name, witness.verifier.key_hash)
    found: tuple[int, str] | None = None
    for line in lines:
        signature = signature_parse(line)
        if (signature.name, signature.key_hash) != key:
            continue
        timestamp = cosignature_verify(witness.verifier, checkpoint_text, signature)
        found = found or (timestamp, signature.line)
    if found is None:
        raise NoteError("the answer carries no cosignature by the witness's key")
    return found


# The push


@dataclass(frozen=True)
class WitnessPush:
    """What one push did: the sizes the proofs started from, the witness's answers (HTTP
    statuses, in order), and whether a cosignature was stored."""

    witness: str
    size: int
    old: int
    answers: tuple[int, ...] = ()
    stored: bool = False
    problem: str = ""


def witness_push(*, witness: Witness, size: int, actor: Actor = WITNESS_PUSHER) -> WitnessPush:
    """Push this log's checkpoint of `size` to `witness` and store the cosignature it returns.

    The proof starts from the largest checkpoint the witness cosigned for us (0 if none). On
    a 409 the push is tried once more from the size the witness says it holds, if that is
    no larger than `size` and is a size this log signed (otherwise the witness holds a tree
    this log does not know it signed: logged as an error, nothing sent). A cosignature is
    stored only if it verifies with the witness's configured key. Nothing is sent if the
    witness already cosigned this or a later checkpoint.

    Every push that sends a request is one access event (`log.witness.push`, records 1 if a
    cosignature was stored). Raises WitnessUnavailable (after recording the event) when the
    witness did not answer or answered 5xx, so that the task retries later.
    """
    checkpoint = checkpoint_of_size(size=size)
    if checkpoint is None:
        raise ValueError(f"this log signed no checkpoint of size {size}")
    old = witness_cosigned_size(witness=witness.name)
    if old >= size:
        return WitnessPush(witness.name, size, old, problem="already cosigned")
    answers: list[int] = []
    olds = [old]
    try:
        answer = _add_checkpoint(witness, checkpoint, old)
        answers.append(answer.status)
        if answer.status == 409:
            known = _tlog_size(answer)
            if known is not None and known <= size and checkpoint_of_size(size=known):
                olds.append(known)
                answer = _add_checkpoint(witness, checkpoint, known)
                answers.append(answer.status)
            elif known is not None and known > size and checkpoint_of_size(size=known):
                # A later push got there first (pushes of two checkpoints raced): nothing
                # is wrong, and this older checkpoint will not be cosigned.
                return _push_end(actor, witness, checkpoint, olds, answers, "cosigned a later one")
            else:
                problem = (
                    f"the witness holds size {known}, which this log never signed: a fork, "
                    "or a database restored from an old backup"
                    if known is not None
                    else "a 409 without a text/x.tlog.size answer"
                )
                return _push_end(actor, witness, checkpoint, olds, answers, problem, error=True)
    except WitnessUnavailable as error:
        _push_end(actor, witness, checkpoint, olds, answers, str(error), error=True)
        raise
    if answer.status >= 500:
        problem = f"the witness answered {answer.status}"
        _push_end(actor, witness, checkpoint, olds, answers, problem, error=True)
        raise WitnessUnavailable(problem)
    if answer.status != 200:
        problem = REFUSALS.get(answer.status, f"unexpected answer {answer.status}")
        return _push_end(actor, witness, checkpoint, olds, answers, problem, error=True)
    try:
        timestamp, line = _cosignature_read(witness, checkpoint, answer.body)
    except NoteError as error:
        problem = f"the witness's answer does not verify: {error}"
        return _push_end(actor, witness, checkpoint, olds, answers, problem, error=True)
    return _push_end(actor, witness, checkpoint, olds, answers, "", cosignature=(timestamp, line))


def _add_checkpoint(witness: Witness, checkpoint: Checkpoint, old: int) -> WitnessAnswer:
    _, _, proof = tree_consistency_proof(old=old, new=checkpoint.size)
    # Only the log's own signature: partners' cosignatures are not the witness's business.
    body = add_checkpoint_body(old=old, proof=[] if old == 0 else proof, note=checkpoint.note)
    return _witness_post(witness, body)


@transaction.atomic
def _push_end(
    actor: Actor,
    witness: Witness,
    checkpoint: Checkpoint,
    olds: list[int],
    answers: list[int],
    problem: str,
    *,
    error: bool = False,
    cosignature: tuple[int, str] | None = None,
) -> WitnessPush:
    """Store the cosignature, if any, and the push's access event, in one transaction."""
    stored = False
    if cosignature is not None:
        _, stored = Cosignature.objects.get_or_create(
            checkpoint=checkpoint,
            witness=witness.name,
            defaults={"timestamp": cosignature[0], "line": cosignature[1]},
        )
    detail: dict[str, Any] = {"size": checkpoint.size, "old": olds, "answers": answers}
    if problem:
        detail["error"] = problem
    # No answer at all is recorded as 502, the status of a gateway whose upstream failed.
    status = answers[-1] if answers else 502
    access_event_record(
        actor=actor,
        action="log.witness.push",
        status=status,
        target=f"witness:{witness.name}",
        records=int(stored),
        detail=detail,
    )
    if error:
        logger.error("witness %s, checkpoint %d: %s", witness.name, checkpoint.size, problem)
    return WitnessPush(witness.name, checkpoint.size, olds[-1], tuple(answers), stored, problem)


def witnesses_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django system check: LOG_WITNESSES parses."""
    try:
        witnesses_configured()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="audit.E001")]
    return []
