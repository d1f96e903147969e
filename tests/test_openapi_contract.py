"""schemathesis against /openapi.json: no 500, and every response matches its schema."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from worker_service import create_app, resources


def _app():
    import tempfile

    resources.reset()
    return create_app({"WORKER_STATE_DIR": tempfile.mkdtemp(prefix="ws-schemathesis-"), "HEALTH_CACHE_TTL": "0",
                       "STATUS_CACHE_TTL": "0"})


schema = schemathesis.openapi.from_wsgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_openapi_document(case):
    # /health's 503 is documented (a dependency is down here: no scheduler runs
    # in-process), so the generic "no 5xx" check is replaced by "no 500".
    response = case.call_and_validate(excluded_checks=[not_a_server_error])
    assert response.status_code != 500


def test_openapi_document_describes_every_endpoint():
    document = _app().test_client().get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert {"/health", "/health/live", "/health/{component}", "/status", "/metrics", "/openapi.json"} <= set(document["paths"])
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "Status" in document["components"]["schemas"]


@pytest.mark.parametrize("path", ["/health", "/status"])
def test_responses_validate_against_their_marshmallow_schema(path):
    from worker_service.health.schemas import HealthSchema
    from worker_service.status.schemas import StatusSchema

    body = _app().test_client().get(path).json
    schema_class = HealthSchema if path == "/health" else StatusSchema
    assert schema_class().validate(body) == {}


def test_every_route_of_the_app_is_in_the_openapi_document():
    app = _app()
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes == set(app.test_client().get("/openapi.json").json["paths"])
