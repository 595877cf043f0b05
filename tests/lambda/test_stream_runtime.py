"""The streaming Lambda entry (``service.lambda_stream``) behind the Runtime API and API Gateway stand-ins
(``tests/lambda_stand_ins.py``): real HTTP clients -> API Gateway stand-in -> Runtime API stand-in -> the
runtime (a real process for the gateway's app, a thread for the test apps below) -> real Triton."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http

from service.lambda_stream import DELIMITER, PRELUDE_CONTENT_TYPE, serve
from tests.lambda_stand_ins import ApiGateway, RuntimeApi

ROOT = Path(__file__).resolve().parents[2]
BOUND = 20.0  # seconds any one wait below may take before the test fails; never a measurement

rng = np.random.default_rng(19)


@contextmanager
def runtime_thread(app: Callable[..., Any]) -> Iterator[ApiGateway]:
    """``app`` served by the runtime's own loop in a thread, behind both stand-ins."""
    with RuntimeApi() as runtime, ApiGateway(runtime) as gateway:

        def run() -> None:
            try:
                serve(app, runtime.address)
            except Exception:  # the stand-in closing its /next connection ends the loop
                return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield gateway
        finally:
            runtime.stopping.set()
    thread.join(BOUND)
    os.environ.pop("_X_AMZN_TRACE_ID", None)


