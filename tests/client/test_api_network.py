"""The HTTP client's network behaviour against real HTTP servers: retries with backoff on
connection errors, 429 and 5xx (honouring Retry-After, capped), never on another 4xx."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consortium_client.api import ApiError, ConsortiumApi, ServerUnreachable


class Script:
    """A server answering each request with the next (status, headers, body) of a script,
    recording what it was asked."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, bytes, float]] = []


@pytest.fixture
def scripted() -> Iterator[tuple[Script, str]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            script.requests.append((self.command, self.path, body, time.monotonic()))
            status, headers, content = script.answers.pop(0)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def _problem(slug: str, title: str) -> bytes:
    return json.dumps({"type": f"urn:consortium:problem:{slug}", "title": title}).encode()


OK = (200, {}, b'{"name": "acme"}')


def test_a_503_with_retry_after_is_retried_after_the_wait(scripted) -> None:
    script, url = scripted
    script.answers = [(503, {"Retry-After": "1"}, _problem("unavailable", "Down")), OK]
    api = ConsortiumApi(url, "csk_x", backoff=0.01)
    assert api.me() == {"name": "acme"}
    (_, first, _, sent), (_, second, _, resent) = script.requests
    assert first == second == "/api/v1/me"
    assert resent - sent >= 1.0


def test_a_long_retry_after_is_capped(scripted) -> None:
    script, url = scripted
    script.answers = [(429, {"Retry-After": "3600"}, _problem("rate-limited", "Slow down")), OK]
    api = ConsortiumApi(url, "csk_x", backoff=0.01, retry_after_max=1)
    started = time.monotonic()
    assert api.me() == {"name": "acme"}
    assert 1.0 <= time.monotonic() - started < 5


def test_a_post_is_retried_with_the_same_body(scripted) -> None:
    # Signed statements are de-duplicated by the server: resending one is safe.
    script, url = scripted
    script.answers = [(502, {}, b"<html>bad gateway</html>"), (201, {}, b'{"entries": []}')]
    api = ConsortiumApi(url, "csk_x", backoff=0.01)
    assert api.post_body("submissions", b'{"envelope": 1}') == {"entries": []}
    assert [(m, b) for m, _, b, _ in script.requests] == [("POST", b'{"envelope": 1}')] * 2


def test_a_400_is_never_retried(scripted) -> None:
    script, url = scripted
    script.answers = [(400, {}, _problem("invalid-request", "Bad request")), OK]
    api = ConsortiumApi(url, "csk_x", backoff=0.01)
    with pytest.raises(ApiError) as refused:
        api.post_body("submissions", b"{}")
    assert refused.value.status == 400
    assert refused.value.problem["type"] == "urn:consortium:problem:invalid-request"
    assert len(script.requests) == 1


def test_persistent_5xx_gives_up_with_the_last_problem(scripted) -> None:
    script, url = scripted
    script.answers = [(500, {}, _problem("internal", "Oops"))] * 3
    api = ConsortiumApi(url, "csk_x", retries=2, backoff=0.01)
    with pytest.raises(ApiError) as failed:
        api.me()
    assert (failed.value.status, str(failed.value)) == (500, "Oops")
    assert len(script.requests) == 3


def test_a_redirect_is_not_followed_with_the_api_key(scripted) -> None:
    script, url = scripted
    script.answers = [(301, {"Location": "https://elsewhere.example/api/v1/me"}, b"")]
    with pytest.raises(
        ApiError, match=re.escape("redirects to https://elsewhere.example/api/v1/me")
    ):
        ConsortiumApi(url, "csk_x").me()
    assert len(script.requests) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_closed_port_fails_after_the_retries_with_backoff() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    api = ConsortiumApi(url, "csk_x", retries=3, backoff=0.2)
    started = time.monotonic()
    with pytest.raises(ServerUnreachable) as failed:
        api.me()
    # Waits of 0, 0.4 and 0.8 seconds between the 4 attempts.
    assert time.monotonic() - started >= 1.2
    assert str(failed.value) == (
        f"cannot reach the server at {url}: connection refused "
        "(is the server running, and is the URL right?); 4 attempts"
    )


def test_concurrent_requests_reuse_their_connections(scripted, caplog) -> None:
    """A sync fetches ahead in a second thread: neither thread's connection is discarded."""
    script, url = scripted
    script.answers = [OK] * 40
    api = ConsortiumApi(url, "csk_x")

    def calls() -> None:
        for _ in range(20):
            api.me()

    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        threads = [threading.Thread(target=calls) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(script.requests) == 40
    assert "Connection pool is full" not in caplog.text
