"""POST /infer over real HTTP to a real Triton; answers compared with onnxruntime on the same ONNX file."""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime
import pytest

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway

rng = np.random.default_rng(2024)


@pytest.fixture
def densenet(onnx_session) -> onnxruntime.InferenceSession:
    return onnx_session("densenet_onnx")


def expected_scores(session: onnxruntime.InferenceSession, x: np.ndarray) -> np.ndarray:
    # The real densenet takes [1, 3, 224, 224] and answers [1, 1000, 1, 1]; Triton's config reshapes both.
    return session.run(None, {"data_0": x.reshape(1, 3, 224, 224)})[0].reshape(1000)


def image_tensor() -> np.ndarray:
    return rng.random((3, 224, 224), dtype=np.float32)


def test_flat_json_data_matches_onnxruntime(client: httpx.Client, densenet):
    x = image_tensor()
    body = {
        "inputs": [{"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "data": x.ravel().tolist()}]
    }
    response = client.post("/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == "densenet_onnx"
    assert answer["model_version"] == "1"
    [output] = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("fc6_1", "FP32", [1000])
    np.testing.assert_allclose(np.array(output["data"], np.float32), expected_scores(densenet, x), rtol=1e-5)


def test_nested_json_data_gives_the_same_answer_as_flat(client: httpx.Client, densenet):
    x = image_tensor()
    base = {"model": "densenet_onnx", "version": "1", "outputs": [{"name": "fc6_1"}]}
    flat = {
        **base,
        "inputs": [
            {"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "data": x.ravel().tolist()}
        ],
    }
    nested = {
        **base,
        "inputs": [{"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "data": x.tolist()}],
    }
    got_flat = client.post("/infer", json=flat).json()["outputs"][0]["data"]
    got_nested = client.post("/infer", json=nested).json()["outputs"][0]["data"]
    assert got_flat == got_nested
    np.testing.assert_allclose(np.array(got_nested, np.float32), expected_scores(densenet, x), rtol=1e-5)


def test_b64_in_and_out_matches_onnxruntime(client: httpx.Client, densenet):
    x = image_tensor()
    body = {
        "inputs": [
            {
                "name": "data_0",
                "datatype": "FP32",
                "shape": [3, 224, 224],
                "b64": base64.b64encode(x.tobytes()).decode(),
            }
        ],
        "outputs": [{"name": "fc6_1", "b64": True}],
    }
    response = client.post("/infer", json=body)
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    got = np.frombuffer(base64.b64decode(output["b64"]), dtype="<f4")
    np.testing.assert_allclose(got, expected_scores(densenet, x), rtol=1e-5)


def test_request_id_is_echoed(client: httpx.Client):
    body = {
        "id": "req-42",
        "inputs": [
            {
                "name": "data_0",
                "datatype": "FP32",
                "shape": [3, 224, 224],
                "b64": base64.b64encode(image_tensor().tobytes()).decode(),
            }
        ],
    }
    assert client.post("/infer", json=body).json()["id"] == "req-42"


def test_bytes_and_batched_models_through_infer(client: httpx.Client, onnx_session):
    text = client.post(
        "/infer",
        json={
            "model": "text_bytes",
            "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [2], "data": ["ab", "wörld"]}],
        },
    )
    assert text.status_code == 200, text.text
    outputs = {o["name"]: o for o in text.json()["outputs"]}
    assert outputs["UPPER"]["data"] == ["AB", "WÖRLD"]
    assert outputs["LENGTHS"]["data"] == [2, len("wörld".encode())]

    batch = rng.random((2, 3, 64, 64), dtype=np.float32)
    batched = client.post(
        "/infer",
        json={
            "model": "classifier_batched",
            "inputs": [
                {"name": "INPUT", "datatype": "FP32", "shape": [2, 3, 64, 64], "data": batch.tolist()}
            ],
        },
    )
    assert batched.status_code == 200, batched.text
    [probs] = batched.json()["outputs"]
    assert probs["shape"] == [2, 10]
    # No version named: Triton's policy serves the latest, 2.
    assert batched.json()["model_version"] == "2"
    want = onnx_session("classifier_batched", 2).run(None, {"INPUT": batch})[0]
    np.testing.assert_allclose(np.array(probs["data"], np.float32).reshape(2, 10), want, rtol=1e-5)


def tensor(**overrides):
    base = {
        "name": "data_0",
        "datatype": "FP32",
        "shape": [3, 224, 224],
        "b64": base64.b64encode(image_tensor().tobytes()).decode(),
    }
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"inputs": [tensor(name="data_1")]},
            400,
            "inputs[0].name: model 'densenet_onnx' has no input 'data_1'; it takes 'data_0'",
        ),
        ({"inputs": [tensor(datatype="FP64")]}, 400, "inputs[0].datatype: input 'data_0' is FP32, got FP64"),
        (
            {"inputs": [tensor(shape=[1, 3, 224, 224])]},
            400,
            "inputs[0].shape: input 'data_0' takes [3, 224, 224] (-1 is free), got [1, 3, 224, 224]",
        ),
        (
            {
                "model": "classifier_batched",
                "inputs": [
                    {
                        "name": "INPUT",
                        "datatype": "FP32",
                        "shape": [2, 3, 64, 64],
                        "b64": base64.b64encode(bytes(49152)).decode(),
                    }
                ],
            },
            400,
            "inputs[0].b64: shape [2, 3, 64, 64] of FP32 needs 98304 bytes (24576 x 4), got 49152",
        ),
        (
            {"inputs": [tensor(b64=None, data=[0.5] * 10)]},
            400,
            "inputs[0].data: shape [3, 224, 224] needs 150528 elements, got 10",
        ),
        ({"inputs": [tensor(b64=None, data=["x"])]}, 400, "inputs[0].data: FP32 takes numbers, got strings"),
        ({"inputs": [tensor(b64="not base64!")]}, 400, "inputs[0].b64: not valid base64"),
        (
            {"inputs": [tensor(data=[1.0])]},
            400,
            "inputs[0]: give exactly one of 'data' (JSON elements) or 'b64'",
        ),
        ({"inputs": [tensor(datatype="FP33")]}, 400, "inputs[0].datatype: Input should be 'BOOL'"),
        ({"inputs": []}, 400, "inputs: List should have at least 1 item"),
        ({"name": "Test inference"}, 400, "inputs: Field required; name: Extra inputs are not permitted"),
        (
            {"inputs": [tensor()], "outputs": [{"name": "fc7"}]},
            400,
            "outputs[0].name: model 'densenet_onnx' has no output 'fc7'; it has 'fc6_1'",
        ),
        ({"model": "resnet50", "inputs": [tensor()]}, 404, "model 'resnet50' is not served here"),
        (
            {"model": "densenet_onnx", "version": "9", "inputs": [tensor()]},
            404,
            "model 'densenet_onnx' version '9' is not served here",
        ),
    ],
)
def test_bad_requests_get_a_clear_error_naming_the_field(client: httpx.Client, body, status, message):
    response = client.post("/infer", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_input_given_twice_is_named(client: httpx.Client):
    # (Every local model takes one input, so a *missing* input cannot be sent here; tests/unit covers it.)
    response = client.post(
        "/infer",
        json={
            "model": "slow_model",
            "inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1], "data": [0]}],
        },
    )
    assert response.status_code == 200, response.text
    response = client.post(
        "/infer",
        json={
            "model": "text_bytes",
            "inputs": [
                {"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["a"]},
                {"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["a"]},
            ],
        },
    )
    assert response.status_code == 400
    assert "inputs[1].name: input 'TEXT' is given twice" in response.json()["error"]


def test_malformed_bodies(client: httpx.Client):
    response = client.post("/infer", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid JSON")
    # curl -d sends form encoding unless told otherwise; the body is still read as JSON.
    response = client.post(
        "/infer", content=b'{"inputs": []}', headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400
    assert "inputs: List should have at least 1 item" in response.json()["error"]


LIMIT = 4096
INFER_PATHS = ["/infer", "/v2/models/densenet_onnx/infer"]


@pytest.fixture(scope="module")
def small_gateway(triton: TritonServer) -> Iterator[str]:
    """A gateway that takes bodies of at most LIMIT bytes."""
    with serve_gateway(Settings(triton_grpc_url=triton.grpc_url, max_body_bytes=LIMIT)) as url:
        yield url


def raw_exchange(base_url: str, head: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send ``head`` (request line, headers, maybe some body) on a raw socket; the answer's status and body.

    Times out (a failure) if the gateway waits for body bytes that never come."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536) or b"EOF"
        headers, _, body = received.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)", headers).group(1))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the gateway closed the connection mid-answer"
            body += chunk
    return int(headers.split()[1]), body


@pytest.mark.parametrize("path", INFER_PATHS)
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(small_gateway: str, path):
    # GIVEN a request that declares 10 MB and sends one byte of it
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        "Content-Length: 10000000\r\n\r\n{"
    ).encode()
    # THEN the answer comes at once (reading the body first would wait for the rest forever)
    status, body = raw_exchange(small_gateway, head)
    assert status == 413
    assert json.loads(body) == {"error": f"body of 10000000 bytes is over the {LIMIT}-byte limit"}


@pytest.mark.parametrize("path", INFER_PATHS)
def test_a_chunked_body_over_the_limit_is_refused(small_gateway: str, path):
    # GIVEN a body sent chunked, so no Content-Length tells its size in advance
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b" " * 2000

    with httpx.Client(base_url=small_gateway, timeout=30) as http:
        response = http.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    # Refused at the first chunk past the limit, so the answer cannot say how big the whole body was.
    assert response.json() == {"error": f"body is over the {LIMIT}-byte limit"}


@pytest.mark.parametrize("path", INFER_PATHS)
def test_a_body_at_the_limit_is_read(small_gateway: str, path):
    # The limit is inclusive: a body of exactly LIMIT bytes is judged as JSON, not refused.
    body = b'{"inputs": []}'.ljust(LIMIT)
    with httpx.Client(base_url=small_gateway, timeout=30) as http:
        response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "inputs" in response.json()["error"]


def test_unknown_routes_and_methods_use_the_error_envelope(client: httpx.Client):
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    response = client.get("/infer")
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
