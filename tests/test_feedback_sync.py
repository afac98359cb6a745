"""Quarantine and review reach partners' verified mirrors: through a live server, the feed's
events stop a quarantined or pending entry matching in `consortium match` after a sync, and
its restoration or confirmation brings it back; verdicts are sent with `consortium feedback`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audit.log_verify import log_verify
from audit.models import LogEvent
from audit.services import checkpoint_sign
from consortium_client import cli
from consortium_client.api import ConsortiumApi
from consortium_client.feedback import feedback_envelope
from consortium_client.mirror_index import MirrorMatcher
from consortium_client.mirror_sync import Mirror, sync
from consortium_client.payloads import submission_envelope
from hashes.models import Feedback, HashList
from tests.conftest import PartnerClient, partner_client, pdq
from tests.factories import HashListFactory

pytestmark = pytest.mark.django_db(transaction=True)


def submit(api: ConsortiumApi, partner: PartnerClient, list_name: str, value: str) -> int:
    signed = submission_envelope(
        list_name, [{"algorithm": "pdq", "value": value}], partner.private_key
    )
    return int(api.submit(signed)["entries"][0]["id"])


def verdict(api: ConsortiumApi, partner: PartnerClient, entry: int, kind: str, reason: str) -> Any:
    envelope = feedback_envelope(
        entry=entry, verdict=kind, reason=reason, private_key=partner.private_key
    )
    return api.post_envelope(f"entries/{entry}/feedback", envelope)


def found(path: Path, value: str) -> list[int]:
    """What a fresh `consortium match` process finds in the mirror."""
    matcher = MirrorMatcher.load(path, tables=False)
    return [match.entry for match in matcher.search([("pdq", value)])[0].matches]


def test_quarantine_and_review_reach_a_synced_mirror(
    live_server: Any, tmp_path: Path, capsys: Any
) -> None:
    alice, bob, carol = (partner_client(name) for name in ("alice", "bob", "carol"))
    HashListFactory(
        name="ncii", owner=alice.partner, visibility=HashList.Visibility.ALL, quarantine_after=2
    )
    HashListFactory(
        name="reviewed",
        owner=alice.partner,
        visibility=HashList.Visibility.ALL,
        review_required=True,
    )
    a, b, c = (ConsortiumApi(live_server.url, p.api_key) for p in (alice, bob, carol))
    shared, reviewed = pdq(), pdq()
    entry = submit(a, alice, "ncii", shared)
    pending = submit(a, alice, "reviewed", reviewed)
    checkpoint_sign()
    path = tmp_path / "mirror.db"
    sync(b, path)
    assert found(path, shared) == [entry]
    assert found(path, reviewed) == []  # pending: never matched by default
    # A long-running matcher (serve-match) follows the same changes in place.
    serving = MirrorMatcher.load(path, tables=True)

    verdict(b, bob, entry, "false_positive", "matched_benign_content")
    # carol sends hers with the command line.
    key = tmp_path / "carol.pem"
    from consortium_client.keys import private_key_pem

    key.write_bytes(private_key_pem(carol.private_key))
    code = cli.main(
        [
            "--url",
            live_server.url,
            "--api-key",
            carol.api_key,
            "feedback",
            str(entry),
            "false_positive",
            "--reason",
            "not_abusive",
            "--note",
            "a holiday photo",
            "--key",
            str(key),
        ]
    )
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["summary"]["quarantined"] is True
    verdict(c, carol, pending, "agree", "confirmed_abusive")
    checkpoint_sign()
    sync(b, path)

    assert found(path, shared) == []
    assert found(path, reviewed) == [pending]
    assert serving.advance()
    assert [m.entry for m in serving.search([("pdq", shared)])[0].matches] == []
    assert [m.entry for m in serving.search([("pdq", reviewed)])[0].matches] == [pending]
    with Mirror(path) as mirror:
        held = mirror.entry(entry)
        assert held is not None
        assert held.status == "active"

    restored = a.post_body(
        f"entries/{entry}/quarantine/resolution", json.dumps({"reason": "checked"}).encode()
    )
    assert restored["resolution"] == "restored"
    checkpoint_sign()
    sync(b, path)

    assert found(path, shared) == [entry]
    assert serving.advance()
    assert [m.entry for m in serving.search([("pdq", shared)])[0].matches] == [entry]
    # log_verify raises at the first divergence; every verdict was checked against its row.
    report = log_verify()
    assert report.size == LogEvent.objects.count()
    assert report.feedback == Feedback.objects.count()
