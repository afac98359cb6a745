"""`consortium serve-match`: a warm mirror index answering on a local socket.

Protocol: line-delimited JSON over a Unix domain socket (or TCP on 127.0.0.1); each request
is one line holding one JSON object, answered by one line holding one JSON object, in order,
on the same connection, which stays open for the next request.

    request:  {"hashes": [{"algorithm": "pdq", "value": "9f..."}, ...],
               "radius": {"pdq": 40}, "limit": 10, "id": <anything>}
    answer:   {"id": <as sent>, "cursor": 1234,
               "results": [{"algorithm": "pdq", "value": "9f...", "truncated": false,
                            "matches": [{"entry": 17, "list": "ncii", "distance": 4, ...}]}]}
    request:  {"op": "status"}
    answer:   {"cursor": 1234, "entries": {"pdq": 1000000, ...}}
    failure:  {"id": <as sent, if it could be read>, "error": "one line saying what is wrong"}

`radius`, `limit` (1 to MAX_LIMIT, default 10) and `id` are optional. A request line longer
than MAX_REQUEST_BYTES is answered with an error and the connection is closed (the rest of
the line cannot be told from the next request). Any other bad request gets an error line and
the connection stays usable: nothing a client sends stops the server.

The index follows the mirror: a watcher polls `meta.cursor` (one indexed read) every `poll`
seconds and applies what sync changed since (`MirrorMatcher.advance`), or loads the mirror
afresh if the file was replaced or its cursor went back. Requests keep being answered from
the index as it was meanwhile, and an entry revoked since is never shown (its row is read).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from consortium_client.hashvalues import HashValueError
from consortium_client.mirror_index import (
    DEFAULT_LIMIT,
    MirrorMatch,
    MirrorMatcher,
    QueryResult,
)
from consortium_client.mirror_store import MirrorStoreError

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20
MAX_HASHES = 10_000
MAX_LIMIT = 100
# A client that sends nothing for this long is disconnected, so idle connections cannot
# hold threads forever.
IDLE_SECONDS = 300.0


class MatchServerError(Exception):
    """The match server could not be reached or answered with an error."""


class _BadRequest(ValueError):
    pass


class MatchService:
    """What answers requests: the current matcher, kept current by `watch`."""

    def __init__(self, path: Path, *, tables: bool = True) -> None:
        self.path = path
        self.tables = tables
        self.matcher = MirrorMatcher.load(path, tables=tables)
        self._reload = threading.Lock()

    def answer(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line (never raises for a bad request)."""
        request_id: Any = None
        try:
            try:
                request = json.loads(line)
            except (UnicodeDecodeError, ValueError) as exc:
                raise _BadRequest("a request is one JSON object on one line") from exc
            if not isinstance(request, dict):
                raise _BadRequest("a request is one JSON object on one line")
            request_id = request.get("id")
            answer = self._answer(request)
        except (_BadRequest, HashValueError) as exc:
            answer = {"error": str(exc)}
        except MirrorStoreError as exc:
            answer = {"error": f"the mirror cannot be read: {exc}"}
        except Exception:
            # A bug must cost one answer, never the server.
            logger.exception("a match request failed")
            answer = {"error": "internal error; see the server's log"}
        if request_id is not None:
            answer = {"id": request_id, **answer}
        return answer

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        matcher = self.matcher  # one matcher for the whole request, even across a reload
        op = request.get("op", "match")
        if op == "status":
            return {
                "cursor": matcher.cursor,
                "entries": {name: len(index) for name, index in matcher.indexes.items()},
            }
        if op != "match":
            raise _BadRequest(f"unknown op {op!r}: 'match' or 'status'")
        hashes = request.get("hashes")
        if not isinstance(hashes, list) or not hashes:
            raise _BadRequest("'hashes' is a non-empty list of {algorithm, value} objects")
        if len(hashes) > MAX_HASHES:
            raise _BadRequest(f"at most {MAX_HASHES} hashes a request")
        queries = []
        for item in hashes:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("algorithm"), str)
                and isinstance(item.get("value"), str)
            ):
                raise _BadRequest("each hash is an object with string algorithm and value")
            queries.append((item["algorithm"], item["value"]))
        radii = request.get("radius") or {}
        if not isinstance(radii, dict) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in radii.values()
        ):
            raise _BadRequest("'radius' maps algorithm names to integers")
        limit = request.get("limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise _BadRequest(f"'limit' is an integer from 1 to {MAX_LIMIT}")
        results = matcher.search(queries, radii=radii, limit=limit)
        return {"cursor": matcher.cursor, "results": [result_json(r) for r in results]}

    def refresh(self) -> bool:
        """Follow the mirror once; returns whether anything changed."""
        with self._reload:
            matcher = self.matcher
            try:
                if not matcher.changed_file():
                    return matcher.advance()
            except MirrorStoreError:
                pass  # the cursor went back: load afresh
            self.matcher = MirrorMatcher.load(self.path, tables=self.tables)
            return True

    def watch(self, stop: threading.Event, poll: float) -> None:
        """Refresh every `poll` seconds until `stop` is set; a failure is logged and retried."""
        while not stop.wait(poll):
            try:
                if self.refresh():
                    logger.info("index now at cursor %s", self.matcher.cursor)
            except (MirrorStoreError, OSError, ValueError) as exc:
                logger.warning("cannot follow the mirror: %s", exc)


def result_json(result: QueryResult) -> dict[str, Any]:
    return {
        "algorithm": result.algorithm,
        "value": result.value,
        "truncated": result.truncated,
        "matches": [match.as_json() for match in result.matches],
    }


class _Handler(socketserver.StreamRequestHandler):
    timeout = IDLE_SECONDS
    server: _UnixServer | _TcpServer

    def handle(self) -> None:
        service = self.server.service
        while True:
            try:
                line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            except (OSError, TimeoutError):
                return
            if not line:
                return
            if len(line) > MAX_REQUEST_BYTES:
                self._send({"error": f"a request line is at most {MAX_REQUEST_BYTES} bytes"})
                return
            if not line.strip():
                continue
            if not self._send(service.answer(line)):
                return

    def _send(self, answer: Mapping[str, Any]) -> bool:
        try:
            self.wfile.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
            self.wfile.flush()
        except OSError:
            return False
        return True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: MatchService) -> None:
        self.service = service
        super().__init__(path, _Handler)


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, service: MatchService) -> None:
        self.service = service
        # Loopback only: the protocol has no authentication.
        super().__init__(("127.0.0.1", port), _Handler)


