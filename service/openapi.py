"""The OpenAPI document says what the service does: examples that run, one per error status in the gateway's
words, the statuses each route can really answer, and the v2 answers FastAPI cannot infer (health's empty
200, the 415 of an unsupported ``Content-Encoding``). Applied to FastAPI's document once, when it is built.

Routes keep their decorators; everything here is post-processing of the document's JSON."""

from __future__ import annotations

from typing import Any

from service.openapi_examples import (
    DEFAULT_PARAMETERS,
    ERRORS,
    OPERATION_ERRORS,
    PARAMETERS,
    REQUESTS,
    Example,
    answers,
)

_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}
# The v2 health answers: Triton's HTTP endpoint writes 200 with no body and no content type.
_EMPTY_200 = ("/v2/health/live", "/v2/health/ready", "/ready")
# Statuses no request to these operations can provoke: the only thing a caller chooses is the model (an
# unknown or malformed one is 404), and a GET has no body to be too large. (A version in the path that is
# not a number is 400, so the versioned routes keep it.)
_NO_BAD_REQUEST = frozenset(
    {
        "GET /v2",
        "GET /v2/models/stats",
        "GET /v2/models/{model}",
        "GET /v2/models/{model}/config",
        "GET /v2/models/{model}/stats",
    }
)
_NO_MODEL = frozenset({"GET /v2", "GET /v2/models/stats"})
_UNSUPPORTED_ENCODING = {"description": "The body's Content-Encoding is not gzip or deflate"}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "string"}}
}


def describe_service(document: dict[str, Any]) -> None:
    """Complete FastAPI's ``document`` in place (see the module's docstring)."""
    recorded = answers()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            key = f"{method.upper()} {path}"
            _parameters(key, operation)
            _request_examples(key, operation)
            _responses(key, path, operation, recorded.get(key, {}))


def _named(examples: list[Example]) -> dict[str, Any]:
    return {example.name: {"summary": example.summary, "value": example.value} for example in examples}


def _parameters(key: str, operation: dict[str, Any]) -> None:
    values = PARAMETERS.get(key, DEFAULT_PARAMETERS)
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] in values:
            parameter["example"] = values[parameter["name"]]


def _request_examples(key: str, operation: dict[str, Any]) -> None:
    examples = REQUESTS.get(key)
    if examples:
        operation["requestBody"]["content"]["application/json"]["examples"] = _named(examples)


def _responses(key: str, path: str, operation: dict[str, Any], recorded: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    if "requestBody" not in operation:
        responses.pop("413", None)
    if key in _NO_MODEL:
        responses.pop("404", None)
    if key in _NO_BAD_REQUEST:
        responses.pop("400", None)
    if key.startswith("POST /v2/") and "/generate" not in key:
        responses["415"] = {
            **_UNSUPPORTED_ENCODING,
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
    if path.startswith("/v2") and path.endswith(_EMPTY_200):
        responses["200"].pop("content", None)
    elif recorded:
        content = responses["200"].setdefault("content", {}).setdefault("application/json", {})
        content["examples"] = {
            name: {"summary": _summary(key, name), "value": value} for name, value in recorded.items()
        }
    if path.endswith("/generate_stream") or path.startswith("/v1"):
        # No error examples: /v1 answers OpenAI's error shape, and a stream's errors before its first event
        # are generate's (shown there), which the examples' test provokes through generate's own example.
        return
    own = OPERATION_ERRORS.get(key, {})
    for status, response in responses.items():
        if status.startswith(("4", "5")) and (examples := own.get(int(status)) or ERRORS.get(int(status))):
            response.setdefault("content", {}).setdefault("application/json", {"schema": _ERROR_SCHEMA})
            response["content"]["application/json"]["examples"] = _named(examples)
        if status == "503":
            response["headers"] = _RETRY_AFTER


def _summary(key: str, name: str) -> str:
    for example in REQUESTS.get(key, ()):
        if example.name == name:
            return f"The answer to: {example.summary[0].lower()}{example.summary[1:]}"
    return "A real answer of the local Triton"
