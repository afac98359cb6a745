"""The process's match index follows the log: load, catch up, detect a rewritten log."""

from __future__ import annotations

import json
import logging
import secrets

import pytest
from django.db import connection

from hashes import match_index
from hashes.match_index import MatchIndexes
from hashes.models import HashList
from tests.conftest import PartnerClient
from tests.factories import HashListFactory


def _submit(client: PartnerClient, values: list[str]) -> list[int]:
    response = client.submit("ncii", [{"algorithm": "pdq", "value": v} for v in values])
    assert response.status_code == 201, response.content
    return [entry["id"] for entry in json.loads(response.content)["entries"]]


def _found(indexes: MatchIndexes, values: list[str]) -> list[list[int]]:
    radii = dict.fromkeys(HashList.objects.values_list("pk", flat=True), 0)
    results = indexes.search(algorithm="pdq", values=values, radii=radii, limit=100)
    return [[hit.entry_id for hit in result.hits] for result in results]


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
    indexes.by_list[shared_list.pk]["pdq"].remove([ids[0]])
    indexes.refresh()
    assert _found(indexes, values) == [[ids[0]], [ids[1]]]


@pytest.mark.django_db(transaction=True)
def test_an_empty_log_loads_to_an_empty_index() -> None:
    indexes = MatchIndexes()
    indexes.refresh()
    assert indexes.position == -1
    assert _found(indexes, [secrets.token_hex(32)]) == [[]]


def _matched(client: PartnerClient, value: str) -> list[int]:
    body = json.dumps({"hashes": [{"algorithm": "pdq", "value": value}]}).encode()
    response = client.post("/api/v1/match", body)
    assert response.status_code == 200, response.content
    return [match["entry"] for match in json.loads(response.content)["results"][0]["matches"]]


def _sql(statement: str, *params: object) -> None:
    # Behind the application's back, as someone with write access to the table could.
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        assert cursor.rowcount == 1


@pytest.mark.parametrize("reload", [True, False], ids=["fresh-load", "catch-up"])
def test_a_revoked_entry_flipped_back_to_active_in_the_table_does_not_match(
    alice, bob, shared_list, reload
) -> None:
    value = secrets.token_hex(32)
    _matched(bob, secrets.token_hex(32))  # the index is loaded before the entry exists
    (entry_id,) = _submit(alice, [value])
    assert _matched(bob, value) == [entry_id]
    assert alice.revoke([entry_id]).status_code == 201
    if not reload:
        assert _matched(bob, value) == []  # the tombstone reaches the index by catch-up
    _sql(
        "UPDATE hashes_entry SET status = 'active', revocation_id = NULL, revoked_at = NULL, "
        "revoked_log_index = NULL WHERE id = %s",
        entry_id,
    )
    if reload:
        match_index.match_indexes.reset()
    assert _matched(bob, value) == []


@pytest.mark.parametrize("reload", [True, False], ids=["fresh-load", "catch-up"])
def test_a_value_changed_in_the_table_neither_matches_nor_is_reported(
    alice, bob, shared_list, reload, caplog
) -> None:
    logged, forged = secrets.token_hex(32), secrets.token_hex(32)
    _matched(bob, forged)  # the index is loaded before the entry exists
    (entry_id,) = _submit(alice, [logged])
    _sql("UPDATE hashes_entry SET value = %s WHERE id = %s", forged, entry_id)
    if reload:
        match_index.match_indexes.reset()
    # The leaf holds a commitment, which the forged value does not open: never indexed.
    with caplog.at_level(logging.ERROR, logger="hashes.match_index"):
        assert _matched(bob, forged) == []
    assert _matched(bob, logged) == []
    assert f"entry {entry_id} does not open its leaf's commitment" in caplog.text
    assert logged not in caplog.text
    assert forged not in caplog.text


def test_a_value_changed_after_it_was_indexed_neither_matches_nor_is_reported(
    alice, bob, shared_list, caplog
) -> None:
    logged, forged = secrets.token_hex(32), secrets.token_hex(32)
    (entry_id,) = _submit(alice, [logged])
    assert _matched(bob, logged) == [entry_id]  # indexed while the row was right
    _sql("UPDATE hashes_entry SET value = %s WHERE id = %s", forged, entry_id)
    # The index still finds the logged value, but the row no longer agrees with it.
    with caplog.at_level(logging.ERROR, logger="hashes.matching"):
        assert _matched(bob, logged) == []
    assert _matched(bob, forged) == []
    assert f"entry {entry_id} differs from its log leaf" in caplog.text
    assert logged not in caplog.text


def test_an_entry_moved_to_another_list_in_the_table_does_not_match_there(
    alice, bob, shared_list
) -> None:
    HashListFactory(name="hidden", owner=alice.partner, visibility=HashList.Visibility.OWNER)
    value = secrets.token_hex(32)
    response = alice.submit("hidden", [{"algorithm": "pdq", "value": value}])
    (entry,) = json.loads(response.content)["entries"]
    _sql("UPDATE hashes_entry SET hash_list_id = %s WHERE id = %s", shared_list.pk, entry["id"])
    assert _matched(bob, value) == []
    assert _matched(alice, value) == []