class CountingApp:
    """Streams ``count`` SSE events; each after the test has acknowledged the one before (an app-side
    counter, ``produced``, says how many it has sent so far)."""

    def __init__(self, count: int, *, fail_after: int | None = None) -> None:
        self.count = count
        self.fail_after = fail_after
        self.produced = 0
        self.acks = [threading.Event() for _ in range(count)]
        self.after_first: dict[str, Any] = {}
        self.saw_message = threading.Event()

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        assert (await receive())["type"] == "http.request"
        headers = [(b"content-type", b"text/event-stream"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(self.count):
            if i:
                await asyncio.to_thread(self.acks[i - 1].wait, BOUND)
            if self.fail_after == i:
                raise RuntimeError("the model failed mid-stream")
            self.produced += 1
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class DisconnectApp:
    """Streams one event, then records what ``receive`` says next."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.seen = threading.Semaphore(0)

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        await receive()
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})
        self.messages.append(await asyncio.wait_for(receive(), BOUND))
        self.seen.release()


async def failing_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    raise RuntimeError("no answer at all")


def test_health_through_the_stand_ins(stream_gateway):
    gateway, _ = stream_gateway
    response = httpx.get(f"{gateway.url}/health", timeout=BOUND)
    assert response.status_code == 200, response.text
    assert response.json()["triton"] == "ready"
    # The function posted in streaming mode, the metadata prelude and its 8 NUL bytes first.
    assert gateway.seen[-1].done.wait(BOUND)
    assert gateway.seen[-1].raw.split(b"\r\n", 1)[1].startswith(b'{"statusCode":200,')


def test_v2_binary_infer_through_the_stand_ins_matches_onnxruntime(stream_gateway, onnx_session):
    gateway, _ = stream_gateway
    x = rng.random((1, 3, 224, 224), dtype=np.float32)
    client = triton_http.InferenceServerClient(gateway.url.removeprefix("http://"), network_timeout=BOUND)
    tensor = triton_http.InferInput("data_0", [3, 224, 224], "FP32")
    tensor.set_data_from_numpy(x.reshape(3, 224, 224), binary_data=True)
    result = client.infer(
        "densenet_onnx", [tensor], outputs=[triton_http.InferRequestedOutput("fc6_1", binary_data=True)]
    )
    want = onnx_session("densenet_onnx").run(None, {"data_0": x})[0]
    np.testing.assert_allclose(result.as_numpy("fc6_1").reshape(want.shape), want, rtol=1e-5)
    client.close()


def test_runtime_api_request_is_the_documented_streaming_response(stream_gateway):
    gateway, _ = stream_gateway
    httpx.get(f"{gateway.url}/v2/models/densenet_onnx", timeout=BOUND)
    invocation = gateway.seen[-1]
    assert invocation.done.wait(BOUND)
    headers = invocation.headers
    assert headers["lambda-runtime-function-response-mode"] == "streaming"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["content-type"] == PRELUDE_CONTENT_TYPE
    assert headers["trailer"] == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    # The body in chunked transfer encoding: "<hex size>\r\n<data>\r\n"..., "0\r\n", no trailers, "\r\n".
    raw = bytes(invocation.raw)
    body, offset = b"", 0
    while True:
        end = raw.index(b"\r\n", offset)
        size = int(raw[offset:end], 16)
        if size == 0:
            assert raw[end:] == b"\r\n\r\n"
            break
        body += raw[end + 2 : end + 2 + size]
        assert raw[end + 2 + size : end + 4 + size] == b"\r\n"
        offset = end + 4 + size
    metadata, delimiter, payload = body.partition(DELIMITER)
    assert delimiter == b"\x00" * 8
    metadata = json.loads(metadata)
    assert list(metadata) == ["statusCode", "headers", "multiValueHeaders", "cookies"]
    assert metadata["statusCode"] == 200
    assert metadata["headers"]["content-type"] == "application/json"
    assert metadata["headers"]["content-length"] == str(len(payload))
    assert json.loads(payload)["name"] == "densenet_onnx"


def test_a_bad_event_is_answered_400_through_the_prelude(stream_gateway):
    _, runtime = stream_gateway
    invocation = runtime.submit({"resource": "/health"})
    parts = [invocation.next_part(BOUND)]
    while parts[-1][0] not in ("end", "broken", "error"):
        parts.append(invocation.next_part(BOUND))
    body = b"".join(value for kind, value in parts if kind == "data")
    metadata, _, payload = body.partition(DELIMITER)
    assert json.loads(metadata)["statusCode"] == 400
    assert json.loads(payload) == {"error": "not an API Gateway REST API event: it has no requestContext"}


def test_events_arrive_as_the_app_produces_them():
    app = CountingApp(4)
    with (
        runtime_thread(app) as gateway,
        httpx.stream("GET", f"{gateway.url}/v1/completions", timeout=BOUND) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        received = []
        for line in r.iter_lines():
            if not line:
                continue
            i = int(line.removeprefix("data: "))
            # THEN event i is here while the app has produced exactly i + 1 events: it waits for this ack
            assert app.produced == i + 1
            received.append(i)
            app.acks[i].set()
    assert received == [0, 1, 2, 3]


def test_a_client_that_goes_away_is_an_http_disconnect_for_the_app():
    app = DisconnectApp()
    with runtime_thread(app) as gateway:
        for _ in range(2):  # the runtime serves the next invocation after a stream lost its reader
            with httpx.stream("GET", f"{gateway.url}/v1/completions", timeout=BOUND) as r:
                assert next(r.iter_lines()) == "data: 0"
            # WHEN the client has closed its connection mid-stream
            assert app.seen.acquire(timeout=BOUND)
    assert app.messages == [{"type": "http.disconnect"}] * 2


def test_a_failure_after_the_first_byte_cuts_the_stream_with_the_error_trailers():
    app = CountingApp(3, fail_after=1)
    with runtime_thread(app) as gateway:
        with httpx.stream("GET", f"{gateway.url}/v1/completions", timeout=BOUND) as r:
            lines = r.iter_lines()
            assert next(lines) == "data: 0"
            app.acks[0].set()
            # THEN the client sees the body end without its last chunk, not a clean end
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)
        invocation = gateway.seen[-1]
        assert invocation.done.wait(BOUND)
    trailers = bytes(invocation.raw).rsplit(b"0\r\n", 1)[1].split(b"\r\n")
    assert trailers[0] == b"Lambda-Runtime-Function-Error-Type: Runtime.StreamError"
    name, _, value = trailers[1].partition(b": ")
    assert name == b"Lambda-Runtime-Function-Error-Body"
    error = json.loads(base64.b64decode(value))
    assert error["errorType"] == "Runtime.StreamError"
    assert "the model failed mid-stream" in error["errorMessage"]


def test_a_failure_before_the_first_byte_is_a_500_answer():
    with runtime_thread(failing_app) as gateway:
        response = httpx.post(f"{gateway.url}/v1/completions", json={}, timeout=BOUND)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
