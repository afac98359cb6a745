"""What the OpenAPI schema says that drf-spectacular cannot read from the views."""

from __future__ import annotations

from typing import Any

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; `type` is stable, every one is in docs/problems.md. "
    "Some problems add members of their own (pointer, limit, retry_after, ...).",
    "properties": {
        "type": {"type": "string", "example": "urn:consortium:problem:invalid-signature"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}

_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}


def problem_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """Every operation may be refused, with a problem: a `default` response says so, and a
    429 with its `Retry-After` header, since every operation is rate-limited (docs/api.md)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "429",
                {
                    "description": "a rate limit (throttled) or the image-hashing slots "
                    "(hashing-busy) refused the request; retry after the header's seconds",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
                    "content": _PROBLEM_CONTENT,
                },
            )
            responses.setdefault(
                "default",
                {"description": "a refusal: problem details", "content": _PROBLEM_CONTENT},
            )
    return result
