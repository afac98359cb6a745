"""A C2SP tlog-witness for the tests, served over real HTTP on 127.0.0.1.

It follows c2sp.org/tlog-witness add-checkpoint to the letter, with the client library's
note and Merkle code: it keeps the last checkpoint it cosigned per origin, verifies the log's
signature with the keys it trusts for that origin, checks the old size against its own
(409 with its size as text/x.tlog.size), verifies the consistency proof (422), and answers a
cosignature/v1 line. It can also be told to misbehave, as real witnesses may: answer 5xx,
drop the answer after cosigning, or send a cosignature that does not verify.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium_client import merkle
from consortium_client.notes import (
    COSIGNATURE_V1,
    NoteError,
    NoteSignature,
    NoteVerifier,
    checkpoint_parse,
    cosignature_sign,
    note_open,
    note_verifier,
)

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)")


class Witness:
    """A witness named `name` that trusts `logs` (origin -> the log's verifier keys)."""

    def __init__(self, name: str, logs: dict[str, Iterable[NoteVerifier]]) -> None:
        self.name = name
        self.private_key = Ed25519PrivateKey.generate()
        self.verifier = note_verifier(name, self.private_key.public_key(), COSIGNATURE_V1)
        self.logs = {origin: list(keys) for origin, keys in logs.items()}
        # origin -> (size, root) of the latest checkpoint cosigned.
        self.state: dict[str, tuple[int, bytes]] = {}
        self.lock = threading.Lock()
        self.requests: list[bytes] = []
        self.answers: list[int] = []
        # Misbehaviour: answer 503 to the next `unavailable` requests; cosign but cut the
        # connection instead of answering; sign with a flipped byte.
        self.unavailable = 0
        self.drop_answer = False
        self.bad_signature = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/add-checkpoint"

    @property
    def config(self) -> str:
        """This witness as a LOG_WITNESSES item."""
        return f"{self.verifier.vkey} {self.url}"

    def start(self) -> Witness:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_checkpoint(self, body: bytes) -> tuple[int, str, bytes]:
        """The spec's add-checkpoint: (status, content type, answer body)."""
        try:
            text = body.decode("utf-8")
            head, separator, note = text.partition("\n\n")
            if not separator:
                raise ValueError("no blank line")
            old_line, *proof_lines = head.split("\n")
            found = _OLD_LINE.fullmatch(old_line)
            if found is None or len(proof_lines) > 63:
                raise ValueError("bad old line or too many proof lines")
            old = int(found.group(1))
            proof = [base64.b64decode(line, validate=True) for line in proof_lines]
            if any(len(h) != 32 for h in proof):
                raise ValueError("a proof line is not a hash")
            checkpoint_text = note[: note.index("\n\n") + 1]
            checkpoint = checkpoint_parse(checkpoint_text)
        except (UnicodeDecodeError, ValueError):
            return 400, "text/plain", b"malformed\n"
        trusted = self.logs.get(checkpoint.origin)
        if trusted is None:
            return 404, "text/plain", b"unknown log\n"
        try:
            note_open(note, trusted)
        except NoteError:
            return 403, "text/plain", b"signature not verified\n"
        if old > checkpoint.size:
            return 400, "text/plain", b"old size beyond the checkpoint\n"
        # Checking the old size and recording the new checkpoint is one atomic step (the
        # spec's race: two requests must never roll the recorded size back).
        with self.lock:
            known, known_root = self.state.get(checkpoint.origin, (0, merkle.EMPTY_ROOT))
            if old != known:
                return 409, "text/x.tlog.size", f"{known}\n".encode()
            if old == checkpoint.size and known_root != checkpoint.root_hash:
                return 409, "text/x.tlog.size", f"{known}\n".encode()
            try:
                merkle.consistency_verify(
                    old, checkpoint.size, known_root, checkpoint.root_hash, proof
                )
            except merkle.ProofError:
                return 422, "text/plain", b"consistency proof does not verify\n"
            self.state[checkpoint.origin] = (checkpoint.size, checkpoint.root_hash)
        signature = cosignature_sign(
            name=self.name,
            private_key=self.private_key,
            checkpoint_text=checkpoint_text,
            timestamp=int(time.time()),
        )
        if self.bad_signature:
            raw = bytearray(signature.signature)
            raw[-1] ^= 1
            signature = NoteSignature(signature.name, signature.key_hash, bytes(raw))
        return 200, "text/plain; charset=utf-8", signature.line.encode()


def _handler(witness: Witness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            witness.requests.append(body)
            if self.path != "/add-checkpoint":
                status, content_type, answer = 404, "text/plain", b"not found\n"
            elif witness.unavailable > 0:
                witness.unavailable -= 1
                status, content_type, answer = 503, "text/plain", b"try later\n"
            else:
                status, content_type, answer = witness.add_checkpoint(body)
            witness.answers.append(status)
            if witness.drop_answer:
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read witness.requests and witness.answers instead."""

    return Handler
