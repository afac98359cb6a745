"""The process's match index follows the log: load, catch up, detect a rewritten log."""

from __future__ import annotations

import json
import secrets

import pytest

from hashes import match_index
from hashes.match_index import MatchIndexes
from tests.conftest import PartnerClient


def _submit(client: PartnerClient, values: list[str]) -> list[int]:
    response = client.submit("ncii", [{"algorithm": "pdq", "value": v} for v in values])
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def _found(indexes: MatchIndexes, values: list[str]) -> list[list[int]]:
    return [[entry for entry, _ in hits] for hits in indexes.search("pdq", values, 0)]


def test_loads_active_entries_then_applies_new_adds_and_revocations(alice, shared_list) -> None:
    old = [secrets.token_hex(32) for _ in range(3)]
    old_ids = _submit(alice, old)
    assert alice.revoke([old_ids[0]]).status_code == 201
    indexes = MatchIndexes()
    indexes.refresh()
    assert _found(indexes, old) == [[], [old_ids[1]], [old_ids[2]]]

    new = [secrets.token_hex(32)]
    new_ids = _submit(alice, new)
    assert alice.revoke([old_ids[1]]).status_code == 201
    indexes.refresh()
    assert _found(indexes, old + new) == [[], [], [old_ids[2]], new_ids]


def test_catches_up_across_many_pages_with_adds_and_revocations_in_one_page(
    alice, shared_list, monkeypatch
) -> None:
    indexes = MatchIndexes()
    indexes.refresh()
    monkeypatch.setattr(match_index, "CATCH_UP_PAGE", 3)
    values = [secrets.token_hex(32) for _ in range(10)]
    ids = _submit(alice, values)
    assert alice.revoke(ids[::2]).status_code == 201
    indexes.refresh()
    assert _found(indexes, values) == [[] if n % 2 == 0 else [ids[n]] for n in range(10)]


def test_a_log_that_no_longer_holds_the_last_applied_leaf_is_reloaded(alice, shared_list) -> None:
    values = [secrets.token_hex(32) for _ in range(2)]
    ids = _submit(alice, values)
    indexes = MatchIndexes()
    indexes.refresh()
    # As if the database had been restored to another history under a running process.
    indexes.position_digest = b"\0" * 32
    indexes.by_algorithm["pdq"].remove([ids[0]])
    indexes.refresh()
    assert _found(indexes, values) == [[ids[0]], [ids[1]]]


@pytest.mark.django_db(transaction=True)
def test_an_empty_log_loads_to_an_empty_index() -> None:
    indexes = MatchIndexes()
    indexes.refresh()
    assert indexes.position == -1
    assert _found(indexes, [secrets.token_hex(32)]) == [[]]
