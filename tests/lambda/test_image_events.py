"""A raw image/jpeg upload as API Gateway delivers it (base64 body, isBase64Encoded) through the real Mangum
handler to the real Triton."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tests.image_reference import jpeg, reference_tensor
from tests.lambda_events import LambdaContext, body_of, load_event


def test_the_event_is_an_image_upload():
    event = load_event("infer_image")
    assert event["headers"]["Content-Type"] == "image/jpeg"
    assert event["multiValueQueryStringParameters"] == {"model": ["densenet_onnx"], "top_k": ["5"]}


@pytest.mark.parametrize("seed", [1, 2])
def test_jpeg_upload_event_matches_onnxruntime(
    lambda_handler, triton_model_path: Path, model_repository, seed
):
    data = jpeg(640, 480, seed=seed)
    # The same warm handler, invoked once per image
    response = lambda_handler(load_event("infer_image", data), LambdaContext())
    assert response["statusCode"] == 200, response["body"][:300]
    [result] = body_of(response)["results"]
    session = onnxruntime.InferenceSession(str(triton_model_path), providers=["CPUExecutionProvider"])
    x = reference_tensor(
        data, channels=3, height=224, width=224, datatype="FP32", scaling="INCEPTION", channels_first=True
    )
    scores = session.run(None, {"data_0": x[np.newaxis]})[0].reshape(1000)
    order = np.argsort(-scores, kind="stable")[:5]
    labels = (model_repository / "densenet_onnx" / "densenet_labels.txt").read_text().splitlines()
    assert [c["index"] for c in result["top_k"]] == order.tolist()
    assert [c["label"] for c in result["top_k"]] == [labels[i] for i in order]
    np.testing.assert_allclose([c["score"] for c in result["top_k"]], scores[order], rtol=1e-5)


def test_a_truncated_upload_event_gets_400_json(lambda_handler):
    data = jpeg(640, 480, seed=3)
    response = lambda_handler(load_event("infer_image", data[:3000]), LambdaContext())
    assert response["statusCode"] == 400
    assert body_of(response)["error"].startswith("image: the JPEG data is truncated or corrupt")
