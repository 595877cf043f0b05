"""Images on POST /infer over real HTTP to a real Triton: JSON base64, raw uploads and multipart, compared
with onnxruntime on the same ONNX files after preprocessing written independently (tests.image_reference)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as grpcclient

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway
from tests.image_reference import bomb_png, encode, jpeg, photo, reference_tensor
from tests.settle import settled

# The local models' image inputs, as their configs declare them (the gateway reads them from Triton).
DENSENET = {"channels": 3, "height": 224, "width": 224, "datatype": "FP32", "scaling": "INCEPTION"}
BATCHED = {"channels": 3, "height": 64, "width": 64, "datatype": "FP32", "scaling": "VGG"}
NHWC = {"channels": 3, "height": 96, "width": 128, "datatype": "UINT8", "scaling": "NONE"}
GRAY = {"channels": 1, "height": 32, "width": 32, "datatype": "FP16", "scaling": "NONE"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def reference(data: bytes, spec: dict, channels_first: bool = True) -> np.ndarray:
    return reference_tensor(data, channels_first=channels_first, **spec)


@pytest.fixture
def sessions(onnx_session) -> dict[str, onnxruntime.InferenceSession]:
    return {
        "densenet_onnx": onnx_session("densenet_onnx"),
        "classifier_batched/1": onnx_session("classifier_batched", 1),
        "classifier_batched/2": onnx_session("classifier_batched", 2),
        "nhwc_uint8": onnx_session("nhwc_uint8"),
        "gray_fp16": onnx_session("gray_fp16"),
    }


@pytest.fixture(scope="module")
def densenet_labels(model_repository: Path) -> list[str]:
    return (model_repository / "densenet_onnx" / "densenet_labels.txt").read_text().splitlines()


def densenet_scores(sessions, data: bytes) -> np.ndarray:
    x = reference(data, DENSENET)[np.newaxis]
    return sessions["densenet_onnx"].run(None, {"data_0": x})[0].reshape(1000)


def assert_top_k(got: list[dict], scores: np.ndarray, labels: list[str] | None = None):
    order = np.argsort(-scores, kind="stable")[: len(got)]
    assert [entry["index"] for entry in got] == order.tolist()
    np.testing.assert_allclose([entry["score"] for entry in got], scores[order], rtol=1e-5, atol=1e-6)
    if labels is not None:
        assert [entry["label"] for entry in got] == [labels[i] for i in order]


# -- densenet: one image ---------------------------------------------------------------------------------


def test_densenet_top_k_matches_onnxruntime(client: httpx.Client, sessions, densenet_labels):
    data = jpeg(640, 480, seed=1)
    response = client.post("/infer", json={"model": "densenet_onnx", "image": b64(data), "top_k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model_name", "model_version", "results"}
    assert (body["model_name"], body["model_version"]) == ("densenet_onnx", "1")
    [result] = body["results"]
    assert set(result) == {"top_k"}
    assert len(result["top_k"]) == 5
    assert_top_k(result["top_k"], densenet_scores(sessions, data), densenet_labels)


def test_without_top_k_the_raw_outputs_come_back(client: httpx.Client, sessions):
    data = encode(photo(300, 300, seed=2), "PNG")
    response = client.post("/infer", json={"image": b64(data), "id": "img-1"})  # the default model
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "img-1"
    [output] = body["results"][0]["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("fc6_1", "FP32", [1000])
    np.testing.assert_allclose(output["data"], densenet_scores(sessions, data), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_raw_image_uploads(client: httpx.Client, sessions, densenet_labels, fmt):
    # GIVEN what `curl --data-binary @cat.jpg -H 'content-type: image/jpeg'` sends
    data = encode(photo(320, 240, seed=3), fmt)
    response = client.post(
        "/infer",
        params={"model": "densenet_onnx", "top_k": 3},
        content=data,
        headers={"content-type": f"image/{fmt.lower()}"},
    )
    assert response.status_code == 200, response.text
    assert_top_k(response.json()["results"][0]["top_k"], densenet_scores(sessions, data), densenet_labels)


def test_multipart_upload_of_several_files(client: httpx.Client, sessions):
    files = [jpeg(200, 150, seed=s) for s in (4, 5)]
    response = client.post(
        "/infer",
        params={"model": "densenet_onnx", "top_k": 2},
        files=[("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(files)],
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    for result, data in zip(results, files, strict=True):
        assert_top_k(result["top_k"], densenet_scores(sessions, data))


# -- batching, layouts, datatypes ------------------------------------------------------------------------


def model_stats(triton_grpc: grpcclient.InferenceServerClient, model: str, version: str) -> tuple[int, int]:
    [stats] = triton_grpc.get_inference_statistics(model, version, as_json=True)["model_stats"]
    return int(stats["inference_stats"]["success"].get("count", 0)), int(stats.get("inference_count", 0))


def test_ten_images_to_a_model_batching_eight(client: httpx.Client, sessions, triton_grpc):
    images = [encode(photo(80 + 8 * i, 60 + 4 * i, seed=10 + i), "PNG") for i in range(10)]
    requests_before, items_before = model_stats(triton_grpc, "classifier_batched", "1")
    # WHEN ten images go to classifier_batched (max_batch_size 8) in one request
    response = client.post(
        "/infer", json={"model": "classifier_batched", "version": "1", "images": [b64(d) for d in images]}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    # THEN Triton saw two requests (8 + 2) carrying the ten images
    want_counts = (requests_before + 2, items_before + 10)
    counts = settled(lambda: model_stats(triton_grpc, "classifier_batched", "1"), want_counts)
    assert counts == want_counts
    # AND ten results, in order, equal to onnxruntime on each image and to one-image requests
    want = sessions["classifier_batched/1"].run(
        None, {"INPUT": np.stack([reference(d, BATCHED) for d in images])}
    )[0]
    assert len(results) == 10
    for i, (result, data) in enumerate(zip(results, images, strict=True)):
        [output] = result["outputs"]
        assert (output["name"], output["shape"]) == ("PROBS", [10])
        np.testing.assert_allclose(output["data"], want[i], rtol=1e-5, atol=1e-6)
        alone = client.post(
            "/infer", json={"model": "classifier_batched", "version": "1", "image": b64(data)}
        )
        np.testing.assert_allclose(
            alone.json()["results"][0]["outputs"][0]["data"], output["data"], rtol=1e-6
        )


def test_top_k_over_a_batch_and_a_version(client: httpx.Client, sessions):
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    images = [jpeg(128, 128, seed=20 + i) for i in range(3)]
    response = client.post(
        "/infer",
        json={"model": "classifier_batched", "version": "2", "images": [b64(d) for d in images], "top_k": 10},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "2"
    want = sessions["classifier_batched/2"].run(
        None, {"INPUT": np.stack([reference(d, BATCHED) for d in images])}
    )[0]
    for result, scores in zip(response.json()["results"], want, strict=True):
        assert_top_k(result["top_k"], scores, labels)


def test_nhwc_uint8_model(client: httpx.Client, sessions):
    # 96 high, 128 wide, channels last, raw 0..255 pixels; five images over a max batch of four
    images = [encode(photo(256, 160 + 10 * i, seed=30 + i), "WEBP", quality=90) for i in range(5)]
    response = client.post("/infer", json={"model": "nhwc_uint8", "images": [b64(d) for d in images]})
    assert response.status_code == 200, response.text
    x = np.stack([reference(d, NHWC, channels_first=False) for d in images])
    assert x.shape == (5, 96, 128, 3)
    want = sessions["nhwc_uint8"].run(None, {"image": x})[0]
    got = np.array([r["outputs"][0]["data"] for r in response.json()["results"]])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_grayscale_fp16_model_one_call_per_image(client: httpx.Client, sessions, triton_grpc):
    images = [jpeg(64, 64, seed=40 + i) for i in range(3)]
    requests_before, _ = model_stats(triton_grpc, "gray_fp16", "1")
    response = client.post(
        "/infer", json={"model": "gray_fp16", "images": [b64(d) for d in images], "top_k": 2}
    )
    assert response.status_code == 200, response.text
    # gray_fp16 does not batch: three concurrent calls
    requests = settled(lambda: model_stats(triton_grpc, "gray_fp16", "1")[0], requests_before + 3)
    assert requests == requests_before + 3
    labels = ["circle", "square", "triangle", "star"]
    for result, data in zip(response.json()["results"], images, strict=True):
        x = reference(data, GRAY)
        assert x.dtype == np.float16 and x.shape == (1, 32, 32)
        assert_top_k(result["top_k"], sessions["gray_fp16"].run(None, {"pixels": x})[0], labels)


# -- errors ----------------------------------------------------------------------------------------------

TENSOR = {"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "b64": b64(bytes(602112))}
IMAGE = b64(jpeg(64, 48))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"inputs": [TENSOR], "image": IMAGE},
            400,
            "the body mixes 'inputs' (tensors) with 'image'/'images'",
        ),
        ({}, 400, "the body needs 'inputs' (tensors) or 'image'/'images' (base64 images)"),
        ({"image": IMAGE, "images": [IMAGE]}, 400, "give exactly one of 'image' or 'images'"),
        ({"images": []}, 400, "images: List should have at least 1 item"),
        ({"images": [IMAGE, "not base64!"]}, 400, "images[1]: not valid base64"),
        ({"image": b64(b"GIF89a or anything")}, 400, "image: not a JPEG, PNG or WebP image"),
        ({"image": b64(jpeg()[:5000])}, 400, "image: the JPEG data is truncated or corrupt"),
        (
            {"images": [IMAGE, b64(bomb_png())]},
            400,
            "images[1]: the image declares more than 40000000 pixels",
        ),
        ({"image": IMAGE, "top_k": 0}, 400, "top_k: Input should be greater than 0"),
        (
            {"image": IMAGE, "top_k": 1001},
            400,
            "top_k: must be between 1 and 1000 (the classes of output 'fc6_1')",
        ),
        ({"image": IMAGE, "top_k": "x"}, 400, "top_k: Input should be a valid integer"),
        ({"image": IMAGE, "outputs": []}, 400, "outputs: Extra inputs are not permitted"),
        (
            {"model": "text_bytes", "image": IMAGE},
            400,
            "input 'TEXT' of model 'text_bytes' has shape [-1]; an image input is [C, H, W] or [H, W, C]",
        ),
        (
            {"model": "slow_model", "image": IMAGE},
            400,
            "input 'DELAY_MS' of model 'slow_model' has shape [1]; an image input is",
        ),
        ({"model": "resnet50", "image": IMAGE}, 404, "model 'resnet50' is not served here"),
    ],
)
def test_bad_image_requests_get_a_clear_error(client: httpx.Client, body, status, message):
    response = client.post("/infer", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        pytest.param(
            {"content": b"\x00\x01", "headers": {"content-type": "application/octet-stream"}},
            415,
            "content-type",
            id="octet-stream",
        ),
        pytest.param(
            {"content": b"{}", "headers": {"content-type": "application/xml"}},
            415,
            "'application/xml' is not read",
            id="xml",
        ),
        pytest.param(
            {"params": {"top_k": 3}, "json": {"image": IMAGE}},
            400,
            "go in the query only for image uploads",
            id="query-with-json",
        ),
        pytest.param(
            {"params": {"top_k": "three"}, "content": jpeg(), "headers": {"content-type": "image/jpeg"}},
            400,
            "top_k: Input should be a valid integer",
            id="bad-query-top-k",
        ),
        pytest.param(
            {"content": b"not an image", "headers": {"content-type": "image/png"}},
            400,
            "image: not a JPEG, PNG or WebP image",
            id="raw-not-an-image",
        ),
        pytest.param(
            {"files": [("images", ("a.jpg", jpeg(), "image/jpeg"))], "data": {"model": "densenet_onnx"}},
            400,
            "multipart part 'model' is not a file; give model, version and top_k in the query",
            id="multipart-field",
        ),
        pytest.param(
            {
                "files": [
                    ("images", ("a.jpg", b"junk", "image/jpeg")),
                    ("images", ("b.jpg", b"junk", "image/jpeg")),
                ]
            },
            400,
            "images[0]: not a JPEG, PNG or WebP image",
            id="multipart-junk",
        ),
    ],
)
def test_bad_uploads(client: httpx.Client, request_kwargs, status, message):
    response = client.post("/infer", **request_kwargs)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"], response.text


# -- settings: limits and the scaling override -----------------------------------------------------------


@pytest.fixture(scope="module")
def limited_gateway(triton: TritonServer) -> Iterator[httpx.Client]:
    settings = Settings(
        triton_grpc_url=triton.grpc_url,
        max_images=3,
        max_image_pixels=100_000,
        image_scaling="densenet_onnx=NONE",
    )
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_too_many_images_and_pixels(limited_gateway: httpx.Client):
    response = limited_gateway.post("/infer", json={"images": [IMAGE] * 4})
    assert response.status_code == 400
    assert response.json() == {"error": "images: 4 images; at most 3 are taken per request"}
    files = [("images", (f"{i}.jpg", jpeg(64, 48), "image/jpeg")) for i in range(4)]
    response = limited_gateway.post("/infer", files=files)
    assert response.json() == {"error": "images: 4 images; at most 3 are taken per request"}
    response = limited_gateway.post("/infer", content=jpeg(640, 480), headers={"content-type": "image/jpeg"})
    assert response.status_code == 400
    assert response.json() == {"error": "image: 640x480 is 307200 pixels, over the limit of 100000"}


def test_the_scaling_setting_overrides_the_model_config(limited_gateway: httpx.Client, sessions):
    data = jpeg(300, 200, seed=50)
    response = limited_gateway.post("/infer", json={"image": b64(data)})
    assert response.status_code == 200, response.text
    x = reference(data, {**DENSENET, "scaling": "NONE"})[np.newaxis]
    want = sessions["densenet_onnx"].run(None, {"data_0": x})[0].reshape(1000)
    np.testing.assert_allclose(
        response.json()["results"][0]["outputs"][0]["data"], want, rtol=1e-5, atol=1e-5
    )


# -- the OpenAPI document --------------------------------------------------------------------------------


def test_openapi_shows_tensor_and_image_bodies(client: httpx.Client):
    schema = client.get("/openapi.json").json()
    infer = schema["paths"]["/infer"]["post"]
    content = infer["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/InferRequest"}
    for media in ("image/jpeg", "image/png", "image/webp"):
        assert content[media]["schema"] == {"type": "string", "format": "binary"}
    assert content["multipart/form-data"]["schema"]["properties"]["images"]["items"]["format"] == "binary"
    components = schema["components"]["schemas"]
    union = components["InferRequest"]
    assert union["oneOf"] == [
        {"$ref": "#/components/schemas/TensorInferRequest"},
        {"$ref": "#/components/schemas/ImageInferRequest"},
    ]
    examples = [e["value"] for e in content["application/json"]["examples"].values()]
    assert any("image" in example for example in examples)
    assert any("inputs" in example for example in examples)
    assert {"image", "images", "top_k"} <= set(components["ImageInferRequest"]["properties"])
    assert {p["name"] for p in infer["parameters"] if p["in"] == "query"} == {"model", "version", "top_k"}
    assert "415" in infer["responses"]
    assert "ImageInferResponse" in components and "ClassScore" in components
