"""AWS Lambda entry point of the streaming routes: a client of the Lambda Runtime API that runs the ASGI app
and streams its body, as it is produced, in the format API Gateway's streaming proxy integration reads.

The Python managed runtime cannot stream and Mangum answers with one buffered dict (Kludex/mangum#299), so
this process is the runtime (the image's entry point is replaced, see deploy/template.yaml): it takes each
invocation from ``GET /2018-06-01/runtime/invocation/next`` and posts the answer to ``.../response`` with
``Lambda-Runtime-Function-Response-Mode: streaming`` and ``Transfer-Encoding: chunked``, a mid-stream failure
in the trailers ``Lambda-Runtime-Function-Error-Type`` and ``Lambda-Runtime-Function-Error-Body`` (base64)
(AWS Lambda Developer Guide, "Building a custom runtime": "Implementing response streaming in a custom
runtime"). The body starts with API Gateway's metadata prelude: content type
``application/vnd.awslambda.http-integration-response``, a JSON object with ``statusCode``, ``headers``,
``multiValueHeaders`` and ``cookies``, then 8 NUL bytes, then the payload (API Gateway Developer Guide, "Set
up a Lambda proxy integration with payload response streaming": "Lambda proxy integration format for response
streaming"). Run: ``python -m service.lambda_stream`` with ``AWS_LAMBDA_RUNTIME_API`` set by Lambda.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import http.client
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

import orjson
from starlette.types import ASGIApp, Message

from service.rest_event import BadEvent, event_body, rest_event_problem

log = logging.getLogger("service.lambda")

API = "/2018-06-01/runtime"
PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
# API Gateway reads the JSON metadata up to this separator, and everything after it as the payload.
DELIMITER = b"\x00" * 8
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"

Write = Callable[[bytes], Awaitable[None]]


@dataclass
class Invocation:
    """One event from ``/invocation/next`` and the headers Lambda sends beside it."""

    request_id: str
    deadline_ms: int
    function_arn: str
    trace_id: str
    event: bytes


@dataclass
class LambdaContext:
    """The fields of the managed runtime's context object that the gateway reads."""

    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int
    function_name: str = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    function_version: str = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
    memory_limit_in_mb: str = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")

    def get_remaining_time_in_millis(self) -> int:
        return max(self.deadline_ms - int(time.time() * 1000), 0)


class AppFailed(Exception):
    """The app raised; ``started`` says whether a byte of its answer had already gone out."""


