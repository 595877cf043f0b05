"""What every route shares: settings and client dependencies, the request deadline, body reading, and the
JSON response. (The data-plane dependency is ``routes.plane``: ``/health`` must not import the pipeline.)"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.requests import ClientDisconnect

from service.errors import ClientClosedRequest, PayloadTooLarge
from service.settings import API_GATEWAY_LIMIT_SECONDS, Settings
from service.triton import Deadline, TritonClient, get_client

P = ParamSpec("P")
T = TypeVar("T")

# Time kept back from a Lambda's remaining time so the answer (even a 504) is written before it is killed.
_LAMBDA_MARGIN_SECONDS = 0.5
_MINIMUM_BUDGET_SECONDS = 0.05

# API Gateway checks the key; declaring it here lets Swagger's "Try it out" send it.
api_key = APIKeyHeader(
    name="x-api-key", auto_error=False, description="API Gateway API key (checked by API Gateway, not here)"
)
ApiKey = Annotated[str | None, Depends(api_key)]


def schema_ref(name: str) -> dict[str, str]:
    """A reference to a schema the OpenAPI document lists among its components (``app._openapi``)."""
    return {"$ref": f"#/components/schemas/{name}"}


def error_response(description: str) -> dict[str, Any]:
    # The envelope's schema by reference, not as a model: a model makes FastAPI build a field for it at
    # import, which imports pydantic.v1 (to refuse one) at a cold start. The OpenAPI document lists it.
    return {"description": description, "content": {"application/json": {"schema": schema_ref("ErrorBody")}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_response("The request does not fit the model; the message names the field"),
    404: error_response("The model or version is not served here"),
    413: error_response("The body is over the size limit"),
    502: error_response("Triton failed to run the request"),
    503: error_response("Triton is unavailable or not ready"),
    504: error_response("Triton did not answer within the deadline"),
}


# The dependencies are coroutines though they never wait: FastAPI would run plain functions in its thread
# pool, three thread hops per request for nothing.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _triton(settings: SettingsDep) -> TritonClient:
    return get_client(settings)


TritonDep = Annotated[TritonClient, Depends(_triton)]


def _request_budget(request: Request, seconds: float) -> float:
    """``seconds``, capped by API Gateway's limit and, under Lambda, by the invocation's remaining time."""
    budget = min(seconds, API_GATEWAY_LIMIT_SECONDS - 1.0)
    context = request.scope.get("aws.context")
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        budget = min(budget, remaining_ms() / 1000.0 - _LAMBDA_MARGIN_SECONDS)
    return max(budget, _MINIMUM_BUDGET_SECONDS)


def request_deadline(request: Request, settings: Settings) -> Deadline:
    """The deadline of a request's Triton calls (``TRITON_TIMEOUT_SECONDS``, capped as above)."""
    return Deadline(_request_budget(request, settings.triton_timeout_seconds))


async def _deadline(request: Request, settings: SettingsDep) -> Deadline:
    return request_deadline(request, settings)


async def _health_deadline(request: Request, settings: SettingsDep) -> Deadline:
    return Deadline(_request_budget(request, settings.health_timeout_seconds))


DeadlineDep = Annotated[Deadline, Depends(_deadline)]
# The health probes' shorter deadline, so they answer soon even when Triton hangs.
HealthDeadlineDep = Annotated[Deadline, Depends(_health_deadline)]


async def read_body(request: Request, settings: Settings) -> bytes:
    """The raw body, read once, refused as soon as it is over the configured size (a chunked body with no
    Content-Length included, so it is never held whole)."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    # The stream, not request.body(): Starlette joins the chunks it reads with the empty one that ends
    # them, which copies every body (3 MB for a JSON tensor) even when it arrived in one piece, as it
    # always does from Mangum. Refused at the first chunk past the limit, never held whole.
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:
                # Said as soon as it is true: the rest of the body is never read, so its size is unknown.
                raise PayloadTooLarge(f"body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest(
            f"client closed the connection after {size} bytes of its body; nothing was answered"
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON written by orjson, numpy arrays included, without a Python object per element."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


# The API key for a route that declares its parameters in ``openapi_extra`` rather than as dependencies.
SECURITY: dict[str, Any] = {"security": [{"APIKeyHeader": []}]}

_MODEL_PARAMETER = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION_PARAMETER = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "model version, e.g. 1",
}
# A v2 model route is served under both prefixes; each prefix with the path parameters its OpenAPI declares
# (the routes read them themselves).
MODEL_PREFIXES: tuple[tuple[str, list[dict[str, Any]]], ...] = (
    ("/models/{model}", [_MODEL_PARAMETER]),
    ("/models/{model}/versions/{version}", [_MODEL_PARAMETER, _VERSION_PARAMETER]),
)


class RequestRoute(APIRoute):
    """An :class:`APIRoute` (FastAPI's ``route_class`` extension point) whose endpoint, when it takes the
    request alone, serves it directly: FastAPI has nothing to resolve or validate for it, and its request
    handler would cost ~20-40 µs a request for nothing. Matching, OpenAPI and error handlers stay
    FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        found = self.dependant
        resolved = (
            found.dependencies,
            found.path_params,
            found.query_params,
            found.header_params,
            found.cookie_params,
            found.body_params,
        )
        if found.request_param_name and not any(resolved):
            endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
            return endpoint
        return super().get_route_handler()
