"""AWS Lambda entry point: API Gateway events through Mangum into the FastAPI app.

Lifespan is off because Mangum would run it on every invocation; the Triton client is built lazily
and lives as long as the Lambda's process. An event that is not an API Gateway REST event (a direct
``aws lambda invoke``, a test console's sample) is logged and answered with a 400, never a crash."""

from __future__ import annotations

import gc

# The cold start creates ~95,000 objects that live as long as the process (FastAPI's and pydantic's
# classes, schemas and validators, the protobuf descriptors) and the collector walks them again and again as
# they pile up, for garbage an import hardly makes: ~10 % of the import. Off until the handler is built.
gc.disable()

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from mangum import Mangum
from mangum.handlers import APIGateway

from service.app import app
from service.rest_event import BadEvent, event_body, rest_event_problem
from service.triton import get_client
from service.triton.inline import inline_calls

log = logging.getLogger("service.lambda")


class RestApiEvent(APIGateway):
    """API Gateway REST events, their bodies read by :func:`service.rest_event.event_body` (SIMD base64)."""

    @property
    def body(self) -> bytes:
        return event_body(self.event)


# Mangum logs "GET /path 200" at INFO for every event: the gateway's access record already says that, once.
logging.getLogger("mangum.http").setLevel(logging.WARNING)


class Gateway(Mangum):
    """Mangum, with the event checked first: Mangum indexes the fields it reads and would raise."""

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        problem = rest_event_problem(event)
        if problem is not None:
            keys = sorted(map(str, event))[:20] if isinstance(event, Mapping) else type(event).__name__
            log.error("not an API Gateway REST event: %s (top-level keys: %s)", problem, keys)
            return error_answer(f"not an API Gateway REST API event: {problem}")
        try:
            # Mangum runs the event on the thread's current loop: the process's one loop, set each time
            # (asyncio.run, in a test process, leaves the thread with none).
            asyncio.set_event_loop(_loop())
            # One event at a time on a loop nobody else waits on: the Triton calls block inline, the
            # cheaper way there (bench/bench.py measures both).
            with inline_calls():
                return super().__call__(event, context)
        except BadEvent as exc:
            log.warning("%s %s 400: %s", event["httpMethod"], event["path"], exc.message)
            return error_answer(exc.message)
        except (KeyError, TypeError, ValueError, AttributeError):
            # Mangum's own reading of an event that passed the checks: the app itself never raises out
            # of Mangum (its HTTP cycle turns failures into a 500).
            log.exception("API Gateway event Mangum could not read")
            return error_answer("the event is not a well-formed API Gateway REST API event")


_LOOP: list[asyncio.AbstractEventLoop] = []


def _loop() -> asyncio.AbstractEventLoop:
    """The loop every event runs on, made on the first."""
    if not _LOOP or _LOOP[0].is_closed():
        _LOOP[:] = [asyncio.new_event_loop()]
    return _LOOP[0]


def error_answer(message: str) -> dict[str, Any]:
    """A REST proxy answer: 400 with the gateway's ``{"error": ...}`` body."""
    return {
        "statusCode": 400,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {},
        "body": orjson.dumps({"error": message}).decode(),
        "isBase64Encoded": False,
    }


handler = Gateway(app, lifespan="off", custom_handlers=[RestApiEvent])

# Lambda invokes the handler right after this init: gRPC connects to Triton meanwhile, in its own threads, so
# the first event's call (a cold start's /health) finds the channel open or opening instead of opening it.
# A failed attempt costs nothing more: the client retries a call on a fresh channel.
get_client(app.state.settings).connect()

# What the import built lives as long as the process: kept out of every later collection (the permanent
# generation), so the collector walks only what invocations allocate, then on again.
gc.freeze()
gc.enable()
