"""Stand-ins for what runs the streaming function on AWS, speaking the documented protocols on real sockets.

``RuntimeApi`` is Lambda's Runtime API (AWS Lambda Developer Guide, "Using the Lambda runtime API for
custom runtimes" and "Implementing response streaming in a custom runtime"):
``GET /2018-06-01/runtime/invocation/next`` answers an event with ``Lambda-Runtime-Aws-Request-Id``,
``-Deadline-Ms``, ``-Invoked-Function-Arn`` and ``-Trace-Id``; ``POST .../invocation/<id>/response`` takes
a buffered body, or, with ``Lambda-Runtime-Function-Response-Mode: streaming``, a chunked one whose
trailers may carry ``Lambda-Runtime-Function-Error-Type``/``-Body``; ``.../error`` and ``/init/error``
take a failure. Each is answered ``202 Accepted``. The chunks are parsed here, byte by byte, and handed
on as they arrive.

``ApiGateway`` is a REST API stage in front of it with a streaming Lambda proxy integration: it turns an
HTTP request into a REST proxy event (as ``tests/lambda_events.py`` loads them), invokes, reads the
metadata prelude up to its 8 NUL bytes (API Gateway Developer Guide, "Lambda proxy integration format for
response streaming"), answers its status and headers, then passes each payload chunk on as it comes. A
client that goes away cancels the invocation: the Runtime API side closes the function's response
connection.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import queue
import select
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.lambda_events import load_event

PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\x00" * 8
ARN = "arn:aws:lambda:us-east-1:123456789012:function:triton-gateway-stream:live"

# The REST API's resources, most specific first (API Gateway picks the most specific match).
RESOURCES = [
    "/v2/models/{model}/versions/{version}/generate_stream",
    "/v2/models/{model}/generate_stream",
    "/v1/completions",
    "/v1/chat/completions",
    "/health",
    "/v2/{proxy+}",
    "/{proxy+}",
]


@dataclass
class Invocation:
    """One event handed to the function, and what the function posted back, as it arrives."""

    event: dict[str, Any]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int = field(default_factory=lambda: int(time.time() * 1000) + 60_000)
    trace_id: str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    # ("head", headers) once, then ("data", bytes)* and one of ("end", trailers), ("buffered", body),
    # ("error", (type, body)) or ("broken", None).
    parts: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    # The function's POST .../response: its headers, and its body exactly as sent (chunk framing included).
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytearray = field(default_factory=bytearray)
    connection: socket.socket | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set once the function's answer has been read to its end (or its connection lost).
    done: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The caller is gone: close the function's response connection under it."""
        self.cancelled.set()
        if self.connection is not None:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def next_part(self, timeout: float = 30.0) -> tuple[str, Any]:
        return self.parts.get(timeout=timeout)

    def finish(self, kind: str, value: Any) -> None:
        self.parts.put((kind, value))
        self.done.set()


