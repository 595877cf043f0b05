"""KServe v2 requests as API Gateway REST events (``events/v2_infer.json``, ``POST /v2/{proxy+}`` on stage
``api``) through the real Mangum handler: JSON in and out as text, binary tensors in and out as base64."""

from __future__ import annotations

import base64
import gzip
import json
import threading

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.lambda_events import LambdaContext, load_event, raw_body, v2_get_event

rng = np.random.default_rng(5)
Client = httpclient.InferenceServerClient


def v2_event(body: bytes, *, path: str | None = None, base64_body: bool = True, **headers: str) -> dict:
    """The generated v2 event with ``body`` and extra headers (in both of API Gateway's header maps)."""
    event = load_event("v2_infer", body, base64_body=base64_body)
    if path is not None:
        event["path"] = path
        event["requestContext"]["path"] = f"/api{path}"
        event["pathParameters"] = {"proxy": path.removeprefix("/v2/")}
    for name, value in headers.items():
        name = name.replace("_", "-")
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


def densenet_inputs(binary: bool) -> tuple[np.ndarray, list[httpclient.InferInput]]:
    x = rng.random((3, 224, 224), dtype=np.float32)
    tensor = httpclient.InferInput("data_0", [3, 224, 224], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return x, [tensor]


@pytest.mark.parametrize("base64_body", [True, False], ids=["base64-body", "text-body"])
def test_v2_json_event_equals_triton(lambda_handler, triton_http, base64_body):
    # GIVEN a v2 JSON request (nested data, an id, a JSON output) as API Gateway delivers it
    _, inputs = densenet_inputs(binary=False)
    outputs = [httpclient.InferRequestedOutput("fc6_1", binary_data=False)]
    body, header_length = Client.generate_request_body(inputs, outputs=outputs, request_id="evt-1")
    assert header_length is None
    # WHEN the handler runs it
    response = lambda_handler(v2_event(body, base64_body=base64_body), LambdaContext())
    # THEN the answer is text JSON, equal to Triton's own
    assert response["statusCode"] == 200, response["body"][:300]
    assert response["headers"]["content-type"] == "application/json"
    assert response["isBase64Encoded"] is False
    mine = Client.parse_response_body(raw_body(response))
    assert mine.get_response()["id"] == "evt-1"
    theirs = triton_http.infer("densenet_onnx", inputs, outputs=outputs)
    np.testing.assert_array_equal(mine.as_numpy("fc6_1"), theirs.as_numpy("fc6_1"))


def test_v2_binary_event_round_trips_exact_bytes(lambda_handler, triton_http):
    # GIVEN a binary-tensor request: JSON header, then the raw image; the answer asked for in binary too
    _, inputs = densenet_inputs(binary=True)
    outputs = [httpclient.InferRequestedOutput("fc6_1", binary_data=True)]
    body, header_length = Client.generate_request_body(inputs, outputs=outputs)
    assert header_length is not None
    event = v2_event(body, Inference_Header_Content_Length=str(header_length))
    # WHEN the handler runs it
    response = lambda_handler(event, LambdaContext())
    # THEN the answer comes back base64 (as API Gateway needs for a binary media type) ...
    assert response["statusCode"] == 200, response["body"][:300]
    assert response["isBase64Encoded"] is True
    assert response["headers"]["content-type"] == "application/octet-stream"
    answer = base64.b64decode(response["body"])
    json_length = int(response["headers"]["inference-header-content-length"])
    header = json.loads(answer[:json_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4000}
    # ... and decodes to Triton's exact output bytes
    theirs = triton_http.infer("densenet_onnx", inputs, outputs=outputs)
    assert answer[json_length:] == theirs.as_numpy("fc6_1").tobytes()
    assert len(answer) == json_length + 4000


def test_v2_gzip_binary_event_with_bytes_tensors(lambda_handler, triton_http):
    words = httpclient.InferInput("TEXT", [3], "BYTES")
    words.set_data_from_numpy(np.array([b"lambda", b"", "ünï".encode()], dtype=object))
    body, header_length = Client.generate_request_body([words])
    event = v2_event(
        gzip.compress(body),
        path="/v2/models/text_bytes/versions/1/infer",
        Inference_Header_Content_Length=str(header_length),
        Content_Encoding="gzip",
    )
    response = lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 200, response["body"][:300]
    assert response["isBase64Encoded"] is True
    mine = Client.parse_response_body(
        raw_body(response), header_length=int(response["headers"]["inference-header-content-length"])
    )
    theirs = triton_http.infer("text_bytes", [words])
    for name in ("UPPER", "LENGTHS"):
        np.testing.assert_array_equal(mine.as_numpy(name), theirs.as_numpy(name))


@pytest.mark.parametrize(
    ("path", "header_length", "status", "message"),
    [
        ("/v2/models/densenet_onnx/infer", "999999999", 400, "Inference-Header-Content-Length"),
        ("/v2/models/densenet_onnx/versions/7/infer", None, 404, "not served here"),
        ("/v2/repository/models/densenet_onnx/unload", None, 404, "Not Found"),
    ],
)
def test_v2_error_events_are_text_json(lambda_handler, path, header_length, status, message):
    _, inputs = densenet_inputs(binary=True)
    body, json_length = Client.generate_request_body(inputs)
    length = header_length or str(json_length)
    response = lambda_handler(
        v2_event(body, path=path, Inference_Header_Content_Length=length), LambdaContext()
    )
    assert response["statusCode"] == status
    assert response["isBase64Encoded"] is False
    error = json.loads(response["body"])
    assert list(error) == ["error"]
    assert message in error["error"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2", 200),
        ("/v2/health/live", 200),
        ("/v2/health/ready", 200),
        ("/v2/models/stats", 200),
        ("/v2/models/densenet_onnx", 200),
        ("/v2/models/densenet_onnx/versions/1", 200),
        ("/v2/models/densenet_onnx/ready", 200),
        ("/v2/models/densenet_onnx/versions/1/ready", 200),
        ("/v2/models/densenet_onnx/config", 200),
        ("/v2/models/densenet_onnx/stats", 200),
        ("/v2/models/no_such_model", 404),
        ("/v2/models/no_such_model/ready", 400),
    ],
)
def test_v2_get_events_start_no_thread(lambda_handler, triton_http, monkeypatch, path, status):
    # GIVEN a warm environment (its channel open) and a count of the threads Python starts
    assert lambda_handler(v2_get_event("/v2/health/live"), LambdaContext())["statusCode"] == 200
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    # WHEN a v2 metadata, readiness, config or statistics event runs
    response = lambda_handler(v2_get_event(path), LambdaContext())
    # THEN it is answered as Triton would, in the invocation's own thread: a Lambda handles one event at a
    # time, and a worker thread per invocation (FastAPI's pool under Mangum) is ~0.6 ms for nothing
    assert response["statusCode"] == status, response["body"][:300]
    assert started == []
    if path == "/v2/models/densenet_onnx":
        assert json.loads(response["body"]) == triton_http.get_model_metadata("densenet_onnx")
