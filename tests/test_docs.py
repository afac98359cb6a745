"""The docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

import hashes.services.lists  # noqa: F401 - defines problem types
import partners.services  # noqa: F401 - defines problem types
from consortium.errors import ConsortiumError

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _problem_types(cls: type[ConsortiumError]) -> set[type[ConsortiumError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_problem_types(sub)}
    return found


def test_every_problem_type_is_documented_with_its_status() -> None:
    text = (DOCS / "problems.md").read_text()
    for problem in _problem_types(ConsortiumError):
        assert f"| `{ConsortiumError.type.fget(problem)}` | {problem.status} |" in text, (
            problem.slug
        )
