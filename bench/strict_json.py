"""Strict JSON parsing: what ``consortium_client.strictjson`` costs over ``json.loads``.

What it measures
----------------
The largest signed payload the server takes by default: a submission of ``--entries`` PDQ
entries (SUBMISSION_MAX_ENTRIES, 10,000), each with two labels and a note, as the client's
builder writes it. Each parser reads the same bytes, in alternating rounds so that load from
other processes hits both alike; the best round of each is reported, with their ratio. A
``/match`` body of ``--hashes`` hashes (MATCH_MAX_HASHES, 1,000) is measured the same way.

Usage::

    PYTHONPATH=client python bench/strict_json.py [--entries 10000] [--hashes 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from consortium_client.strictjson import strict_json_dumps, strict_json_loads


def _submission(entries: int) -> bytes:
    return strict_json_dumps(
        {
            "list": "ncii",
            "entries": [
                {
                    "algorithm": "pdq",
                    "value": secrets.token_hex(32),
                    "labels": ["ncii", "confirmed"],
                    "note": "reported by the person shown; consent withdrawn",
                }
                for _ in range(entries)
            ],
            "timestamp": "2026-12-02T10:00:00Z",
            "nonce": secrets.token_hex(16),
        }
    )


def _match(hashes: int) -> bytes:
    items = [{"algorithm": "pdq", "value": secrets.token_hex(32)} for _ in range(hashes)]
    return json.dumps({"hashes": items}).encode()


def _best(parse: Callable[[bytes], Any], raw: bytes, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        parse(raw)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--hashes", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()

    for name, raw in (
        (f"submission of {options.entries} entries", _submission(options.entries)),
        (f"match body of {options.hashes} hashes", _match(options.hashes)),
    ):
        assert strict_json_loads(raw) == json.loads(raw)
        plain = strict = float("inf")
        for _ in range(options.rounds):
            plain = min(plain, _best(json.loads, raw, 1))
            strict = min(strict, _best(strict_json_loads, raw, 1))
        print(
            f"{name} ({len(raw) / 1e6:.2f} MB): json.loads {plain * 1e3:.1f} ms, "
            f"strict_json_loads {strict * 1e3:.1f} ms, ratio {strict / plain:.2f}"
        )


if __name__ == "__main__":
    main()
