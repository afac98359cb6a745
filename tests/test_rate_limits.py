"""Rate limits per API key and per partner, for each scope, counted in the real Redis.

Rates here are per day, so that no window ends while a test runs; each test starts with an
empty cache and every rate off (conftest), and sets the rates it tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from audit.models import AccessEvent
from consortium.throttling import rate_limit_storage
from partners import services
from tests.conftest import (
    ADMIN,
    PartnerClient,
    assert_refusal_audited,
    partner_client,
    pdq,
    problem,
    store_counts,
)

ROOT = Path(__file__).resolve().parent.parent
SCOPES = ("any", "read", "match", "submit", "audit")


def limits(key: dict[str, str] | None = None, partner: dict[str, str] | None = None) -> Any:
    return {
        "key": {scope: (key or {}).get(scope) for scope in SCOPES},
        "partner": {scope: (partner or {}).get(scope) for scope in SCOPES},
    }


def new_key(client: PartnerClient, scopes: tuple[str, ...] = ("read", "match")) -> str:
    _, key = services.apikey_create(partner=client.partner, scopes=scopes, actor=ADMIN)
    return key


def me(client: PartnerClient, key: str | None = None) -> Any:
    return client.get("/api/v1/me", key=key)


def match(client: PartnerClient, key: str | None = None, hashes: int = 1) -> Any:
    values = [{"algorithm": "pdq", "value": pdq(n)} for n in range(1, hashes + 1)]
    return client.post("/api/v1/match", json.dumps({"hashes": values}).encode(), key=key)


def assert_throttled(response: Any, *, applies_to: str, scope: str, rate: str) -> None:
    assert response.status_code == 429, response.content
    assert problem(response) == "throttled"
    body = json.loads(response.content)
    retry_after = response["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 86400
    assert (body["applies_to"], body["scope"], body["rate"]) == (applies_to, scope, rate)
    assert body["retry_after"] == int(retry_after)


def test_key_over_its_limit_gets_429_problem_with_retry_after(
    alice: PartnerClient, settings: Any
) -> None:
    settings.RATE_LIMITS = limits(key={"any": "3/d"})
    for _ in range(3):
        assert me(alice).status_code == 200
    response = me(alice)
    assert_throttled(response, applies_to="key", scope="any", rate="3/d")
    assert "3 'any' requests per day" in json.loads(response.content)["detail"]
    assert_refusal_audited(action="me.read", status=429, slug="throttled", partner=alice.partner)
    assert me(alice).status_code == 429


def test_another_key_of_the_partner_is_served_until_the_partner_limit(
    alice: PartnerClient, settings: Any
) -> None:
    settings.RATE_LIMITS = limits(key={"any": "3/d"}, partner={"any": "5/d"})
    second = new_key(alice)
    for _ in range(3):
        assert me(alice).status_code == 200
    assert_throttled(me(alice), applies_to="key", scope="any", rate="3/d")
    # The refused request counted for the partner too (4 of 5): one more is served.
    assert me(alice, second).status_code == 200
    assert_throttled(me(alice, second), applies_to="partner", scope="any", rate="5/d")


def test_partner_limit_spans_its_keys_and_spares_other_partners(
    alice: PartnerClient, bob: PartnerClient, settings: Any
) -> None:
    settings.RATE_LIMITS = limits(key={"any": "100/d"}, partner={"any": "4/d"})
    keys = [alice.api_key, new_key(alice), new_key(alice)]
    assert [me(alice, keys[n % 3]).status_code for n in range(4)] == [200] * 4
    for key in keys:
        assert_throttled(me(alice, key), applies_to="partner", scope="any", rate="4/d")
    assert [me(bob).status_code for _ in range(4)] == [200] * 4


def test_limits_are_per_scope(alice: PartnerClient, settings: Any) -> None:
    settings.RATE_LIMITS = limits(key={"match": "2/d", "read": "2/d", "any": "2/d"})
    assert [match(alice).status_code for _ in range(2)] == [200, 200]
    assert_throttled(match(alice), applies_to="key", scope="match", rate="2/d")
    assert alice.get("/api/v1/lists").status_code == 200
    assert me(alice).status_code == 200


def test_match_limits_count_hashes_not_requests(alice: PartnerClient, settings: Any) -> None:
    """A batch of 1,000 hashes costs the server 1,000 times one hash, and counts so."""
    settings.RATE_LIMITS = limits(key={"match": "5/d"}, partner={"match": "100/d"})
    assert match(alice, hashes=3).status_code == 200
    response = match(alice, hashes=3)
    assert_throttled(response, applies_to="key", scope="match", rate="5/d")
    assert "5 hashes matched per day" in json.loads(response.content)["detail"]
    assert_refusal_audited(action="match", status=429, slug="throttled", partner=alice.partner)
    # Over the limit now (6 of 5): even one hash is refused before its body is read.
    assert_throttled(match(alice), applies_to="key", scope="match", rate="5/d")


def test_refused_submission_stores_nothing(
    alice: PartnerClient, shared_list: Any, settings: Any
) -> None:
    settings.RATE_LIMITS = limits(key={"submit": "1/d"})
    assert alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(1)}]).status_code == 201
    before = store_counts()
    response = alice.submit("ncii", [{"algorithm": "pdq", "value": pdq(2)}])
    assert_throttled(response, applies_to="key", scope="submit", rate="1/d")
    assert store_counts() == before
    assert_refusal_audited(
        action="submission.create", status=429, slug="throttled", partner=alice.partner
    )


def test_requests_without_a_usable_key_are_not_counted(alice: PartnerClient, settings: Any) -> None:
    """Whoever knows a key's prefix but not its secret cannot use up the key's limit."""
    settings.RATE_LIMITS = limits(key={"any": "2/d"}, partner={"any": "2/d"})
    mark, prefix = alice.api_key.split("_")[:2]
    for _ in range(5):
        assert problem(me(alice, f"{mark}_{prefix}_{'x' * 40}")) == "invalid-api-key"
        assert problem(alice.http.get("/api/v1/me")) == "authentication-required"
    wrong = AccessEvent.objects.filter(detail__auth_failure="wrong-secret", key_prefix=prefix)
    assert wrong.count() == 5
    assert [me(alice).status_code for _ in range(2)] == [200, 200]
    assert me(alice).status_code == 429


def test_requests_refused_for_scope_count_against_the_limit(
    alice: PartnerClient, settings: Any
) -> None:
    """A key flooding an operation it lacks the scope for is stopped all the same."""
    settings.RATE_LIMITS = limits(key={"audit": "2/d"})
    key = new_key(alice, scopes=("read",))
    statuses = [alice.get("/api/v1/audit/events", key=key).status_code for _ in range(2)]
    assert statuses == [403, 403]
    assert_throttled(
        alice.get("/api/v1/audit/events", key=key), applies_to="key", scope="audit", rate="2/d"
    )


def test_disabled_rate_limits_let_everything_through(alice: PartnerClient, settings: Any) -> None:
    settings.RATE_LIMITS = limits(key={"any": "1/d"})
    settings.RATE_LIMIT_ENABLED = False
    assert [me(alice).status_code for _ in range(3)] == [200] * 3


def test_quick_start_limits_in_memory(alice: PartnerClient, settings: Any) -> None:
    settings.RATE_LIMIT_STORAGE_URL = "memory://"
    rate_limit_storage("memory://").reset()
    settings.RATE_LIMITS = limits(key={"any": "2/d"})
    assert [me(alice).status_code for _ in range(2)] == [200, 200]
    assert_throttled(me(alice), applies_to="key", scope="any", rate="2/d")


def test_requests_are_served_when_the_counters_cannot_be_reached(
    alice: PartnerClient, settings: Any, caplog: Any
) -> None:
    settings.RATE_LIMIT_STORAGE_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    settings.RATE_LIMITS = limits(key={"any": "1/d"})
    assert [me(alice).status_code for _ in range(2)] == [200, 200]
    assert "rate limits not counted" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_concurrent_flood_is_counted_exactly(settings: Any) -> None:
    """Eight threads at once: the counter is atomic, so exactly the limit is served."""
    assert settings.RATE_LIMIT_STORAGE_URL.startswith("redis://")
    settings.RATE_LIMITS = limits(partner={"any": "20/d"})
    alice = partner_client("alice")
    keys = [alice.api_key, *(new_key(alice) for _ in range(3))]

    def flood(n: int) -> list[int]:
        http, auth = Client(), f"Bearer {keys[n % 4]}"
        try:
            return [http.get("/api/v1/me", HTTP_AUTHORIZATION=auth).status_code for _ in range(5)]
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(status for batch in pool.map(flood, range(8)) for status in batch)
    assert statuses == {200: 20, 429: 20}
    assert AccessEvent.objects.filter(status=429, detail__problem="throttled").count() == 20


def test_rates_are_read_from_the_environment() -> None:
    code = "import json; from consortium import settings; print(json.dumps(settings.RATE_LIMITS))"
    env = os.environ | {"RATE_LIMIT_KEY_MATCH": "7/m", "RATE_LIMIT_PARTNER_READ": "none"}
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
    )
    rates = json.loads(out.stdout)
    assert rates["key"]["match"] == "7/m"
    assert rates["partner"]["read"] is None
    # Everything else has its default: every scope is limited, per key and per partner.
    others = [
        rate
        for subject, scopes in rates.items()
        for scope, rate in scopes.items()
        if (subject, scope) not in {("key", "match"), ("partner", "read")}
    ]
    assert len(others) == 2 * len(SCOPES) - 2
    assert all(rate for rate in others)
    bad = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        env=env | {"RATE_LIMIT_KEY_ANY": "lots"},
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert bad.returncode != 0
    assert b"RATE_LIMIT_KEY_ANY" in bad.stderr


def test_a_refused_key_is_refused_early_with_one_write_and_no_read(
    alice: PartnerClient, settings: Any
) -> None:
    """A client that ignores 429s costs one access-event insert per request, not the key's
    read, the Redis round trips and the rest of the stack."""
    from django.test.utils import CaptureQueriesContext

    settings.RATE_LIMITS = limits(key={"any": "1/d"})
    assert me(alice).status_code == 200
    assert_throttled(me(alice), applies_to="key", scope="any", rate="1/d")

    with CaptureQueriesContext(connection) as queries:
        response = me(alice)

    assert_throttled(response, applies_to="key", scope="any", rate="1/d")
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]
    event = AccessEvent.objects.order_by("-id").first()
    assert event is not None
    assert (event.action, event.status, event.partner, event.key_prefix) == (
        "me.read",
        429,
        alice.partner,
        alice.partner.api_keys.get().prefix,
    )
    assert event.detail["early"] is True


def test_early_refusal_is_only_for_the_keys_holder_and_its_scope(
    alice: PartnerClient, settings: Any
) -> None:
    settings.RATE_LIMITS = limits(key={"match": "1/d"})
    assert match(alice).status_code == 200
    assert match(alice).status_code == 429
    wrong_secret = alice.api_key[:-4] + ("aaaa" if not alice.api_key.endswith("aaaa") else "bbbb")

    assert problem(match(alice, key=wrong_secret)) == "invalid-api-key"
    assert me(alice).status_code == 200
    assert alice.get("/api/v1/lists").status_code == 200
    assert problem(match(alice)) == "throttled"


def test_early_refusal_ends_within_a_second_so_a_revoked_key_gets_its_401(
    alice: PartnerClient, settings: Any
) -> None:
    import time

    from consortium.throttling import EARLY_REFUSAL_MAX

    settings.RATE_LIMITS = limits(key={"any": "1/d"})
    assert me(alice).status_code == 200
    assert me(alice).status_code == 429
    services.apikey_revoke(api_key=alice.partner.api_keys.get(), actor=ADMIN)
    assert me(alice).status_code == 429, "early, from this process's memory"

    time.sleep(EARLY_REFUSAL_MAX + 0.05)

    assert problem(me(alice)) == "invalid-api-key"


def test_ended_early_refusals_are_forgotten(make_partner, settings: Any) -> None:
    import time

    from consortium.throttling import EARLY_REFUSAL_MAX, _penalties

    settings.RATE_LIMITS = limits(key={"any": "1/d"})
    first, second = make_partner(), make_partner()
    assert (me(first).status_code, me(first).status_code) == (200, 429)
    assert len(_penalties) == 1
    time.sleep(EARLY_REFUSAL_MAX + 0.05)

    assert (me(second).status_code, me(second).status_code) == (200, 429)

    assert [key for key, _ in _penalties] == [second.partner.api_keys.get().prefix]
