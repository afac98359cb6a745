"""One strict JSON parser for everything that is signed or sent to the server.

Python's `json.loads` is lenient where a signed document must not be: it guesses UTF-16 or
UTF-32 from the bytes, lets the last of two equal keys win, reads `NaN` and `Infinity`
(and turns `1e400` into infinity), and decodes a `\\ud800` escape into a lone surrogate
that no UTF-8 consumer can hold. Each of these lets one envelope mean different things to
two verifiers, so the server and partners parse with this instead. What it accepts is
I-JSON (RFC 7493): UTF-8 without a byte order mark, no duplicate member names, no lone
surrogates, finite numbers, and integers a double can hold exactly. Nesting is bounded too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

MAX_DEPTH = 64
# RFC 7493 section 2.2: integers beyond 2**53 - 1 do not survive a parser that reads doubles.
MAX_SAFE_INTEGER = 2**53 - 1


class StrictJsonError(ValueError):
    """Bytes that are not strict JSON. `pointer` is the RFC 6901 path of the bad value, if
    the problem is in a value rather than in the syntax."""

    def __init__(self, message: str, *, pointer: str | None = None) -> None:
        super().__init__(message)
        self.pointer = pointer


def pointer_token(key: str | int) -> str:
    """One RFC 6901 reference token. A lone surrogate in a member name is spelt as its
    escape (`\\ud800`): a pointer goes into a problem's UTF-8 JSON, which cannot hold it."""
    text = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("~", "~0").replace("/", "~1")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJsonError(f"the member name {key!r} appears twice in one object")
            seen.add(key)
    return document


def _constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"the number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    # Checked on the text first: int() of thousands of digits is the slow part.
    if len(text.lstrip("-")) > len(str(MAX_SAFE_INTEGER)) or abs(int(text)) > MAX_SAFE_INTEGER:
        raise StrictJsonError(f"the integer {text[:40]} is beyond ±(2**53 - 1)")
    return int(text)


_SURROGATE = re.compile("[\ud800-\udfff]")
# After strict UTF-8 decoding, the only way to a surrogate is an escape such as \ud800.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point: never valid text (json.loads pairs the
    escapes of a valid pair into one character, so any left over are lone)."""
    return _SURROGATE.search(text) is not None


def json_strings(document: Any) -> Iterator[tuple[str, str]]:
    """Every string of `document` (member names and values) with its pointer."""
    pending: list[tuple[Any, str]] = [(document, "")]
    while pending:
        value, pointer = pending.pop()
        if isinstance(value, str):
            yield value, pointer
        elif isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                child = f"{pointer}/{pointer_token(key)}"
                if isinstance(key, str):
                    yield key, child
                pending.append((item, child))


def _any_string(document: Any, predicate: Callable[[str], object]) -> bool:
    # Level by level, without pointers: the pass every valid document pays for.
    level = [document]
    while level:
        containers: list[Any] = []
        for value in level:
            if isinstance(value, str):
                if predicate(value):
                    return True
            elif isinstance(value, dict):
                if any(map(predicate, value)):
                    return True
                containers.extend(value.values())
            elif isinstance(value, list):
                containers.extend(value)
        level = containers
    return False


def string_pointer(document: Any, predicate: Callable[[str], object]) -> str | None:
    """The RFC 6901 pointer of a string of `document` (member names included) for which
    `predicate` holds, or None."""
    if not _any_string(document, predicate):
        return None
    return next((pointer for text, pointer in json_strings(document) if predicate(text)), None)


def _deeper_than(document: Any, max_depth: int) -> bool:
    level = [document] if isinstance(document, dict | list) else []
    for _ in range(max_depth):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def strict_json_loads(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `raw` as strict JSON (see the module docstring) or raise `StrictJsonError`."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise StrictJsonError("JSON must be given as bytes, to be decoded as UTF-8")
    data = bytes(raw)
    if data.startswith(b"\xef\xbb\xbf"):
        raise StrictJsonError("JSON must not start with a byte order mark")
    try:
        # Decoding here, not in json.loads, is what stops the UTF-16/32 guess; the strict
        # codec also refuses encoded surrogates and overlong forms.
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJsonError(f"not UTF-8: invalid byte at offset {exc.start}") from None
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
        )
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError(f"nesting deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise StrictJsonError(f"not valid JSON: {exc}") from None
    if _deeper_than(document, max_depth):
        raise StrictJsonError(f"nesting deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text):
        pointer = string_pointer(document, has_lone_surrogate)
        if pointer is not None:
            raise StrictJsonError(
                "a string holds a lone surrogate (an unpaired \\ud800-\\udfff escape)",
                pointer=pointer,
            )
    return document


def strict_json_dumps(document: Any) -> bytes:
    """Compact UTF-8 JSON of `document` that `strict_json_loads` accepts, or `StrictJsonError`.

    For builders of signed payloads: what a partner signs must be what every verifier reads.
    """
    try:
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise StrictJsonError(f"cannot be strict JSON: {exc}") from None
    raw = text.encode("utf-8")
    # Non-string keys that collide once stringified, lone surrogates, huge integers, deep
    # nesting: the parser is the one definition of strict, so ask it.
    strict_json_loads(raw)
    return raw
