"""The API against its own OpenAPI description: schemathesis generates a few hundred requests
from the schema (valid and not) and checks that none gets a 5xx and every answer matches its
described status, content type and schema. Only loopback is reachable: host names in generated
image URLs are never looked up."""

from __future__ import annotations

import socket

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from core.api.app import create_app
from core.config import load_settings

KEY = "schema-test-key"
EXAMPLES = 25  # per operation: a few hundred requests in all


@pytest.fixture
def api_schema(app_env, monkeypatch, api_service):
    """The app (keys on, the tiny model loaded once) as schemathesis loads it."""
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(f"not resolved in tests: {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    monkeypatch.setenv("CLIPLAB_API_KEYS", KEY)
    app = create_app(load_settings(), api_service)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_no_5xx_and_every_answer_matches_the_schema(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):
            nonlocal calls
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {KEY}"}
            response = case.call()
            calls += 1
            assert response.status_code < 500, f"{case.operation.label}: {response.text}"
            case.validate_response(response, checks=CHECKS)

        check()
    assert calls >= 200  # a few hundred generated requests in all
