"""The KServe v2 routes under uvicorn, driven by tritonclient.http, answers compared with the same client
pointed at Triton's own HTTP endpoint; and every v2 error path, each answered ``{"error": ...}``."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway
from tests.settle import settled

rng = np.random.default_rng(7)
MODELS = ["densenet_onnx", "classifier_batched", "nhwc_uint8", "gray_fp16", "text_bytes", "slow_model"]


@pytest.fixture(scope="module")
def prefixed_gateway_url(triton: TritonServer) -> Iterator[str]:
    """A gateway configured with a custom-domain base path, ``/api``."""
    with serve_gateway(Settings(triton_grpc_url=triton.grpc_url, api_root_path="/api")) as url:
        yield url


# tritonclient.http takes "host:port/base" and puts "/v2/..." after the base path.
@pytest.fixture(params=["root", "prefix"])
def gateway(request, gateway_url, prefixed_gateway_url) -> Iterator[httpclient.InferenceServerClient]:
    """tritonclient.http on the gateway, at its root and at a base path (``host:port/api``)."""
    if request.param == "root":
        address = gateway_url.removeprefix("http://")
    else:
        address = prefixed_gateway_url.removeprefix("http://") + "/api"
    client = httpclient.InferenceServerClient(address)
    yield client
    client.close()


def both(gateway, triton_http, call):
    """``call`` made through the gateway and directly on Triton."""
    return call(gateway), call(triton_http)


# -- server and model metadata ---------------------------------------------------------------------------


def test_server_is_live_and_ready(gateway):
    assert gateway.is_server_live()
    assert gateway.is_server_ready()


def test_server_metadata_lists_only_the_extensions_served_here(gateway, triton_http):
    mine, theirs = both(gateway, triton_http, lambda c: c.get_server_metadata())
    assert (mine["name"], mine["version"]) == (theirs["name"], theirs["version"])
    assert {"binary_tensor_data", "classification", "model_configuration", "statistics"} <= set(
        mine["extensions"]
    )
    assert "model_repository" in theirs["extensions"]
    assert not {"model_repository", "system_shared_memory", "cuda_shared_memory", "trace", "logging"} & set(
        mine["extensions"]
    )


@pytest.mark.parametrize("model", MODELS)
def test_model_metadata_and_config_equal_tritons_own(gateway, triton_http, model):
    assert gateway.is_model_ready(model)
    mine, theirs = both(gateway, triton_http, lambda c: c.get_model_metadata(model))
    assert mine == theirs
    mine, theirs = both(gateway, triton_http, lambda c: c.get_model_config(model))
    assert mine == theirs


@pytest.mark.parametrize("version", ["1", "2"])
def test_versioned_metadata_config_and_readiness(gateway, triton_http, version):
    model = "classifier_batched"
    assert gateway.is_model_ready(model, version)
    mine, theirs = both(gateway, triton_http, lambda c: c.get_model_metadata(model, version))
    assert mine == theirs
    assert mine["versions"] == [version]
    assert gateway.get_model_config(model, version) == triton_http.get_model_config(model, version)


def test_unknown_models_and_versions_are_not_ready(gateway):
    assert not gateway.is_model_ready("no_such_model")
    assert not gateway.is_model_ready("densenet_onnx", "9")


def test_statistics_count_the_gateways_inferences(gateway, triton_http):
    # GIVEN the count before one more inference of text_bytes through the gateway
    before = triton_http.get_inference_statistics("text_bytes")["model_stats"][0]["inference_count"]
    words = httpclient.InferInput("TEXT", [1], "BYTES")
    words.set_data_from_numpy(np.array([b"x"], dtype=object))
    gateway.infer("text_bytes", [words])
    # WHEN the gateway is asked for the statistics
    count = settled(
        lambda: gateway.get_inference_statistics("text_bytes")["model_stats"][0]["inference_count"],
        before + 1,
    )
    mine = gateway.get_inference_statistics("text_bytes")
    # THEN they are Triton's, with the new inference counted
    assert count == before + 1
    assert mine.keys() == triton_http.get_inference_statistics("text_bytes").keys()
    everything = gateway.get_inference_statistics()
    assert {s["name"] for s in everything["model_stats"]} >= set(MODELS)


# -- inference -------------------------------------------------------------------------------------------


def fp32_input(name, x, binary=True):
    tensor = httpclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_densenet_equals_triton(gateway, triton_http, binary_in, binary_out):
    x = rng.random((3, 224, 224), dtype=np.float32)
    inputs = [fp32_input("data_0", x, binary_in)]
    outputs = [httpclient.InferRequestedOutput("fc6_1", binary_data=binary_out)]
    mine, theirs = both(
        gateway, triton_http, lambda c: c.infer("densenet_onnx", inputs, outputs=outputs, request_id="abc")
    )
    assert mine.get_response()["id"] == "abc"
    assert ("parameters" in mine.get_output("fc6_1")) is binary_out
    np.testing.assert_array_equal(mine.as_numpy("fc6_1"), theirs.as_numpy("fc6_1"))


def test_no_outputs_named_answers_all_in_binary(gateway, triton_http):
    x = rng.random((3, 224, 224), dtype=np.float32)
    mine, theirs = both(gateway, triton_http, lambda c: c.infer("densenet_onnx", [fp32_input("data_0", x)]))
    assert mine.get_output("fc6_1")["parameters"]["binary_data_size"] == 4000
    np.testing.assert_array_equal(mine.as_numpy("fc6_1"), theirs.as_numpy("fc6_1"))


@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_classification_equals_triton(gateway, triton_http, binary_out):
    x = rng.random((3, 224, 224), dtype=np.float32)
    outputs = [httpclient.InferRequestedOutput("fc6_1", binary_data=binary_out, class_count=3)]
    mine, theirs = both(
        gateway, triton_http, lambda c: c.infer("densenet_onnx", [fp32_input("data_0", x)], outputs=outputs)
    )
    got = mine.as_numpy("fc6_1")
    assert got.shape == (3,)
    np.testing.assert_array_equal(got, theirs.as_numpy("fc6_1"))
    # "score:index:label", the labels from the model's label file
    assert len(got[0].decode().split(":") if isinstance(got[0], bytes) else got[0].split(":")) == 3


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_tensors_equal_triton(gateway, triton_http, binary):
    text = np.array([b"hello", b"", "grüße".encode(), b"x" * 1000], dtype=object)
    words = httpclient.InferInput("TEXT", [4], "BYTES")
    words.set_data_from_numpy(text, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("UPPER", binary_data=binary),
        httpclient.InferRequestedOutput("LENGTHS", binary_data=binary),
    ]
    mine, theirs = both(gateway, triton_http, lambda c: c.infer("text_bytes", [words], outputs=outputs))
    for name in ("UPPER", "LENGTHS"):
        np.testing.assert_array_equal(mine.as_numpy(name), theirs.as_numpy(name))
    assert list(mine.as_numpy("LENGTHS")) == [5, 0, len("grüße".encode()), 1000]


@pytest.mark.parametrize("version", ["1", "2", ""])
def test_batched_versioned_model_equals_triton(gateway, triton_http, version):
    x = rng.random((4, 3, 64, 64), dtype=np.float32)
    mine, theirs = both(
        gateway,
        triton_http,
        lambda c: c.infer("classifier_batched", [fp32_input("INPUT", x)], model_version=version),
    )
    assert mine.get_response()["model_version"] == theirs.get_response()["model_version"]
    assert mine.as_numpy("PROBS").shape == (4, 10)
    np.testing.assert_array_equal(mine.as_numpy("PROBS"), theirs.as_numpy("PROBS"))


def test_versions_differ(gateway):
    x = rng.random((1, 3, 64, 64), dtype=np.float32)
    one, two = (
        gateway.infer("classifier_batched", [fp32_input("INPUT", x)], model_version=v).as_numpy("PROBS")
        for v in ("1", "2")
    )
    assert not np.array_equal(one, two)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_equal_triton(gateway, triton_http, compression):
    pixels = rng.random((1, 32, 32)).astype(np.float16)
    tensor = httpclient.InferInput("pixels", [1, 32, 32], "FP16")
    tensor.set_data_from_numpy(pixels)
    mine, theirs = both(
        gateway,
        triton_http,
        lambda c: c.infer("gray_fp16", [tensor], request_compression_algorithm=compression),
    )
    np.testing.assert_array_equal(mine.as_numpy("logits"), theirs.as_numpy("logits"))


def test_uint8_batch_equals_triton(gateway, triton_http):
    image = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    tensor = httpclient.InferInput("image", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    mine, theirs = both(gateway, triton_http, lambda c: c.infer("nhwc_uint8", [tensor]))
    np.testing.assert_array_equal(mine.as_numpy("scores"), theirs.as_numpy("scores"))


def test_tritonclient_sees_the_gateways_error_message(gateway):
    tensor = httpclient.InferInput("data_0", [3, 224], "FP32")
    tensor.set_data_from_numpy(np.zeros((3, 224), np.float32))
    with pytest.raises(InferenceServerException, match=r"inputs\[0\]\.shape") as caught:
        gateway.infer("densenet_onnx", [tensor])
    assert caught.value.status() == "400"


# -- error paths, over plain HTTP ------------------------------------------------------------------------


def binary_body(header: dict, *sections: bytes) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(header).encode()
    return raw + b"".join(sections), {"Inference-Header-Content-Length": str(len(raw))}


def densenet_binary(size: int = 3 * 224 * 224 * 4) -> dict:
    return {
        "inputs": [
            {
                "name": "data_0",
                "datatype": "FP32",
                "shape": [3, 224, 224],
                "parameters": {"binary_data_size": size},
            }
        ]
    }


IMAGE = np.zeros((3, 224, 224), np.float32).tobytes()


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/no_such_model",
        "/v2/models/no_such_model/config",
        "/v2/models/no_such_model/stats",
        "/v2/models/densenet_onnx/versions/9",
        "/v2/models/densenet_onnx/versions/9/config",
    ],
)
def test_unknown_model_or_version_is_404(client: httpx.Client, path):
    assert "not served here" in error_of(client.get(path), 404)


@pytest.mark.parametrize(
    "path", ["/v2/models/no_such_model/infer", "/v2/models/densenet_onnx/versions/9/infer"]
)
def test_inference_on_unknown_model_or_version_is_404(client: httpx.Client, path):
    body, headers = binary_body(densenet_binary(), IMAGE)
    assert "not served here" in error_of(client.post(path, content=body, headers=headers), 404)


def test_unready_model_is_400_as_triton_answers(client: httpx.Client):
    assert "not ready" in error_of(client.get("/v2/models/no_such_model/ready"), 400)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', "Invalid JSON"),
        (b"[1, 2]", "should be an object"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": [{"name": "data_0", "datatype": "FP33", "shape": [1], "data": [1]}]}', "datatype"),
    ],
)
def test_bad_json_is_400(client: httpx.Client, body, message):
    assert message in error_of(client.post("/v2/models/densenet_onnx/infer", content=body), 400)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"datatype": "FP32", "shape": [3, 224], "data": [0.0] * 672}, r"inputs[0].shape"),
        ({"datatype": "INT32", "shape": [3, 224, 224], "data": [0] * 150528}, "inputs[0].datatype"),
        ({"datatype": "FP32", "shape": [3, 224, 224], "data": [0.0] * 5}, "needs 150528 elements"),
        ({"datatype": "FP32", "shape": [3, 224, 224], "data": ["a"] * 150528}, "FP32 takes numbers"),
    ],
)
def test_wrong_shape_or_datatype_is_400(client: httpx.Client, tensor, message):
    body = {"inputs": [{"name": "data_0", **tensor}]}
    assert message in error_of(client.post("/v2/models/densenet_onnx/infer", json=body), 400)


def test_header_length_past_the_body_is_400(client: httpx.Client):
    body, _ = binary_body(densenet_binary(), IMAGE)
    headers = {"Inference-Header-Content-Length": str(len(body) + 1)}
    message = error_of(client.post("/v2/models/densenet_onnx/infer", content=body, headers=headers), 400)
    assert "Inference-Header-Content-Length" in message


@pytest.mark.parametrize(
    ("declared", "sent", "message"),
    [
        (len(IMAGE) + 4, IMAGE, "run past"),
        (len(IMAGE), IMAGE + b"\0" * 4, "belong to no input"),
        (len(IMAGE) - 4, IMAGE[:-4], "needs 602112 bytes"),
    ],
)
def test_inconsistent_binary_sizes_are_400(client: httpx.Client, declared, sent, message):
    body, headers = binary_body(densenet_binary(declared), sent)
    assert message in error_of(
        client.post("/v2/models/densenet_onnx/infer", content=body, headers=headers), 400
    )


def test_bad_gzip_is_400(client: httpx.Client):
    body, headers = binary_body(densenet_binary(), IMAGE)
    headers["Content-Encoding"] = "gzip"
    assert "not valid gzip" in error_of(
        client.post("/v2/models/densenet_onnx/infer", content=body[:-100], headers=headers), 400
    )


def test_unsupported_content_encoding_is_415(client: httpx.Client):
    headers = {"Content-Encoding": "br"}
    error_of(client.post("/v2/models/densenet_onnx/infer", content=b"{}", headers=headers), 415)


def test_gzip_binary_request_over_plain_http(client: httpx.Client):
    body, headers = binary_body(densenet_binary(), IMAGE)
    response = client.post(
        "/v2/models/densenet_onnx/infer",
        content=gzip.compress(body),
        headers=headers | {"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [1000]


def test_unknown_output_is_400(client: httpx.Client):
    body, headers = binary_body(densenet_binary() | {"outputs": [{"name": "nope"}]}, IMAGE)
    message = error_of(client.post("/v2/models/densenet_onnx/infer", content=body, headers=headers), 400)
    assert "has no output 'nope'" in message


def test_bad_request_parameter_is_400(client: httpx.Client):
    body, headers = binary_body(densenet_binary() | {"parameters": {"custom": [1, 2]}}, IMAGE)
    message = error_of(client.post("/v2/models/densenet_onnx/infer", content=body, headers=headers), 400)
    assert "parameters.custom" in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/densenet_onnx/load"),
        ("POST", "/v2/repository/models/densenet_onnx/unload"),
        ("GET", "/v2/systemsharedmemory/status"),
        ("GET", "/v2/trace/setting"),
        ("GET", "/v2/logging"),
    ],
)
def test_repository_and_other_admin_apis_are_absent(client: httpx.Client, method, path):
    error_of(client.request(method, path), 404)


def test_wrong_method_is_405_with_an_error_body(client: httpx.Client):
    error_of(client.get("/v2/models/densenet_onnx/infer"), 405)


# -- the allow-list --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(triton: TritonServer) -> Iterator[httpx.Client]:
    """A gateway that serves only densenet_onnx."""
    settings = Settings(triton_grpc_url=triton.grpc_url, allowed_models=("densenet_onnx",))
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/text_bytes"),
        ("GET", "/v2/models/text_bytes/ready"),
        ("GET", "/v2/models/text_bytes/config"),
        ("GET", "/v2/models/text_bytes/stats"),
        ("GET", "/v2/models/classifier_batched/versions/1"),
        ("GET", "/v2/models/classifier_batched/versions/1/ready"),
        ("POST", "/v2/models/text_bytes/infer"),
        ("POST", "/v2/models/classifier_batched/versions/2/infer"),
    ],
)
def test_models_off_the_allow_list_are_404(listed: httpx.Client, method, path):
    body = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    response = listed.request(method, path, json=body if method == "POST" else None)
    assert error_of(response, 404) == f"model {path.split('/')[3]!r} is not served here"


def test_the_allow_list_filters_statistics_but_not_server_health(listed: httpx.Client):
    assert listed.get("/v2/health/ready").status_code == 200
    assert listed.get("/v2/models/densenet_onnx/ready").status_code == 200
    names = {s["name"] for s in listed.get("/v2/models/stats").json()["model_stats"]}
    assert names == {"densenet_onnx"}


# -- a stopped Triton ------------------------------------------------------------------------------------


def test_health_routes_answer_503_when_triton_is_down(triton_factory):
    # A private server with one model: the health routes ask about the server, and one model starts and
    # stops seconds sooner than all six.
    server: TritonServer = triton_factory(models=["text_bytes"])
    with serve_gateway(Settings(triton_grpc_url=server.grpc_url)) as url:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        server.stop()
        assert not client.is_server_live()
        assert not client.is_server_ready()
        with httpx.Client(base_url=url, timeout=30) as http:
            error_of(http.get("/v2/health/live"), 503)
        client.close()


def test_b64_inputs_on_v2_answer_as_json_data_does(client: httpx.Client):
    # GIVEN one tensor as v2 JSON data, and as base64 raw bytes (the gateway's extension of v2)
    x = np.random.default_rng(11).random((3, 224, 224), dtype=np.float32)
    tensor = {"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224]}
    as_data = client.post(
        "/v2/models/densenet_onnx/infer", json={"inputs": [{**tensor, "data": x.ravel().tolist()}]}
    )
    b64 = base64.b64encode(x.tobytes()).decode()
    as_b64 = client.post("/v2/models/densenet_onnx/infer", json={"inputs": [{**tensor, "b64": b64}]})
    # THEN both run, with the same answer
    assert as_data.status_code == as_b64.status_code == 200, as_b64.text
    np.testing.assert_allclose(
        as_b64.json()["outputs"][0]["data"], as_data.json()["outputs"][0]["data"], rtol=1e-6
    )