class RuntimeApi(socketserver.ThreadingTCPServer):
    """The Lambda Runtime API for one function instance, on 127.0.0.1."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RuntimeHandler)
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[tuple[str, bytes]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        _quiet_when_gone(self, request, client_address)

    def submit(self, event: dict[str, Any]) -> Invocation:
        invocation = Invocation(event)
        self.invocations[invocation.request_id] = invocation
        self.pending.put(invocation)
        return invocation

    def __enter__(self) -> RuntimeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _RuntimeHandler(socketserver.StreamRequestHandler):
    server: RuntimeApi

    def handle(self) -> None:
        while not self.server.stopping.is_set():
            line = self.rfile.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers = self._headers()
            if method == "GET" and path == "/2018-06-01/runtime/invocation/next":
                if not self._next():
                    return
            elif method == "POST" and path.startswith("/2018-06-01/runtime/invocation/"):
                request_id, action = path.removeprefix("/2018-06-01/runtime/invocation/").split("/")
                invocation = self.server.invocations.get(request_id)
                if invocation is None:
                    self._answer(400, b'{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}')
                    return
                if action == "response":
                    if not self._response(invocation, headers):
                        return
                elif action == "error":
                    body = self.rfile.read(int(headers.get("content-length", "0")))
                    invocation.finish("error", (headers.get("lambda-runtime-function-error-type"), body))
                    self._answer(202, b'{"status":"OK"}')
            elif method == "POST" and path == "/2018-06-01/runtime/init/error":
                body = self.rfile.read(int(headers.get("content-length", "0")))
                self.server.init_errors.append((headers.get("lambda-runtime-function-error-type", ""), body))
                self._answer(202, b'{"status":"OK"}')
            else:
                self._answer(404, b'{"errorMessage":"not found"}')
                return

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            key, value = line.decode("latin-1").split(":", 1)
            headers[key.strip().lower()] = value.strip()
        return headers

    def _next(self) -> bool:
        while True:
            if self.server.stopping.is_set():
                return False
            try:
                invocation = self.server.pending.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        body = json.dumps(invocation.event).encode()
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/json\r\n"
            f"Lambda-Runtime-Aws-Request-Id: {invocation.request_id}\r\n"
            f"Lambda-Runtime-Deadline-Ms: {invocation.deadline_ms}\r\n"
            f"Lambda-Runtime-Invoked-Function-Arn: {ARN}\r\n"
            f"Lambda-Runtime-Trace-Id: {invocation.trace_id}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)
        return True

    def _response(self, invocation: Invocation, headers: dict[str, str]) -> bool:
        invocation.headers = headers
        invocation.parts.put(("head", headers))
        if headers.get("lambda-runtime-function-response-mode") != "streaming":
            invocation.finish("buffered", self.rfile.read(int(headers.get("content-length", "0"))))
            self._answer(202, b'{"status":"OK"}')
            return True
        assert headers.get("transfer-encoding") == "chunked", headers
        invocation.connection = self.connection
        if invocation.cancelled.is_set():
            invocation.cancel()
        try:
            while True:
                size_line = self.rfile.readline()
                invocation.raw += size_line
                if not size_line.endswith(b"\r\n"):
                    raise ConnectionError("the stream ended inside a chunk header")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                data = self.rfile.read(size)
                crlf = self.rfile.read(2)
                invocation.raw += data + crlf
                if len(data) != size or crlf != b"\r\n":
                    raise ConnectionError("the stream ended inside a chunk")
                invocation.parts.put(("data", data))
            trailers = {}
            while (line := self.rfile.readline()) != b"\r\n":
                invocation.raw += line
                if not line:
                    raise ConnectionError("the stream ended inside the trailers")
                key, value = line.decode("latin-1").split(":", 1)
                trailers[key.strip()] = value.strip()
            invocation.raw += b"\r\n"
        except (ConnectionError, OSError, ValueError):
            invocation.finish("broken", None)
            return False
        invocation.finish("end", trailers)
        self._answer(202, b'{"status":"OK"}')
        return True

    def _answer(self, status: int, body: bytes) -> None:
        reason = {202: "Accepted", 400: "Bad Request", 404: "Not Found"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            self.wfile.write(head.encode() + body)


def _quiet_when_gone(server: socketserver.BaseServer, request: Any, client_address: Any) -> None:
    """A peer that went away mid-request is what the disconnect tests do: only other errors are printed."""
    if not isinstance(sys.exc_info()[1], ConnectionError):
        socketserver.BaseServer.handle_error(server, request, client_address)


def rest_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
    """The REST proxy event API Gateway sends for this request (binary media types ``*/*``: bodies base64)."""
    url = urlsplit(target)
    path = url.path
    resource = next(r for r in RESOURCES if _matches(r, path))
    event = load_event("v2_infer")
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["path"] = path
    event["requestContext"]["path"] = f"/api{path}"
    event["resource"] = event["requestContext"]["resourcePath"] = resource
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["pathParameters"] = _path_parameters(resource, path)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in headers:
        single[key] = value
        multi.setdefault(key, []).append(value)
    event["headers"], event["multiValueHeaders"] = single, multi
    query = parse_qsl(url.query, keep_blank_values=True)
    event["queryStringParameters"] = dict(query) or None
    multi_query: dict[str, list[str]] = {}
    for key, value in query:
        multi_query.setdefault(key, []).append(value)
    event["multiValueQueryStringParameters"] = multi_query or None
    event["body"] = base64.b64encode(body).decode() if body else None
    event["isBase64Encoded"] = bool(body)
    return copy.deepcopy(event)


def _matches(resource: str, path: str) -> bool:
    want, got = resource.strip("/").split("/"), path.strip("/").split("/")
    for i, part in enumerate(want):
        if part.endswith("+}"):
            return len(got) > i
        if i >= len(got) or (part != got[i] and not part.startswith("{")):
            return False
    return len(want) == len(got)


def _path_parameters(resource: str, path: str) -> dict[str, str] | None:
    want, got = resource.strip("/").split("/"), path.strip("/").split("/")
    params = {}
    for i, part in enumerate(want):
        if part.endswith("+}"):
            params[part[1:-2]] = "/".join(got[i:])
        elif part.startswith("{"):
            params[part[1:-1]] = got[i]
    return params or None


class ApiGateway(ThreadingHTTPServer):
    """A REST API stage whose every route has a streaming Lambda proxy integration to ``runtime``."""

    daemon_threads = True

    def __init__(self, runtime: RuntimeApi) -> None:
        super().__init__(("127.0.0.1", 0), _GatewayHandler)
        self.runtime = runtime
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.seen: list[Invocation] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        _quiet_when_gone(self, request, client_address)

    def __enter__(self) -> ApiGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _GatewayHandler(BaseHTTPRequestHandler):
    server: ApiGateway
    protocol_version = "HTTP/1.1"
    chunked = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _proxy(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        event = rest_event(self.command, self.path, list(self.headers.items()), body)
        invocation = self.server.runtime.submit(event)
        self.server.seen.append(invocation)
        parts = self._parts(invocation)
        kind, head = next(parts)
        if kind == "error":
            self._whole(502, b'{"message": "Internal server error"}')
            return
        if kind != "head" or head.get("content-type") != PRELUDE_CONTENT_TYPE:
            self._whole(502, b'{"message": "Internal server error"}')
            return
        buffered = b""
        for kind, value in parts:
            if kind != "data":
                # Nothing past the prelude, or no separator: API Gateway has no status to answer with.
                self._whole(502, b'{"message": "Internal server error"}')
                return
            buffered += value
            if DELIMITER in buffered:
                break
        metadata, _, rest = buffered.partition(DELIMITER)
        self.chunked = self._start(json.loads(metadata))
        if rest:
            self._chunk(invocation, rest)
        for kind, value in parts:
            if kind == "data":
                self._chunk(invocation, value)
            elif kind == "end" and not any(k.lower() == "lambda-runtime-function-error-type" for k in value):
                if self.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return
            else:
                # A failure after the first byte: the response is cut off, without its last chunk.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return

    def _parts(self, invocation: Invocation) -> Iterator[tuple[str, Any]]:
        """The function's answer as it arrives; cancels the invocation when the client goes away meanwhile."""
        while True:
            try:
                part = invocation.parts.get(timeout=0.05)
            except queue.Empty:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    invocation.cancel()
                    self.close_connection = True
                    return
                continue
            yield part

    def _start(self, metadata: dict[str, Any]) -> bool:
        """Sends the status and headers; True when the body goes out chunked (its length is not known)."""
        self.send_response(int(metadata.get("statusCode", 200)))
        headers = metadata.get("headers") or {}
        for key, value in headers.items():
            self.send_header(key, value)
        for key, values in (metadata.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(key, value)
        for cookie in metadata.get("cookies") or []:
            self.send_header("Set-Cookie", cookie)
        chunked = not any(key.lower() == "content-length" for key in headers)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        return chunked

    def _chunk(self, invocation: Invocation, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            invocation.cancel()

    def _whole(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
