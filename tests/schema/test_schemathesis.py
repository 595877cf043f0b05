"""A bounded schemathesis run over the whole OpenAPI document, against the app in process in front of the
session's real Triton: no 5xx, every answer of a documented status and schema, every error {"error": str}.

Bounded for CI on 2 shared cores: a fixed seed (derandomized), few examples per operation, no shrinking
phase, no example database."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from localdev.tritonserver import TritonServer
from service.app import create_app
from service.settings import Settings

MAX_EXAMPLES = 25


# The schema is loaded at collection, before the session's Triton exists (schemathesis' from_fixture does not
# run under this pytest); the fixture below points the app at Triton before the first call.
APP = create_app(Settings())


def _without_the_key(document: dict[str, Any]) -> dict[str, Any]:
    # The x-api-key is API Gateway's to check (403 before the Lambda runs): the app never sees a request
    # without one, so the document schemathesis reads does not ask for it, or it would count every request
    # without the key that the app (rightly) serves as "a schema-violating request accepted".
    document = copy.deepcopy(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    document["components"].pop("securitySchemes", None)
    return document


schema = schemathesis.openapi.from_dict(_without_the_key(APP.openapi()))
schema.app = APP


@pytest.fixture(autouse=True)
def _app_on_the_session_triton(triton: TritonServer) -> None:
    APP.state.settings = Settings(triton_grpc_url=triton.grpc_url, triton_timeout_seconds=5)


@schemathesis.check
def error_envelope(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx/5xx body is {"error": "<string>"} (GET /health's 503 adds its fields beside it); under /v1,
    OpenAI's {"error": {"message", "type", "param", "code"}}."""
    if response.status_code < 400:
        return None
    body = response.json()
    if case.path.startswith("/v1"):
        assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}, body
        assert isinstance(body["error"]["message"], str), body
        return True
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    if case.path != "/health":
        assert list(body) == ["error"], body
    return True


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_service_does_what_its_document_says(case: schemathesis.Case) -> None:
    # A body can fit the schema and still not fit the model (a shape, a datatype, an unknown model): 400, 404
    # are right for those, so "schema-valid requests are accepted" is not checked.
    case.call_and_validate(
        additional_checks=[error_envelope], excluded_checks=[schemathesis.checks.positive_data_acceptance]
    )
