"""Generated requests against every operation in the OpenAPI schema (schemathesis).

Whatever a partner sends, valid by the schema or not, the server answers without a 5xx, and
every documented response has the documented shape.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from consortium.wsgi import application
from tests.conftest import PartnerClient

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def api_schema(db: None) -> Iterator[schemathesis.BaseSchema]:
    # Called as a WSGI app, Django would close the test's connection at the end of each
    # request (the test client disconnects this handler for the same reason).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_never_fail_the_server(
    api_schema: schemathesis.BaseSchema, alice: PartnerClient, shared_list, mode
) -> None:
    headers = {"Authorization": f"Bearer {alice.api_key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def requests_for_operation(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance]
            )

        requests_for_operation()
