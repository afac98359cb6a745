"""The docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

import hashes.services.lists  # noqa: F401 - defines problem types
import partners.services  # noqa: F401 - defines problem types
from consortium.errors import problem_types

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_problem_type_is_documented_with_its_status() -> None:
    text = (DOCS / "problems.md").read_text()
    for problem in problem_types():
        row = f"| `urn:consortium:problem:{problem.slug}` | {problem.status} |"
        assert row in text, problem.slug
