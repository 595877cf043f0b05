"""A raw image/jpeg upload as API Gateway delivers it (base64 body, isBase64Encoded) through the real Mangum
handler to the real Triton."""

from __future__ import annotations

import numpy as np
import pytest

from tests.image_reference import encode, jpeg, photo, reference_tensor
from tests.lambda_events import LambdaContext, body_of, load_event


def test_the_events_query_and_content_type_reach_the_route(lambda_handler, onnx_session):
    # GIVEN the upload event with another model, version and top_k in its query, and a PNG body
    data = encode(photo(120, 90, seed=7), "PNG")
    event = load_event("infer_image", data)
    query = {"model": "classifier_batched", "version": "1", "top_k": "3"}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    event["headers"]["Content-Type"] = "image/png"
    event["multiValueHeaders"]["Content-Type"] = ["image/png"]
    # WHEN it goes through the handler
    response = lambda_handler(event, LambdaContext())
    # THEN the route read all three from the event: that model and version, three classes of the PNG
    assert response["statusCode"] == 200, response["body"][:300]
    answer = body_of(response)
    assert (answer["model_name"], answer["model_version"]) == ("classifier_batched", "1")
    [result] = answer["results"]
    x = reference_tensor(
        data, channels=3, height=64, width=64, datatype="FP32", scaling="VGG", channels_first=True
    )
    scores = onnx_session("classifier_batched", 1).run(None, {"INPUT": x[np.newaxis]})[0][0]
    order = np.argsort(-scores, kind="stable")[:3]
    assert [c["index"] for c in result["top_k"]] == order.tolist()
    np.testing.assert_allclose([c["score"] for c in result["top_k"]], scores[order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
def test_jpeg_upload_event_matches_onnxruntime(lambda_handler, onnx_session, model_repository, seed):
    data = jpeg(640, 480, seed=seed)
    # The same warm handler, invoked once per image
    response = lambda_handler(load_event("infer_image", data), LambdaContext())
    assert response["statusCode"] == 200, response["body"][:300]
    [result] = body_of(response)["results"]
    session = onnx_session("densenet_onnx")
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
