"""A partner's local mirror of the feed, and matching against it.

The mirror is the JSON lines `consortium feed` prints: replaying them gives every entry
added and neither revoked nor erased. An entry_added line carries the `value` and `salt`
that open its leaf's commitment (checked here), or `erased: true`; an erased entry is
never indexed, and an entry_erased line drops one indexed before. The indexes are the ones
the server matches with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consortium_client import leaves
from consortium_client.commitments import CommitmentError, commitment_check
from consortium_client.hashvalues import ALGORITHMS
from consortium_client.index import ExactIndex, HammingIndex, index_for


@dataclass
class Mirror:
    indexes: dict[str, HammingIndex | ExactIndex] = field(
        default_factory=lambda: {name: index_for(name) for name in ALGORITHMS}
    )
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        """Replay one feed event; ValueError if an entry's value does not open its commitment."""
        if event.get("type") == leaves.ENTRY_ADDED:
            if event.get("erased") or event.get("value") is None:
                return
            entry_id = int(event["index"])
            try:
                commitment_check(
                    event["algorithm"], event["value"], event["salt"], event["commitment"]
                )
            except (CommitmentError, KeyError) as exc:
                raise ValueError(f"entry {entry_id}: the value does not open its leaf") from exc
            self.indexes[event["algorithm"]].add([entry_id], [event["value"]])
            self.entries[entry_id] = event
        elif event.get("type") in (leaves.ENTRY_REVOKED, leaves.ENTRY_ERASED):
            entry_id = int(event["entry"])
            added = self.entries.pop(entry_id, None)
            if added is not None:
                self.indexes[added["algorithm"]].remove([entry_id])

    def match(self, algorithm: str, value: str, radius: int | None = None) -> list[dict[str, Any]]:
        """Active entries within `radius` (default: the algorithm's) of `value`."""
        spec = ALGORITHMS[algorithm]
        distance = spec.default_distance if radius is None else radius
        return [
            {**self.entries[entry_id], "distance": found}
            for entry_id, found in self.indexes[algorithm].search(value, distance)
        ]


def mirror_load(lines: Iterable[str]) -> Mirror:
    mirror = Mirror()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"mirror line {number} is not JSON") from exc
        mirror.apply(event)
    return mirror
