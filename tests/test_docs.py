"""The docs stay true to the code."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

import hashes.services.lists  # noqa: F401 - defines problem types
import partners.services  # noqa: F401 - defines problem types
from consortium.errors import problem_types
from tests.browser import chromium_paths

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_problem_type_is_documented_with_its_status() -> None:
    text = (DOCS / "problems.md").read_text()
    for problem in problem_types():
        row = f"| `urn:consortium:problem:{problem.slug}` | {problem.status} |"
        assert row in text, problem.slug


class _AssetLinks(HTMLParser):
    """The URLs a page makes the browser fetch: script sources, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.urls.append(str(named["src"]))
        if tag == "link" and named.get("href"):
            self.urls.append(str(named["href"]))


ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("deployment", [True, False], ids=["deployment", "quick-start"])
def test_api_docs_page_loads_every_asset_from_this_server(
    settings, tmp_path: Path, deployment: bool
) -> None:
    if deployment:
        # As documented: collectstatic, then gunicorn with DEBUG off; WhiteNoise serves.
        settings.STATIC_ROOT = tmp_path / "static"
        call_command("collectstatic", "--noinput", verbosity=0)
    else:
        # The quick start: DEBUG on and nothing collected; files come from the apps.
        settings.DEBUG = True
        settings.STATIC_ROOT = tmp_path / "nothing-collected"
    page = Client().get("/api/v1/docs/")
    assert page.status_code == 200
    links = _AssetLinks()
    links.feed(page.content.decode())

    assert len(links.urls) == 4, links.urls  # two scripts, a stylesheet, an icon
    for url in links.urls:
        # Offline or behind a strict proxy, anything from elsewhere leaves the page blank.
        assert url.startswith("/static/"), url
        assert "://" not in url
        asset = Client().get(url)
        assert asset.status_code == 200, url
        kind = ASSET_TYPES[Path(url).suffix]
        assert kind in asset["Content-Type"], (url, asset["Content-Type"])
        assert b"".join(asset.streaming_content if asset.streaming else [asset.content])


@pytest.mark.slow
def test_api_docs_render_in_a_browser_that_reaches_no_other_host(live_server) -> None:
    chromium, _ = chromium_paths()  # fails, rather than skips, without chromium
    done = subprocess.run(  # noqa: S603 - a fixed command line
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            # Every host name but the live server's address fails, as offline.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{live_server.url}/api/v1/docs/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Swagger UI drew the schema: its title and an operation of each kind are in the page.
    assert 'class="title">Consortium API' in done.stdout, done.stderr[-2000:]
    assert 'data-path="/api/v1/feed"' in done.stdout
    assert 'data-path="/api/v1/submissions"' in done.stdout


def test_every_operation_documents_its_problems_and_its_rate_limit(client) -> None:
    """Refusals are part of the contract: a client generated from the schema must know every
    operation may answer a problem, and a 429 with Retry-After."""
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert schema["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) >= 10
    for operation in operations:
        responses = operation["responses"]
        assert responses["default"]["content"] == problem, operation["operationId"]
        assert responses["429"]["content"] == problem, operation["operationId"]
        assert "Retry-After" in responses["429"]["headers"], operation["operationId"]
