"""Server-sent events for the generation routes: a plain ASGI streaming response (uvicorn, or any adapter
that streams), started only once the first response is in hand, so a failure before it (a model the
caller cannot use, an overloaded Triton) is an ordinary error answer with its status and Retry-After,
and one after it is an error event in the stream."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from fastapi.responses import Response, StreamingResponse

from service.errors import GatewayError
from service.request_context import current_request_id, with_request_id

T = TypeVar("T")

log = logging.getLogger("service")

# No caching or buffering by a proxy in between (nginx reads X-Accel-Buffering), as OpenAI answers.
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error_message(exc: GatewayError) -> str:
    """What a caller is told of ``exc`` (a 5xx's upstream detail is logged, never answered)."""
    if exc.status < 500:
        return exc.message
    log.warning("%d %s [request id %s] %s", exc.status, exc.message, current_request_id(), exc.detail)
    return with_request_id(exc.message)


async def event_stream(
    responses: AsyncIterator[T],
    encode: Callable[[T], bytes],
    error_event: Callable[[GatewayError], bytes],
    done: Callable[[], bytes] | None = None,
) -> Response:
    """An SSE response of ``encode(response)`` for each of ``responses`` and then ``done()``; raises what
    the first response raises."""
    first: list[T] = []
    with contextlib.suppress(StopAsyncIteration):
        first.append(await anext(responses))

    async def body() -> AsyncIterator[bytes]:
        try:
            for response in first:
                yield encode(response)
            async for response in responses:
                yield encode(response)
        except GatewayError as exc:
            yield error_event(exc)
            return
        if done is not None:
            yield done()

    return StreamingResponse(body(), media_type="text/event-stream", headers=_HEADERS)
