"""The HTTP client of the Consortium API (`Client`), on urllib3.

One connection pool per client; every request has a timeout (to connect, and between bytes
of the answer). A request that fails in a way that may pass is retried with exponential
backoff: a connection that cannot be made or is cut off, no answer in time, and the answers
429 (too many requests) and 5xx, waiting as long as the server's `Retry-After` says (capped
at `retry_after_max`). Any other 4xx will fail the same way again and is never retried.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry

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

# Answers worth asking again for: the server shed load or failed on its side.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _user_agent() -> str:
    try:
        version = metadata.version("consortium-client")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"consortium-client/{version}"


# Connections kept per server: enough for a sync's look-ahead and a few callers' threads.
POOL_CONNECTIONS = 4


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
    """One short phrase for why a connection failed, instead of urllib3's nested reprs."""
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    if isinstance(error, NameResolutionError | socket.gaierror):
        return "unknown host name"
    if isinstance(error, SSLError):
        return f"TLS failed: {error.args[0] if error.args else error}"
    # urllib3 wraps the socket's error: the cause says what happened. (NewConnectionError
    # is a ConnectTimeoutError for historical reasons: look inside it first.)
    if isinstance(error, NewConnectionError) and error.__cause__ is not None:
        error = error.__cause__
    elif isinstance(error, ProtocolError) and len(error.args) > 1:
        error = error.args[1]
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError | TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} seconds"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running, and is the URL right?)"
    if isinstance(error, ConnectionResetError | http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


class ConsortiumApi:
    """The Consortium API as a partner calls it, with its API key.

    `retries` is how many times a request is sent again after a failure that may pass
    (so at most `retries + 1` attempts); the waits between them double from `backoff`
    seconds, or are what `Retry-After` says, at most `retry_after_max` seconds.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
        retry_after_max: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the server URL must start with http:// or https://")
        # The API's own prefix is added to every path; a URL copied with it still works.
        self.base_url = base_url.rstrip("/").removesuffix("/api/v1")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        retry = Retry(
            # One budget for every kind of failure, so that "gave up" always means
            # `retries + 1` attempts.
            total=retries,
            redirect=0,
            status_forcelist=RETRY_STATUSES,
            # POST too: every POST of this API carries a signed statement (a submission,
            # a revocation, a cosignature) that the server de-duplicates by what was signed
            # (its nonce), so sending it again after a lost answer stores nothing twice and
            # answers with what the first one stored.
            allowed_methods=None,
            backoff_factor=backoff,
            backoff_jitter=backoff / 4,
            respect_retry_after_header=True,
            retry_after_max=int(retry_after_max),
            # The last 429 or 5xx is returned, so that its problem+json is what is shown.
            raise_on_status=False,
        )
        self.pool = urllib3.PoolManager(
            retries=retry,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            # A sync fetches the next page while it verifies this one: keep a connection
            # for each thread instead of opening (and discarding) one per request.
            maxsize=POOL_CONNECTIONS,
        )
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        }

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        headers = self._headers | ({"Content-Type": content_type} if body is not None else {})
        try:
            response = self.pool.request(
                method, self.base_url + path, body=body, headers=headers, redirect=False
            )
        except MaxRetryError as exc:
            reason = _unreachable_reason(exc, self.timeout)
            attempts = self.retries + 1
            raise ServerUnreachable(self.base_url, f"{reason}; {attempts} attempts") from None
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            raise ServerUnreachable(self.base_url, _unreachable_reason(exc, self.timeout)) from None
        raw = response.data
        if 300 <= response.status < 400:
            # Not followed: the API key would go to wherever the redirect points.
            where = response.headers.get("Location", "elsewhere")
            detail = f"{self.base_url} redirects to {where}: use that URL"
            raise ApiError(response.status, {"title": "redirected", "detail": detail})
        if response.status >= 400:
            try:
                problem = json.loads(raw)
                if not isinstance(problem, dict):
                    raise ValueError(problem)
            except ValueError:
                problem = {
                    "title": response.reason or "request failed",
                    "detail": raw[:200].decode("utf-8", "replace"),
                }
            raise ApiError(response.status, problem)
        return response.status, raw

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

    def me(self) -> Any:
        """Who this API key is: the partner, the key's scopes, the partner's signing keys."""
        return self.get("me")

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

    # What `consortium_client.mirror_sync` reads: raw pages and tiles, verified by the caller.

    def feed_page(self, after: int, limit: int) -> bytes:
        """One feed page after index `after` (-1: from the start), as the exact bytes served."""
        return self.get_bytes("feed", after=after, limit=limit)

    def tile(self, level: int, index: int, width: int = 256) -> bytes:
        """Hash tile `(level, index)` at `width` hashes (C2SP tlog-tiles), as served."""
        return self.get_bytes("log/tile/" + Tile(level, index, width).path)

    def revocation_envelope(self, revocation_id: int) -> bytes:
        """A signed revocation's envelope, the exact bytes the server stored (their SHA-256
        is its tombstones' `envelope`); 404 for an administrator's revocation."""
        return self.get_bytes(f"revocations/{revocation_id}/envelope")
