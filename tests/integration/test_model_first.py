"""The model is resolved before the body is judged, on every route, as Triton does: an unknown model, or one
off the allow-list, is 404 whatever the body holds. And /infer picks its schema from the body's keys, so
the error names the schema the caller meant."""

from __future__ import annotations

import base64
import gzip
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 90)).save(out, "JPEG")
    return out.getvalue()


IMAGE = base64.b64encode(jpeg()).decode()
TENSOR = {"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "data": [0.5] * (3 * 224 * 224)}


@pytest.fixture(scope="module")
def listed(triton: TritonServer) -> Iterator[httpx.Client]:
    """A gateway that serves only densenet_onnx: text_bytes exists in Triton but is not allowed."""
    settings = Settings(triton_grpc_url=triton.grpc_url, allowed_models=("densenet_onnx",))
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    error: str = body["error"]
    return error


def json_bodies(model: str) -> list[dict[str, Any]]:
    """Bodies of every kind naming ``model``: valid, malformed tensors, malformed images, mixed, neither."""
    return [
        {"model": model, "inputs": [TENSOR]},
        {"model": model, "inputs": []},
        {"model": model, "inputs": "not a list"},
        {"model": model, "inputs": [{"name": "data_0"}], "outputs": 7},
        {"model": model, "image": IMAGE},
        {"model": model, "images": []},
        {"model": model, "image": "not base64!", "top_k": 0},
        {"model": model, "inputs": [TENSOR], "image": IMAGE},
        {"model": model},
        {"model": model, "name": "an old Chalice body"},
    ]


UNKNOWN = [("no_such_model", "client"), ("text_bytes", "listed")]


def served(request: pytest.FixtureRequest, which: str) -> httpx.Client:
    client: httpx.Client = request.getfixturevalue(which)
    return client


@pytest.mark.parametrize(("model", "which"), UNKNOWN)
@pytest.mark.parametrize("index", range(len(json_bodies(""))))
def test_infer_json_with_an_unknown_model_is_404_whatever_the_body(request, model, which, index):
    body = json_bodies(model)[index]
    response = served(request, which).post("/infer", json=body)
    assert error_of(response, 404) == f"model {model!r} is not served here"


@pytest.mark.parametrize(("model", "which"), UNKNOWN)
@pytest.mark.parametrize(
    "upload",
    [
        {"content": jpeg(), "headers": {"content-type": "image/jpeg"}},
        {"content": b"not an image", "headers": {"content-type": "image/png"}},
        {"files": [("images", ("a.jpg", jpeg(), "image/jpeg"))]},
        {"files": [("images", ("a.jpg", b"junk", "image/jpeg"))], "data": {"note": "not a file"}},
        {"content": b"--x--\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
    ],
    ids=["jpeg", "junk-image", "form", "junk-form", "empty-form"],
)
def test_image_upload_with_an_unknown_model_is_404_whatever_the_body(request, model, which, upload):
    response = served(request, which).post("/infer", params={"model": model, "top_k": 1}, **upload)
    assert error_of(response, 404) == f"model {model!r} is not served here"


V2_BODIES = [
    {"json": {"inputs": []}},
    {"json": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}},
    {"content": b"not json at all"},
    # A binary body whose header claims more bytes than it has.
    {"content": b'{"inputs": []}', "headers": {"Inference-Header-Content-Length": "999"}},
    {"content": b"\x00\x01\x02", "headers": {"Inference-Header-Content-Length": "3"}},
    {"content": b"not gzip", "headers": {"Content-Encoding": "gzip"}},
    {"content": gzip.compress(b'{"inputs": []}'), "headers": {"Content-Encoding": "gzip"}},
]


@pytest.mark.parametrize(("model", "which"), UNKNOWN)
@pytest.mark.parametrize("prefix", ["", "/versions/1"])
@pytest.mark.parametrize("index", range(len(V2_BODIES)))
def test_v2_infer_on_an_unknown_model_is_404_whatever_the_body(request, model, which, prefix, index):
    response = served(request, which).post(f"/v2/models/{model}{prefix}/infer", **V2_BODIES[index])
    assert "is not served here" in error_of(response, 404)


@pytest.mark.parametrize(("model", "which"), UNKNOWN)
@pytest.mark.parametrize("prefix", ["", "/versions/1"])
@pytest.mark.parametrize("route", ["", "/config", "/stats"])
def test_every_v2_model_route_is_404_for_an_unknown_model(request, model, which, prefix, route):
    response = served(request, which).get(f"/v2/models/{model}{prefix}{route}")
    assert "is not served here" in error_of(response, 404)


def test_v2_ready_is_404_off_the_allow_list_and_400_for_what_triton_lacks(client, listed):
    # Triton itself answers "not ready" (400) for a model it does not have; the allow-list hides models.
    assert "is not served here" in error_of(listed.get("/v2/models/text_bytes/ready"), 404)
    assert "not ready" in error_of(client.get("/v2/models/no_such_model/ready"), 400)


def test_a_known_model_still_judges_the_body(client: httpx.Client):
    assert error_of(client.post("/v2/models/densenet_onnx/infer", json={"inputs": []}), 400) == (
        "inputs: List should have at least 1 item after validation, not 0"
    )


# -- the discriminator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inputs": [TENSOR], "images": [IMAGE]},
            "the body mixes 'inputs' (tensors) with 'image'/'images'; give one or the other",
        ),
        (
            {"inputs": "x", "image": "y"},
            "the body mixes 'inputs' (tensors) with 'image'/'images'; give one or the other",
        ),
        ({}, "the body needs 'inputs' (tensors) or 'image'/'images' (base64 images)"),
        ({"model": "densenet_onnx"}, "the body needs 'inputs' (tensors) or 'image'/'images' (base64 images)"),
        # Keys of neither schema: the tensor schema's errors say what is missing and what is not taken.
        ({"name": "data_0"}, "inputs: Field required; name: Extra inputs are not permitted"),
        # `inputs` picks the tensor schema, whose errors name tensor fields, never image ones.
        (
            {"inputs": [], "top_k": 3},
            "inputs: List should have at least 1 item after validation, not 0; "
            "top_k: Extra inputs are not permitted",
        ),
        # `image`/`images` pick the image schema.
        ({"image": IMAGE, "outputs": []}, "outputs: Extra inputs are not permitted"),
        ({"images": [IMAGE], "b64": True}, "b64: Extra inputs are not permitted"),
        ({"model": "", "inputs": [TENSOR]}, "model: String should have at least 1 character"),
        ([1, 2], "Input should be an object"),
    ],
)
def test_the_body_keys_pick_the_schema_the_error_names(client: httpx.Client, body, message):
    assert error_of(client.post("/infer", json=body), 400) == message