MatchServer = _UnixServer | _TcpServer


def server_open(
    service: MatchService, *, socket_path: Path | None, port: int | None
) -> MatchServer:
    """Bind the server: a Unix socket at `socket_path` (mode 0600, in a directory made 0700 if
    missing), or 127.0.0.1:`port`. A stale socket file is replaced; a live one is refused."""
    if port is not None:
        return _TcpServer(port, service)
    if socket_path is None:
        raise ValueError("a socket path or a port is needed")
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if socket_path.exists() or socket_path.is_symlink():
        if not stat.S_ISSOCK(socket_path.lstat().st_mode):
            raise MatchServerError(f"{socket_path} exists and is not a socket")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(socket_path))
            raise MatchServerError(f"a server already answers on {socket_path}")
        socket_path.unlink()
    # Only this user may connect: a match reveals what the mirror holds.
    previous = os.umask(0o177)
    try:
        return _UnixServer(str(socket_path), service)
    finally:
        os.umask(previous)


def server_address(text: str) -> tuple[str, str | int]:
    """('tcp', port) for 'tcp:PORT' or '127.0.0.1:PORT'; ('unix', path) otherwise."""
    for prefix in ("tcp:", "127.0.0.1:", "localhost:"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            return "tcp", int(text[len(prefix) :])
    return "unix", text


class MatchClient:
    """A connection to `serve-match`; one request at a time."""

    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        kind, where = server_address(address)
        try:
            if kind == "tcp":
                self._socket = socket.create_connection(("127.0.0.1", int(where)), timeout)
            else:
                self._socket = socket.socket(socket.AF_UNIX)
                self._socket.settimeout(timeout)
                self._socket.connect(str(where))
        except OSError as exc:
            raise MatchServerError(
                f"cannot reach the match server at {address}: {exc.strerror or exc}"
            ) from exc
        self._file = self._socket.makefile("rwb")

    def request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self._file.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            self._file.flush()
            line = self._file.readline(64 * MAX_REQUEST_BYTES)
        except OSError as exc:
            raise MatchServerError(f"the match server failed: {exc}") from exc
        if not line:
            raise MatchServerError("the match server closed the connection")
        try:
            answer = json.loads(line)
        except ValueError as exc:
            raise MatchServerError("the match server answered with something not JSON") from exc
        if not isinstance(answer, dict):
            raise MatchServerError("the match server answered with something not an object")
        if "error" in answer:
            raise MatchServerError(f"the match server refused: {answer['error']}")
        return dict(answer)

    def search(
        self,
        queries: Sequence[tuple[str, str]],
        *,
        radii: Mapping[str, int] | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[QueryResult]:
        """`MirrorMatcher.search`, answered by the server."""
        results: list[QueryResult] = []
        for first in range(0, len(queries), MAX_HASHES):
            answer = self.request(
                {
                    "hashes": [
                        {"algorithm": a, "value": v} for a, v in queries[first : first + MAX_HASHES]
                    ],
                    "radius": dict(radii or {}),
                    "limit": limit,
                }
            )
            for item in answer["results"]:
                results.append(
                    QueryResult(
                        item["algorithm"],
                        item["value"],
                        [MirrorMatch.from_json(found) for found in item["matches"]],
                        bool(item["truncated"]),
                    )
                )
        return results

    def close(self) -> None:
        self._file.close()
        self._socket.close()

    def __enter__(self) -> MatchClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