def asgi_scope(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The ASGI HTTP scope of a REST proxy event, field for field as Mangum's ``APIGateway`` builds it, so the
    app sees the same request (``aws.event``/``aws.context`` included) under either entry point."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    for key, values in (event.get("multiValueHeaders") or {}).items():
        headers[key.lower()] = ", ".join(values)
    params = event.get("multiValueQueryStringParameters") or event.get("queryStringParameters") or {}
    host = headers.get("host", "mangum")
    name, port = host.split(":") if ":" in host else (host, headers.get("x-forwarded-port", "80"))
    return {
        "type": "http",
        "http_version": "1.1",
        "method": event["httpMethod"],
        "headers": [[k.encode(), v.encode()] for k, v in headers.items()],
        "path": unquote(event["path"]),
        "raw_path": None,
        "root_path": "",
        "scheme": headers.get("x-forwarded-proto", "https"),
        "query_string": urlencode(params, doseq=True).encode() if params else b"",
        "server": (name, int(port)),
        "client": ((event["requestContext"].get("identity") or {}).get("sourceIp"), 0),
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "aws.event": event,
        "aws.context": context,
    }


def prelude(status: int, raw_headers: list[tuple[bytes, bytes]]) -> bytes:
    """API Gateway's metadata prelude and its 8-byte separator: repeated headers go to ``multiValueHeaders``,
    ``set-cookie`` to ``cookies``."""
    headers: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    cookies: list[str] = []
    for raw_key, raw_value in raw_headers:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key == "set-cookie":
            cookies.append(value)
        elif key in multi:
            multi[key].append(value)
        elif key in headers:
            multi[key] = [headers.pop(key), value]
        else:
            headers[key] = value
    metadata = {"statusCode": status, "headers": headers, "multiValueHeaders": multi, "cookies": cookies}
    return orjson.dumps(metadata) + DELIMITER


def error_prelude(status: int, message: str) -> tuple[bytes, bytes]:
    """A whole answer of the gateway's ``{"error": ...}`` shape: the prelude and its body."""
    return prelude(status, [(b"content-type", b"application/json")]), orjson.dumps({"error": message})


async def run_app(
    app: ASGIApp, event: dict[str, Any], context: LambdaContext, write: Write, disconnected: asyncio.Event
) -> None:
    """Run ``app`` on ``event``; ``write`` gets the prelude (with the first body bytes), then each body chunk
    as the app sends it. Before the first byte a failure is answered (400 for an unreadable event, 500 for
    the app); after it :class:`AppFailed` is raised for the caller to end the stream as failed."""
    problem = rest_event_problem(event)
    body = b""
    if problem is None:
        try:
            body = event_body(event)
        except BadEvent as exc:
            problem = exc.message
    if problem is not None:
        log.warning("not a readable API Gateway REST event: %s", problem)
        head, answer = error_prelude(400, f"not an API Gateway REST API event: {problem}")
        await write(head + answer)
        return
    request_sent = False
    start: dict[str, Any] = {}
    started = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body" and not disconnected.is_set():
            chunk: bytes = message.get("body", b"")
            if not started:
                started = True
                await write(prelude(start["status"], start.get("headers", [])) + chunk)
            elif chunk:
                await write(chunk)

    try:
        await app(asgi_scope(event, context), receive, send)
    except Exception as exc:
        if started:
            raise AppFailed(f"{type(exc).__name__}: {exc}") from exc
        log.exception("the app failed before its answer started")
        head, answer = error_prelude(500, "internal error")
        await write(head + answer)
        return
    if not started:
        head, answer = error_prelude(500, "the app ended without an answer")
        await write(head + answer)


class StreamingResponse:
    """One ``POST .../invocation/<id>/response`` in streaming mode, opened at the first write.

    The connection is watched while the answer streams: the Runtime API answers (or closes) only once the
    body is complete, so anything it says earlier means the caller is gone, and ``disconnected`` is set for
    the app's ``receive`` to report ``http.disconnect``."""

    def __init__(self, address: tuple[str, int], request_id: str, disconnected: asyncio.Event) -> None:
        self.address = address
        self.request_id = request_id
        self.disconnected = disconnected
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.watcher: asyncio.Task[bytes] | None = None

    async def write(self, data: bytes) -> None:
        if self.writer is None:
            await self._open()
        if self.disconnected.is_set() or not data:
            return
        assert self.writer is not None
        try:
            self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.disconnected.set()

    async def finish(self, failure: str | None = None) -> None:
        """The last chunk, with the error trailers when the app failed after its first byte."""
        if self.writer is None:
            return
        trailers = b""
        if failure is not None:
            error = orjson.dumps(
                {"errorMessage": failure, "errorType": "Runtime.StreamError", "stackTrace": []}
            )
            trailers = b"%s: Runtime.StreamError\r\n%s: %s\r\n" % (
                ERROR_TYPE_TRAILER.encode(),
                ERROR_BODY_TRAILER.encode(),
                base64.b64encode(error),
            )
        try:
            if not self.disconnected.is_set():
                self.writer.write(b"0\r\n" + trailers + b"\r\n")
                await self.writer.drain()
                assert self.watcher is not None
                answer = await self.watcher
                if not answer.startswith(b"HTTP/1.1 202"):
                    log.error("the Runtime API refused the response: %r", answer[:200])
        except (ConnectionError, OSError):
            log.warning("the Runtime API closed the response stream")
        finally:
            if self.watcher is not None:
                self.watcher.cancel()
            self.writer.close()

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(*self.address)
        head = (
            f"POST {API}/invocation/{self.request_id}/response HTTP/1.1\r\n"
            f"Host: {self.address[0]}:{self.address[1]}\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            "Transfer-Encoding: chunked\r\n"
            f"Content-Type: {PRELUDE_CONTENT_TYPE}\r\n"
            f"Trailer: {ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}\r\n"
            "\r\n"
        )
        self.writer.write(head.encode())
        self.watcher = asyncio.ensure_future(self._watch(self.reader))

    async def _watch(self, reader: asyncio.StreamReader) -> bytes:
        try:
            answer = await reader.read(65536)
        except (ConnectionError, OSError):
            answer = b""
        # Before the last chunk, an answer or an EOF means the stream has no reader any more.
        self.disconnected.set()
        return answer


class RuntimeClient:
    """The Runtime API's blocking calls: one invocation at a time, so nothing else waits on the loop."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.address = (host, int(port))
        self.connection = http.client.HTTPConnection(host, int(port))

    def next(self) -> Invocation:
        self.connection.request("GET", f"{API}/invocation/next")
        response = self.connection.getresponse()
        event = response.read()
        if response.status != 200:
            raise RuntimeError(f"invocation/next answered {response.status}: {event[:200]!r}")
        return Invocation(
            request_id=response.headers["Lambda-Runtime-Aws-Request-Id"],
            deadline_ms=int(response.headers.get("Lambda-Runtime-Deadline-Ms", "0")),
            function_arn=response.headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
            trace_id=response.headers.get("Lambda-Runtime-Trace-Id", ""),
            event=event,
        )

    def post_error(self, path: str, exc: BaseException) -> None:
        """``/init/error`` or ``/invocation/<id>/error``: the failure as Lambda's error JSON."""
        error_type = f"Runtime.{type(exc).__name__}"
        body = orjson.dumps({"errorMessage": str(exc), "errorType": error_type, "stackTrace": []})
        headers = {"Lambda-Runtime-Function-Error-Type": error_type, "Content-Type": "application/json"}
        self.connection.request("POST", f"{API}/{path}", body=body, headers=headers)
        self.connection.getresponse().read()


async def invoke(app: ASGIApp, invocation: Invocation, address: tuple[str, int]) -> None:
    """One invocation: the app's answer streamed to the Runtime API."""
    disconnected = asyncio.Event()
    response = StreamingResponse(address, invocation.request_id, disconnected)
    context = LambdaContext(invocation.request_id, invocation.function_arn, invocation.deadline_ms)
    try:
        event = orjson.loads(invocation.event)
    except orjson.JSONDecodeError:
        event = None
    failure = None
    try:
        await run_app(app, event, context, response.write, disconnected)
    except AppFailed as exc:
        log.error("the app failed after its answer started: %s", exc, exc_info=exc.__cause__)
        failure = str(exc)
    await response.finish(failure)


def serve(app: ASGIApp, address: str) -> None:
    """Take invocations from the Runtime API at ``address`` forever, one at a time."""
    client = RuntimeClient(address)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        while True:
            invocation = client.next()
            # What the managed runtime does before each invocation: X-Ray reads the trace header from here.
            os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
            loop.run_until_complete(invoke(app, invocation, client.address))
    finally:
        loop.close()
        client.connection.close()


def main() -> None:
    """The image's entry point for the streaming function."""
    # As in service.lambda_handler: the import's ~95,000 long-lived objects kept out of every collection.
    gc.disable()
    address = os.environ["AWS_LAMBDA_RUNTIME_API"]
    try:
        from service.app import app
        from service.triton import get_client

        get_client(app.state.settings).connect()
    except Exception as exc:
        log.exception("the gateway failed to start")
        RuntimeClient(address).post_error("init/error", exc)
        sys.exit(1)
    gc.freeze()
    gc.enable()
    serve(app, address)


if __name__ == "__main__":
    main()
