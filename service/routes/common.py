"""What every route shares: settings and client dependencies, the request deadline, body reading, and the
JSON response. (The data-plane dependency is ``routes.plane``: ``/health`` must not import the pipeline.)"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from service.errors import BadRequest, ClientClosedRequest, PayloadTooLarge, describe_validation_errors
from service.protocol.envelopes import ErrorBody
from service.settings import API_GATEWAY_LIMIT_SECONDS, Settings
from service.triton import Deadline, TritonClient, get_client

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")

# Time kept back from a Lambda's remaining time so the answer (even a 504) is written before it is killed.
_LAMBDA_MARGIN_SECONDS = 0.5
_MINIMUM_BUDGET_SECONDS = 0.05
# Threads for blocking work under uvicorn (anyio's default, which Starlette's thread pool used).
_OFF_LOOP_THREADS = 40
# Bodies up to this size are parsed and decoded on the loop itself: a thread hop costs more than the work.
_INLINE_BODY_BYTES = 64 * 1024

# API Gateway checks the key; declaring it here lets Swagger's "Try it out" send it.
api_key = APIKeyHeader(
    name="x-api-key", auto_error=False, description="API Gateway API key (checked by API Gateway, not here)"
)
ApiKey = Annotated[str | None, Depends(api_key)]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "The request does not fit the model; the message names the field",
    },
    404: {"model": ErrorBody, "description": "The model or version is not served here"},
    413: {"model": ErrorBody, "description": "The body is over the size limit"},
    502: {"model": ErrorBody, "description": "Triton failed to run the request"},
    503: {"model": ErrorBody, "description": "Triton is unavailable or not ready"},
    504: {"model": ErrorBody, "description": "Triton did not answer within the deadline"},
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


async def off_loop(request: Request, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``call`` (blocking work: decoding a big body, images) where it does not stall other requests.

    Under uvicorn that is a worker thread, so one slow request never holds up the event loop. A Lambda
    (Mangum puts its event in the scope) handles one event at a time, and Mangum runs each on a fresh
    asyncio task whose worker threads anyio stops when it ends: there the hop would start a thread per
    request to free a loop nobody else is waiting on, so the call runs inline."""
    if "aws.event" in request.scope:
        return call(*args, **kwargs)
    # The loop's executor hop, not Starlette's run_in_threadpool: anyio's capacity limiter, cancel scope and
    # worker bookkeeping cost ~0.1 ms a request here, for the same thread and the same bound on threads. The
    # call runs in a copy of the request's context (its id, its observation), as anyio's does.
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), partial(context.run, call, *args, **kwargs))


class OffLoop:
    """CPU work of one request run by :func:`off_loop` (the data plane's ``offload``)."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def __call__(self, work: Callable[[], T]) -> Awaitable[T]:
        return off_loop(self._request, work)


def cpu_offload(request: Request, body: bytes) -> OffLoop | None:
    """Where a body's parsing and decoding run: off the loop when it is big (under uvicorn; a Lambda runs
    everything inline), on it (None) when it is small."""
    return OffLoop(request) if len(body) > _INLINE_BODY_BYTES else None


@cache
def _executor() -> ThreadPoolExecutor:
    # Created on first use (never at import: a cold start answering /health starts no threads); as many
    # threads as anyio's default limit, the bound Starlette's thread pool had.
    return ThreadPoolExecutor(max_workers=_OFF_LOOP_THREADS, thread_name_prefix="off-loop")


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


def parse_json(model: type[M], body: bytes) -> M:
    """The body decoded straight from bytes into ``model`` (no intermediate dict); 400 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(describe_validation_errors(exc.errors(include_url=False))) from None


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON written by orjson, numpy arrays included, without a Python object per element."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def raw_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a route that decodes its body itself: documents ``model`` as the JSON request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
