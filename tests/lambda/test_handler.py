"""API Gateway REST events through the real Mangum handler to the real Triton."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from service.settings import get_settings
from service.triton import get_client
from tests.lambda_events import LambdaContext, body_of, load_event

rng = np.random.default_rng(11)


def densenet_request(x: np.ndarray, **extra) -> bytes:
    tensor = {
        "name": "data_0",
        "datatype": "FP32",
        "shape": [3, 224, 224],
        "b64": base64.b64encode(x.tobytes()).decode(),
    }
    return json.dumps({"inputs": [tensor], **extra}).encode()


def test_health_event(lambda_handler):
    response = lambda_handler(load_event("health"), LambdaContext())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    assert body_of(response)["triton"] == "ready"


@pytest.mark.parametrize("base64_body", [True, False], ids=["base64-body", "text-body"])
def test_infer_event_matches_onnxruntime(lambda_handler, onnx_session, base64_body):
    x = rng.random((3, 224, 224), dtype=np.float32)
    event = load_event(
        "infer", densenet_request(x, outputs=[{"name": "fc6_1", "b64": True}]), base64_body=base64_body
    )
    response = lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 200, response["body"][:300]
    got = np.frombuffer(base64.b64decode(body_of(response)["outputs"][0]["b64"]), "<f4")
    want = onnx_session("densenet_onnx").run(None, {"data_0": x.reshape(1, 3, 224, 224)})[0].reshape(1000)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bad_request_event_gets_400_json(lambda_handler):
    response = lambda_handler(load_event("infer", b'{"name": "Test inference"}'), LambdaContext())
    assert response["statusCode"] == 400
    assert body_of(response) == {"error": "inputs: Field required; name: Extra inputs are not permitted"}


def test_the_client_is_reused_across_invocations(lambda_handler):
    # GIVEN the process's client after one invocation
    lambda_handler(load_event("health"), LambdaContext())
    client = get_client(get_settings())
    opened = client.channels_opened
    # WHEN the warm Lambda is invoked again and again
    for _ in range(5):
        assert (
            lambda_handler(
                load_event("infer", densenet_request(np.zeros((3, 224, 224), np.float32))), LambdaContext()
            )["statusCode"]
            == 200
        )
        assert lambda_handler(load_event("health"), LambdaContext())["statusCode"] == 200
    # THEN it is the same client on the same channel
    assert get_client(get_settings()) is client
    assert client.channels_opened == opened == 1


def test_deadline_is_capped_by_the_lambdas_remaining_time(lambda_handler):
    slow = json.dumps(
        {
            "model": "slow_model",
            "inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1], "data": [3000]}],
        }
    )
    began = time.monotonic()
    # 1.2 s left: the gateway keeps 0.5 s to answer, so Triton gets 0.7 s, not the configured 5 s.
    response = lambda_handler(load_event("infer", slow), LambdaContext(remaining_ms=1200))
    assert response["statusCode"] == 504
    # The request id in the answer is API Gateway's, so the caller can quote it to whoever reads the logs.
    assert body_of(response) == {
        "error": "Triton did not answer within the 0.7 s deadline "
        "(request id c6af9ac6-7b61-11e6-9a41-93e8deadbeef)"
    }
    # Not waiting for the model's 3 s (which would answer 200): the bound leaves room for two busy cores.
    assert time.monotonic() - began < 2.5


def test_docs_under_the_stage_prefix(lambda_handler):
    response = lambda_handler(load_event("docs"), LambdaContext())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/html")
    assert "url: '/api/openapi.json'" in response["body"]

    schema = body_of(lambda_handler(load_event("openapi"), LambdaContext()))
    assert schema["servers"] == [{"url": "/api"}]
    assert "/infer" in schema["paths"]


def test_custom_domain_base_path_from_settings(monkeypatch, triton):
    # A custom domain mapped at /v1 puts the base path in the event's path and no stage in the URL.
    from mangum import Mangum

    from service.app import create_app
    from service.settings import Settings

    handler = Mangum(
        create_app(Settings(triton_grpc_url=triton.grpc_url, api_root_path="/v1")), lifespan="off"
    )
    event = load_event("docs")
    event["path"] = event["requestContext"]["path"] = "/v1/docs"
    response = handler(event, LambdaContext())
    assert response["statusCode"] == 200
    assert "url: '/v1/openapi.json'" in response["body"]


def test_rest_events_use_the_fast_base64_body(lambda_handler):
    from service.lambda_handler import RestApiEvent

    event = load_event("infer", b'{"inputs": []}')
    chosen = lambda_handler.infer(event, LambdaContext())
    assert isinstance(chosen, RestApiEvent)
    assert chosen.body == b'{"inputs": []}'
    assert lambda_handler.infer(load_event("health"), LambdaContext()).body == b""


def test_each_request_is_logged_with_api_gateways_request_id(lambda_handler, caplog):
    caplog.set_level("INFO", logger="service.access")
    event = load_event("infer", b'{"name": "Test inference"}')
    lambda_handler(event, LambdaContext())
    [record] = [r for r in caplog.records if r.name == "service.access"]
    assert (record.method, record.path, record.status) == ("POST", "/api/infer", 400)
    assert record.api_request_id == event["requestContext"]["requestId"]
    assert record.duration_ms > 0
    assert record.getMessage().startswith("POST /api/infer 400 ")