def test_a_body_that_is_not_json_is_400(client: httpx.Client):
    assert error_of(client.post("/infer", content=b"{nope"), 400).startswith("Invalid JSON")


# -- versions: the model first, whatever the version says ----------------------------------------------

MALFORMED_VERSIONS = ["$0", "01", "1abc", "-1", "x" * 50]


@pytest.mark.parametrize(("model", "which"), [*UNKNOWN, ("$0", "client")])
@pytest.mark.parametrize("version", MALFORMED_VERSIONS)
@pytest.mark.parametrize(
    ("method", "route"),
    [("GET", ""), ("GET", "/ready"), ("GET", "/config"), ("GET", "/stats"), ("POST", "/infer")],
)
def test_every_v2_route_is_404_for_an_unknown_model_at_a_malformed_version(
    request, model, which, version, method, route
):
    # GIVEN a model the gateway does not serve, and a version that is no version number
    body = {"json": {"inputs": [TENSOR]}} if method == "POST" else {}
    response = served(request, which).request(method, f"/v2/models/{model}/versions/{version}{route}", **body)
    # THEN the model is what is wrong: 404, as for any version of it
    assert "is not served here" in error_of(response, 404)


@pytest.mark.parametrize(("model", "which"), UNKNOWN)
@pytest.mark.parametrize("version", MALFORMED_VERSIONS)
def test_infer_json_is_404_for_an_unknown_model_at_a_malformed_version(request, model, which, version):
    response = served(request, which).post(
        "/infer", json={"model": model, "version": version, "inputs": [TENSOR]}
    )
    assert error_of(response, 404) == f"model {model!r} is not served here"


@pytest.mark.parametrize(
    ("method", "route"),
    [("GET", ""), ("GET", "/ready"), ("GET", "/config"), ("GET", "/stats"), ("POST", "/infer")],
)
def test_a_known_model_at_a_malformed_version_is_400_naming_the_version(client, method, route):
    body = {"json": {"inputs": [TENSOR]}} if method == "POST" else {}
    response = client.request(method, f"/v2/models/densenet_onnx/versions/01{route}", **body)
    assert (
        error_of(response, 400) == "version: '01' is not a version number (digits, no leading zero, e.g. 1)"
    )
