"""A small HTTP client for the Consortium API (standard library only)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from consortium_client.merkle import Tile
from consortium_client.verify import (
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    consistency_proof_parse,
    inclusion_proof_parse,
    log_entries_parse,
)

if TYPE_CHECKING:
    from consortium_client.payloads import SignedSubmission


class ApiError(Exception):
    """A refusal from the server (its problem+json) or a failure to reach it."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        slug = str(problem.get("type", "")).removeprefix("urn:consortium:problem:")
        title = problem.get("title", "request failed")
        detail = problem.get("detail", "")
        super().__init__(f"{title}: {detail} [{slug}, HTTP {status}]" if detail else title)


class ServerUnreachable(ApiError):
    """No answer from the server: refused, timed out, unknown host, cut off."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(0, {"title": "cannot reach the server", "detail": reason})
        self.args = (f"cannot reach the server at {base_url}: {reason}",)


def _unreachable_reason(error: BaseException, timeout: float) -> str:
    """One short phrase for why a connection failed, instead of urllib's nested reprs."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running, and is the URL right?)"
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} seconds"
    if isinstance(error, socket.gaierror):
        return "unknown host name"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


class ConsortiumApi:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the server URL must start with http:// or https://")
        # The API's own prefix is added to every path; a URL copied with it still works.
        self.base_url = base_url.rstrip("/").removesuffix("/api/v1")
        self.api_key = api_key
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.base_url + path,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": content_type,
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"title": exc.reason, "detail": raw[:200].decode("utf-8", "replace")}
            raise ApiError(exc.code, problem) from None
        except (OSError, http.client.HTTPException) as exc:
            # URLError, refused and reset connections, timeouts while reading: all OSError.
            raise ServerUnreachable(self.base_url, _unreachable_reason(exc, self.timeout)) from None

    def _json(self, status: int, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            # Something answered, but not this API (a proxy's page, another site at --url).
            detail = f"{self.base_url} answered with something other than JSON"
            raise ApiError(status, {"title": "not a Consortium server", "detail": detail}) from None

    def get(self, path: str, **params: Any) -> Any:
        return self._json(*self._get_raw(path, **params))

    def get_bytes(self, path: str, **params: Any) -> bytes:
        """GET `path` and return the answer's exact bytes (to verify or hash as served)."""
        return self._get_raw(path, **params)[1]

    def _get_raw(self, path: str, **params: Any) -> tuple[int, bytes]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._request("GET", f"/api/v1/{path}" + (f"?{query}" if query else ""))

    # The verifiable log. Answers are returned as served (notes as text, proofs and leaves
    # parsed strictly by consortium_client.verify): verify them before trusting them.

    def log_key(self) -> str:
        """The log's verifier key (C2SP vkey text), to trust on first use."""
        return self.get_bytes("log/key").decode("utf-8").strip()

    def checkpoint(self) -> str:
        """The latest signed checkpoint note, with the cosignatures collected for it."""
        return self.get_bytes("log/checkpoint").decode("utf-8")

    def log_entries(self, start: int, end: int) -> list[LogEntry]:
        """Leaves [start, end) verbatim; an event this partner may not see is withheld."""
        return log_entries_parse(self.get_bytes("log/entries", start=start, end=end))

    def inclusion_proof(self, index: int, size: int) -> InclusionProof:
        """The proof that leaf `index` is in the tree of `size` leaves."""
        return inclusion_proof_parse(self.get_bytes("log/proofs/inclusion", index=index, size=size))

    def consistency_proof(self, old: int, new: int) -> ConsistencyProof:
        """The proof that the tree of `old` leaves is a prefix of the tree of `new`."""
        raw = self.get_bytes("log/proofs/consistency", **{"from": old, "to": new})
        return consistency_proof_parse(raw)

    def cosign_post(self, note: str) -> Any:
        """Post a checkpoint note carrying this partner's cosignature line(s)."""
        status, raw = self._request(
            "POST", "/api/v1/log/cosignatures", note.encode("utf-8"), "text/plain; charset=utf-8"
        )
        return self._json(status, raw)

    def envelope(self, submission_id: int) -> bytes:
        """A submission's envelope, the exact bytes the server stored (and hashed)."""
        return self.get_bytes(f"submissions/{submission_id}/envelope")

    def post_body(self, path: str, body: bytes) -> Any:
        """POST `body` (JSON bytes, sent as they are) and return the decoded answer."""
        return self._json(*self._request("POST", f"/api/v1/{path}", body))

    def post_envelope(self, path: str, envelope: bytes) -> Any:
        return self.post_body(path, envelope)

    def submit(self, signed: SignedSubmission) -> Any:
        """Send a signed submission: its envelope, and the values beside it."""
        return self.post_body("submissions", signed.body())

    def feed(
        self, after: str | None = None, limit: int = 10_000
    ) -> Iterator[tuple[dict[str, Any], str]]:
        """Yield (event, cursor after it) from `after` until the server has no more.

        An event is its leaf's fields; an entry_added event also carries, from the page's
        `values`, the `value` and `salt` that open its commitment, or `erased: true` (names
        no leaf uses, so the leaf is the event without them)."""
        while True:
            page = self.get("feed", after=after, limit=limit)
            events = page["events"]
            openings = {item["index"]: item for item in page.get("values", [])}
            for position, event in enumerate(events, start=1):
                if event.get("type") == "entry_added":
                    opening = openings.get(event["index"], {"erased": True})
                    event.update({k: v for k, v in opening.items() if k != "index"})
                # The page's cursor may lie past its last event (events this partner may
                # not see were skipped), so the last event carries the page's cursor.
                yield event, page["next"] if position == len(events) else str(event["index"])
            after = page["next"]
            if not page["has_more"]:
                return

    # What `consortium_client.sync` reads: raw pages and tiles, verified by the caller.

    def feed_page(self, after: int, limit: int) -> bytes:
        """One feed page after index `after` (-1: from the start), as the exact bytes served."""
        return self.get_bytes("feed", after=after, limit=limit)

    def tile(self, level: int, index: int, width: int = 256) -> bytes:
        """Hash tile `(level, index)` at `width` hashes (C2SP tlog-tiles), as served."""
        return self.get_bytes("log/tile/" + Tile(level, index, width).path)
