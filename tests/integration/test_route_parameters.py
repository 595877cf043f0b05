"""The inference routes read their parameters themselves (no dependency resolution on the hot path) and
answer as FastAPI's resolution would: the query parameters /infer declares are validated with FastAPI's
words, others are ignored, and the version in a v2 path reaches the data plane."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.image_reference import jpeg

X = np.random.default_rng(7).random((3, 224, 224), dtype=np.float32)
TENSOR_BODY = {
    "inputs": [
        {
            "name": "data_0",
            "datatype": "FP32",
            "shape": [3, 224, 224],
            "b64": base64.b64encode(X.tobytes()).decode(),
        }
    ]
}


def test_undeclared_query_parameters_are_ignored(client: httpx.Client):
    # GIVEN a tensor body with a query parameter /infer does not declare (API Gateway's test events have one)
    plain = client.post("/infer", json=TENSOR_BODY)
    queried = client.post("/infer", params={"foo": "bar"}, json=TENSOR_BODY)
    # THEN both are served alike
    assert plain.status_code == queried.status_code == 200, queried.text
    assert plain.json() == queried.json()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"top_k": "0"}, "top_k: Input should be greater than or equal to 1"),
        ({"top_k": "two"}, "top_k: Input should be a valid integer"),
        ({"model": ""}, "model: String should have at least 1 character"),
    ],
)
def test_declared_query_parameters_are_validated(client: httpx.Client, params, message):
    # GIVEN an image upload whose query parameters break the route's declared constraints
    response = client.post(
        "/infer", params=params, content=jpeg(64, 48, seed=1), headers={"content-type": "image/jpeg"}
    )
    # THEN the route refuses them in FastAPI's words, in the gateway's envelope
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_query_model_with_a_json_body_is_refused(client: httpx.Client):
    response = client.post("/infer", params={"model": "densenet_onnx"}, json=TENSOR_BODY)
    assert response.status_code == 400
    assert response.json() == {
        "error": "model, version and top_k go in the query only for image uploads; put them in the JSON"
    }


def test_v2_path_version_reaches_triton(client: httpx.Client):
    body = {"inputs": [{**TENSOR_BODY["inputs"][0]}]}
    served = client.post("/v2/models/densenet_onnx/versions/1/infer", json=body)
    assert served.status_code == 200, served.text
    assert served.json()["model_version"] == "1"
    missing = client.post("/v2/models/densenet_onnx/versions/9/infer", json=body)
    assert missing.status_code == 404, missing.text
